"""The real Philly and ITP traces of ../shared/traces import with the row counts their README gives.

Counts and value sets below are quoted from ``../shared/traces/README.md``; the tests are
skipped (with the reason) where that folder is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aifactory.workload.schema import TRACE_SCHEMA
from aifactory.workload.traces import read_trace

pytestmark = pytest.mark.slow

# README: "clusters here: 01 (1,595 jobs), 04 (15,802), 05 (3,629), 07 (12,699),
# 08 (13,047), 09 (11,134; 1-GPU only), 10 (260)".
ITP_COUNTS = {
    "cluster01.csv": 1_595,
    "cluster04.csv": 15_802,
    "cluster05.csv": 3_629,
    "cluster07.csv": 12_699,
    "cluster08.csv": 13_047,
    "cluster09.csv": 11_134,
    "cluster10.csv": 260,
}


def test_philly_full_trace(shared_dir: Path) -> None:
    result = read_trace(shared_dir / "traces" / "philly" / "philly.csv")
    assert result.format == "philly"
    # README: 82,247 jobs; none of them is skipped (no zero or negative durations).
    assert result.rows_read == 82_247
    assert result.rows_kept == 82_247
    assert result.skipped == {}
    assert result.cpu_jobs == 0
    table = result.table
    assert table.schema.equals(TRACE_SCHEMA)
    # README: num_gpus in {1, 2, 4, 8, 12, 16, 24, 32, 64, 128}, 15 virtual clusters.
    assert set(table.column("gpus").to_pylist()) <= {1, 2, 4, 8, 12, 16, 24, 32, 64, 128}
    assert len(set(table.column("tenant").to_pylist())) == 15
    submit = table.column("submit_s").to_pylist()
    assert submit[0] == 0.0
    assert submit == sorted(submit)
    # README: submitted 2017-09-04 .. 2017-12-22, so the span is just under 109 days.
    assert 107 * 86400 < submit[-1] < 109 * 86400


@pytest.mark.parametrize(("name", "jobs"), sorted(ITP_COUNTS.items()))
def test_itp_cluster(shared_dir: Path, name: str, jobs: int) -> None:
    result = read_trace(shared_dir / "traces" / "itp" / name)
    assert result.format == "itp"
    assert result.rows_read == jobs
    assert result.rows_kept == jobs
    assert result.skipped == {}
    durations = result.table.column("duration_s").to_pylist()
    assert min(durations) >= 600  # README: jobs under 600 s were removed upstream
    if name == "cluster09.csv":
        assert set(result.table.column("gpus").to_pylist()) == {1}
