"""The failure model: the Llama 3 cause mix, sampling, and loading users' files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from aifactory.fleet import SpecError
from aifactory.physics import (
    FailureModel,
    Scope,
    bundled_failure_models,
    expected_interruptions,
    job_mttf_s,
    load_failure_model,
)

# Llama 3 405B, arXiv 2407.21783 table 5, as listed in ../shared/docs/facts.md §3.
LLAMA3_TABLE5 = {
    "Faulty GPU": 148,
    "GPU HBM3 memory": 72,
    "Software bug": 54,
    "Network switch or cable": 35,
    "Unplanned host maintenance": 32,
    "GPU SRAM memory": 19,
    "GPU system processor": 17,
    "NIC": 7,
    "NCCL watchdog timeout": 7,
    "Silent data corruption": 6,
    "GPU thermal": 6,
    "SSD": 3,
    "Power supply": 3,
    "Others": 10,
}
HOUR = 3600.0


@pytest.fixture(scope="module")
def llama3() -> FailureModel:
    return load_failure_model("llama3")


def test_bundled_names() -> None:
    assert bundled_failure_models() == ["llama3"]


def test_llama3_rate_and_cause_counts_match_facts(llama3: FailureModel) -> None:
    assert llama3.rate_per_gpu_hour == 2.0e-5
    assert {c.label: c.count for c in llama3.causes} == LLAMA3_TABLE5
    assert llama3.total == 419
    assert llama3.shares.sum() == pytest.approx(1.0)
    assert llama3.shares[0] == pytest.approx(148 / 419)


def test_every_repair_time_names_its_source(llama3: FailureModel) -> None:
    for cause in llama3.causes:
        assert cause.repair.source.strip(), cause.name


def test_software_restarts_the_job_in_minutes_and_hardware_takes_nodes_for_hours(
    llama3: FailureModel,
) -> None:
    software = {"software-bug", "nccl-watchdog"}
    for cause in llama3.causes:
        if cause.name in software:
            assert cause.scope is Scope.JOB
            assert cause.repair.median_s < HOUR
        else:
            assert cause.scope is Scope.NODE
            assert cause.repair.median_s >= HOUR
    for swap in ("faulty-gpu", "gpu-hbm3"):
        assert llama3.cause(swap).repair.median_s >= 2 * HOUR


def test_job_mttf() -> None:
    # 16,384 GPUs x 2e-5 per GPU-hour = 0.32768 per hour -> 3600 / 0.32768 s.
    assert job_mttf_s(16_384, 2e-5) == pytest.approx(10_986.328125)
    assert job_mttf_s(8, 2e-5) == pytest.approx(22_500_000.0)
    assert math.isinf(job_mttf_s(8, 0.0))
    with pytest.raises(ValueError, match="gpus"):
        job_mttf_s(0, 2e-5)
    with pytest.raises(ValueError, match="rate"):
        job_mttf_s(8, -1e-5)


def test_llama3_rate_reproduces_419_interruptions_in_54_days() -> None:
    expected = expected_interruptions(16_384, 2e-5, 54 * 86_400)
    assert expected == pytest.approx(419, rel=0.20)


def test_sampled_interruptions_over_54_days(llama3: FailureModel) -> None:
    # A Poisson process with mean ~425: the 20% band is about 4 standard deviations.
    rng = np.random.default_rng(2024)
    horizon, now, count = 54 * 86_400.0, 0.0, 0
    while True:
        now += llama3.sample_time_to_failure_s(rng, 16_384)
        if now > horizon:
            break
        count += 1
    assert count == pytest.approx(419, rel=0.20)


def test_sampled_cause_shares_pass_a_chi_square_test(llama3: FailureModel) -> None:
    n = 200_000
    idx = llama3.sample_cause_indices(np.random.default_rng(7), n)
    observed = np.bincount(idx, minlength=len(llama3.causes))
    expected = llama3.shares * n
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    # 13 degrees of freedom: the 0.1% critical value of chi-square is 34.53.
    assert chi2 < 34.53


def test_scalar_and_vector_sampling_share_one_stream(llama3: FailureModel) -> None:
    scalar_rng, vector_rng = np.random.default_rng(11), np.random.default_rng(11)
    scalar = [llama3.sample_cause(scalar_rng).name for _ in range(50)]
    idx = llama3.sample_cause_indices(vector_rng, 50)
    assert scalar == [llama3.causes[i].name for i in idx]

    scalar_rng, vector_rng = np.random.default_rng(12), np.random.default_rng(12)
    repairs = [llama3.causes[i].sample_repair_s(scalar_rng) for i in idx]
    np.testing.assert_allclose(llama3.sample_repairs_s(vector_rng, idx), repairs)


def test_same_seed_same_draws(llama3: FailureModel) -> None:
    a = llama3.sample_cause_indices(np.random.default_rng(3), 100)
    b = llama3.sample_cause_indices(np.random.default_rng(3), 100)
    assert np.array_equal(a, b)


def test_repair_times_are_lognormal_around_the_median(llama3: FailureModel) -> None:
    cause = llama3.cause("faulty-gpu")
    idx = np.full(100_000, llama3.causes.index(cause))
    draws = llama3.sample_repairs_s(np.random.default_rng(5), idx)
    assert (draws > 0).all()
    # Median of 1e5 lognormal draws: standard error ~0.4% at sigma 0.8; allow 3%.
    assert float(np.median(draws)) == pytest.approx(cause.repair.median_s, rel=0.03)
    assert float(draws.mean()) == pytest.approx(cause.repair.mean_s, rel=0.03)


def test_with_rate_keeps_the_mix(llama3: FailureModel) -> None:
    faster = llama3.with_rate(4e-5)
    assert faster.rate_per_gpu_hour == 4e-5
    assert faster.causes == llama3.causes
    assert faster.job_mttf_s(16_384) == pytest.approx(llama3.job_mttf_s(16_384) / 2)
    with pytest.raises(SpecError, match="rate_per_gpu_hour"):
        llama3.with_rate(-1.0)


def test_a_users_file_round_trips(tmp_path: Path, llama3: FailureModel) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(llama3.model_dump(mode="json")), encoding="utf-8")
    assert load_failure_model(str(path)) == llama3


def _cause(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "gpu",
        "label": "GPU",
        "count": 3,
        "scope": "node",
        "repair": {"median_s": 3600, "sigma": 0.5, "source": "assumption"},
    }
    base.update(over)
    return base


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        pytest.param(
            {"name": "x", "causes": [_cause(scope="rack")]}, "causes[0].scope", id="scope"
        ),
        pytest.param(
            {"name": "x", "causes": [_cause(), _cause()]}, "causes[1].name: duplicate", id="dup"
        ),
        pytest.param({"name": "x", "causes": [_cause(count=0)]}, "must not all be 0", id="zeros"),
        pytest.param({"name": "x", "causes": [_cause(count=-1)]}, "causes[0].count", id="neg"),
        pytest.param(
            {"name": "x", "causes": [_cause(repair={"median_s": 0, "sigma": 1, "source": "a"})]},
            "causes[0].repair.median_s",
            id="median",
        ),
        pytest.param(
            {"name": "x", "rate_per_gpu_hour": -2, "causes": [_cause()]},
            "rate_per_gpu_hour",
            id="rate",
        ),
        pytest.param({"name": "x", "causes": []}, "causes", id="empty"),
        pytest.param({"name": "x", "causes": [_cause(colour=1)]}, "unknown field", id="typo"),
        pytest.param(["not", "a", "mapping"], "document", id="list"),
    ],
)
def test_bad_files_name_the_path(tmp_path: Path, doc: object, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_failure_model(str(path))
    assert info.value.source == str(path)
    assert needle in str(info.value)


def test_unknown_name_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="bundled: llama3"):
        load_failure_model("llama4")
    with pytest.raises(SpecError, match="file not found"):
        load_failure_model(str(tmp_path / "absent.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_failure_model(str(broken))


def test_fleet_failures_drawn_at_once(llama3: FailureModel) -> None:
    horizon = 54 * 86_400.0
    draws = llama3.sample_failures(np.random.default_rng(9), 16_384, horizon)
    # Poisson with mean ~425: the 20% band is about 4 standard deviations.
    assert len(draws) == pytest.approx(419, rel=0.20)
    assert (np.diff(draws.times_s) >= 0).all()
    assert ((draws.times_s >= 0) & (draws.times_s < horizon)).all()
    assert ((draws.gpu_index >= 0) & (draws.gpu_index < 16_384)).all()
    assert len(draws.cause) == len(draws.repair_s) == len(draws)
    assert (draws.repair_s > 0).all()
    again = llama3.sample_failures(np.random.default_rng(9), 16_384, horizon)
    assert np.array_equal(draws.times_s, again.times_s)
    assert len(llama3.with_rate(0.0).sample_failures(np.random.default_rng(9), 8, horizon)) == 0
    with pytest.raises(ValueError, match="horizon_s"):
        llama3.sample_failures(np.random.default_rng(9), 8, -1.0)
