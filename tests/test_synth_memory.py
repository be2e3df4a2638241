"""The synthesiser asks GPU memory from the size of the model a job trains (issue #17 §3).

Mixed-precision Adam keeps 16 bytes per parameter (ZeRO, Rajbhandari et al. SC'20 §3.1),
sharded over up to ``shard_gpus`` GPUs, plus activations, capped. Worked by hand: a 405B
model on 1,024 GPUs sharded over 128 is 405e9 x 16 / 128 = 50.625 GB of state per GPU,
plus 60 GB of activations: 110.625 GB; on 64 GPUs (fewer than a group) 101.25 + 60 =
161.25 GB; a 2e12 model on 128 GPUs would need 310 GB and asks the 180 GB cap.
"""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aifactory.fleet import SpecError, compile_topology, load_fleet, parse_fleet
from aifactory.fleet.spec import Fleet
from aifactory.twin.inputs import InputOptions, jobs_from_table
from aifactory.twin.simulator import TwinConfig
from aifactory.workload.job import JobState
from aifactory.workload.synth import load_catalogue, synthesize
from aifactory.workload.synth.catalogue import ModelMemory, parse_catalogue
from builders import checked_simulation

HBM = {"h100": 80.0, "b200": 180.0}
PRETRAIN = {"params_min": 1e10, "params_max": 5e11, "shard_gpus": 128, "activation_gb": 60}


def _doc() -> dict[str, Any]:
    text = resources.files("aifactory.workload.data").joinpath("classes.yaml").read_text()
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


def test_memory_from_model_size_worked_by_hand() -> None:
    m = ModelMemory(**PRETRAIN, max_gb=180.0)
    got = m.per_gpu_gb(np.array([405e9, 405e9, 2e12]), np.array([1024, 64, 128]))
    assert got.tolist() == pytest.approx([110.625, 161.25, 180.0])


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda c: c.update(hbm_gb_per_gpu=120), "not both"),
        (lambda c: c["model"].update(params_max=1e9), "params_max: must be >= params_min"),
        (lambda c: c["model"].update(activation_gb=200), "max_gb: must be above activation_gb"),
        (lambda c: c["model"].update(max_gb=1e6), "max_gb"),
        (lambda c: c["model"].update(bytes_per_param=0), "bytes_per_param"),
        (lambda c: c["sources"].pop("model"), "no source for model"),
        (lambda c: c.update(grad_gb=140), "grad_gb: a class's gradients come from its model"),
        (lambda c: c["model"].update(grad_bytes_per_param=0), "grad_bytes_per_param"),
    ],
)
def test_a_bad_model_is_refused_naming_the_field(edit: Any, needle: str) -> None:
    doc = _doc()
    edit(doc["classes"]["pretrain"])
    with pytest.raises(SpecError) as exc:
        parse_catalogue(yaml.safe_dump(doc), "c.yaml")
    assert needle in str(exc.value)


def test_pretrain_asks_memory_from_its_model_and_nothing_else_changes() -> None:
    """On korea-2025, the consortia's campaigns ask 61-123 GB per GPU, one figure per
    model; the same catalogue with a fixed ask draws exactly the same jobs otherwise (the
    model sizes come from a generator of their own)."""
    fleet = load_fleet("korea-2025")
    table = synthesize(fleet, 2.0, 0.85, seed=7)
    fixed = _doc()
    pre = fixed["classes"]["pretrain"]
    del pre["model"]
    del pre["sources"]["model"]
    pre["hbm_gb_per_gpu"] = 120.0
    pre["grad_gb"] = 140.0
    other = synthesize(
        fleet, 2.0, 0.85, seed=7, catalogue=parse_catalogue(yaml.safe_dump(fixed), "c")
    )
    model_made = ["hbm_gb_per_gpu", "grad_bytes"]
    assert table.drop_columns(model_made).equals(other.drop_columns(model_made))
    assert set(other["grad_bytes"].drop_null().to_pylist()) == {140e9}
    kind = table["kind"].to_pylist()
    hbm = table["hbm_gb_per_gpu"].to_pylist()
    asks = [h for k, h in zip(kind, hbm, strict=True) if k == "pretrain"]
    assert len(asks) >= 5
    assert all(60.0 < h <= 60.0 + 5e11 * 16 / 128 / 1e9 for h in asks)
    assert len(set(asks)) == len(asks)  # one model per campaign
    assert all(h is None for k, h in zip(kind, hbm, strict=True) if k != "pretrain")


def test_pretrain_sends_its_models_gradients_per_step() -> None:
    """A campaign all-reduces 2 bytes (bf16) per parameter of the model whose size also set
    its memory: where the memory ask is uncapped and the job fills a 128-GPU group, the
    ask is params x 16 / 128 / 1e9 + 60 GB, so its gradients are (ask - 60) x 16e9 bytes."""
    table = synthesize(load_fleet("korea-2025"), 2.0, 0.85, seed=7)
    rows = [
        r
        for r in table.select(["kind", "gpus", "hbm_gb_per_gpu", "grad_bytes"]).to_pylist()
        if r["kind"] == "pretrain"
    ]
    assert len(rows) >= 5
    assert all(2e10 <= r["grad_bytes"] <= 1e12 for r in rows)
    assert len({r["grad_bytes"] for r in rows}) == len(rows)  # one model per campaign
    uncapped = [r for r in rows if r["gpus"] >= 128 and r["hbm_gb_per_gpu"] < 179.0]
    assert uncapped
    for r in uncapped:
        assert r["grad_bytes"] == pytest.approx((r["hbm_gb_per_gpu"] - 60.0) * 16e9, rel=1e-9)
    kinds = table["kind"].to_pylist()
    assert all(
        g is None
        for k, g in zip(kinds, table["grad_bytes"].to_pylist(), strict=True)
        if k != "pretrain"
    )


def _two_class_fleet(h100: int, b200: int) -> Fleet:
    """One tenant (unknown to classes.yaml: its mix is replaced below) with HGX H100 and
    HGX B200 servers at one site."""
    return parse_fleet(
        {
            "name": "t",
            "sites": [
                {
                    "name": "s",
                    "region": "r",
                    "power_mw": 100,
                    "pue": 1.2,
                    "pods": [
                        {
                            "name": "p",
                            "groups": [
                                {"model": "h100", "domains": h100, "owner": "lab"},
                                {"model": "b200", "domains": b200, "owner": "lab"},
                            ],
                        }
                    ],
                }
            ],
            "tenants": [
                {
                    "name": "lab",
                    "quotas": [
                        {"gpu_class": "h100", "nominal": 8 * h100},
                        {"gpu_class": "b200", "nominal": 8 * b200},
                    ],
                }
            ],
        }
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    params_max=st.sampled_from([2e10, 1e11, 5e11, 2e12]),
    shard=st.sampled_from([8, 64, 128]),
    activation=st.floats(10.0, 70.0),
    seed=st.integers(0, 2**16),
)
def test_a_model_that_does_not_fit_a_class_is_never_placed_there(
    params_max: float, shard: int, activation: float, seed: int
) -> None:
    """Jobs of a class with no GPU preference on a tenant holding H100 (80 GB) and B200
    (180 GB): each asks its model's memory, never more than the B200's, and the twin
    places a job whose model does not fit 80 GB on B200s only."""
    doc = copy.deepcopy(_doc())
    cls = doc["classes"]["finetune"]
    cls["model"] = {
        "params_min": 1e9,
        "params_max": params_max,
        "shard_gpus": shard,
        "activation_gb": activation,
        "max_gb": 1000.0,
    }
    cls["sources"]["model"] = "test"
    cls["size"] = {"kind": "choice", "values": [8, 16, 32], "weights": [1, 1, 1]}
    cls["duration"] = {
        "kind": "lognormal",
        "median_s": 3600,
        "sigma": 0.5,
        "min_s": 600,
        "max_s": 14400,
    }
    doc["tenants"]["lab"] = {"mix": [{"class": "finetune", "share": 1.0}], "source": "test"}
    catalogue = parse_catalogue(yaml.safe_dump(doc), "c")
    fleet = _two_class_fleet(4, 4)
    table = synthesize(fleet, 0.25, 0.9, seed=seed, catalogue=catalogue)
    asks = table["hbm_gb_per_gpu"].to_pylist()
    assert all(a is not None and 0 < a <= HBM["b200"] for a in asks)
    jobs, _ = jobs_from_table(table, fleet, InputOptions())
    result, _ = checked_simulation(compile_topology(fleet), jobs, twin_cfg=TwinConfig(seed=0))
    for job in result.jobs:
        assert job.state is not JobState.FAILED, job
        if job.placed_class:
            assert job.hbm_gb_per_gpu is not None
            assert HBM[job.placed_class] >= job.hbm_gb_per_gpu, job
    big = [j for j in result.jobs if j.placed_class and (j.hbm_gb_per_gpu or 0) > HBM["h100"]]
    event(f"jobs too big for an H100 that ran: {bool(big)}")
    event(f"jobs that ran on H100: {any(j.placed_class == 'h100' for j in result.jobs)}")


def test_the_bundled_catalogue_asks_no_more_than_its_targets_hold() -> None:
    """pretrain's cap is a B200's HBM, so it fits either class it targets."""
    cat = load_catalogue()
    pre = cat.classes["pretrain"]
    assert pre.model is not None
    assert pre.hbm_gb_per_gpu is None
    assert pre.model.max_gb <= min(HBM["b200"], 186.0)
