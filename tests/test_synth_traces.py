"""Workload synthesis against the real Philly and ITP traces (../shared/traces).

The research/dev class must reproduce the traces it was fitted to: two-sample KS
statistics of gang size and duration, synthetic vs trace, below a bound derived from
the sample sizes (and, for durations, the 1/400 resolution of the stored quantiles).
Skipped, with the reason, where the traces are absent.
"""

from __future__ import annotations

import importlib.util
import math
from importlib import resources
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow as pa
import pytest

from aifactory.fleet import parse_fleet
from aifactory.workload.synth import synthesize
from aifactory.workload.synth.catalogue import fitted_document

pytestmark = pytest.mark.slow

# P(KS > c * sqrt((n + m) / (n m))) ~ 0.001 for two samples of one distribution.
KS_C_001 = 1.95


@pytest.fixture(scope="module")
def fit_script(repo_root: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("fit_traces", repo_root / "scripts/fit_traces.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trace(shared_dir: Path, fit_script: ModuleType) -> tuple[np.ndarray, np.ndarray]:
    """(gpus, duration_s) of every Philly and ITP job: the 'pooled' dataset."""
    root = shared_dir / "traces"
    philly, _ = fit_script.read_philly(root)
    itp, _ = fit_script.read_itp(root)
    gpus = np.concatenate([philly["gpus"].to_numpy(), itp["gpus"].to_numpy()])
    dur = np.concatenate([philly["duration_s"].to_numpy(), itp["duration_s"].to_numpy()])
    return gpus, dur


@pytest.fixture(scope="module")
def synthetic() -> pa.Table:
    """About 100,000 research jobs on one tenant large enough that no size cap binds."""
    fleet = parse_fleet(
        {
            "name": "t",
            "sites": [
                {
                    "name": "s",
                    "region": "r",
                    "power_mw": 100,
                    "pue": 1.2,
                    "pods": [
                        {"name": "p", "groups": [{"model": "h100", "domains": 512, "owner": "uni"}]}
                    ],
                }
            ],
            "tenants": [{"name": "uni", "quotas": [{"gpu_class": "h100", "nominal": 4096}]}],
        }
    )
    return synthesize(fleet, 16.0, 1.0, seed=20251031)


def ks_two_sample(a: np.ndarray, b: np.ndarray) -> float:
    """sup |F_a - F_b| over the pooled support (ties handled by evaluating right limits)."""
    a, b = np.sort(a), np.sort(b)
    x = np.concatenate([a, b])
    fa = np.searchsorted(a, x, side="right") / len(a)
    fb = np.searchsorted(b, x, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def bound(n: int, m: int, resolution: float = 0.0) -> float:
    return KS_C_001 * math.sqrt((n + m) / (n * m)) + resolution


def test_fitted_json_is_what_the_script_writes(
    shared_dir: Path, fit_script: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "fitted.json"
    assert fit_script.main(["--traces", str(shared_dir / "traces"), "--out", str(out)]) == 0
    committed = resources.files("aifactory.workload.data").joinpath("fitted.json").read_text()
    assert out.read_text() == committed


def test_research_sizes_match_the_traces(
    synthetic: pa.Table, trace: tuple[np.ndarray, np.ndarray]
) -> None:
    got = synthetic["gpus"].to_numpy()
    ks = ks_two_sample(got, trace[0])
    assert ks <= bound(len(got), len(trace[0])), ks


def test_research_durations_match_the_traces(
    synthetic: pa.Table, trace: tuple[np.ndarray, np.ndarray]
) -> None:
    got = synthetic["duration_s"].to_numpy()
    resolution = 1.0 / fitted_document()["quantile_intervals"]
    ks = ks_two_sample(got, trace[1])
    assert ks <= bound(len(got), len(trace[1]), resolution), ks


@pytest.mark.parametrize(("lo", "hi"), [(1, 1), (2, 4), (5, 8), (9, 10**6)])
def test_research_durations_match_per_size_bucket(
    synthetic: pa.Table, trace: tuple[np.ndarray, np.ndarray], lo: int, hi: int
) -> None:
    """The size-duration dependence survives: each bucket matches its own trace jobs."""
    g, d = synthetic["gpus"].to_numpy(), synthetic["duration_s"].to_numpy()
    tg, td = trace
    got = d[(g >= lo) & (g <= hi)]
    want = td[(tg >= lo) & (tg <= hi)]
    resolution = 1.0 / fitted_document()["quantile_intervals"]
    ks = ks_two_sample(got, want)
    assert ks <= bound(len(got), len(want), resolution), ks
