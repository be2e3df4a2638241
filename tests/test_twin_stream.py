"""A streamed run (jobs made as they arrive and let go when they end: twin.inputs.JobSource,
twin.finished) gives exactly the outputs of a run that makes and keeps every job."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from aifactory.fleet import load_fleet
from aifactory.twin import inputs
from aifactory.twin.run import TwinRun, national_spec, run_twin
from aifactory.workload.synth import synthesize

HOURS = 1.5


def _summary(run: TwinRun) -> str:
    summary: dict[str, Any] = dict(run.summary)
    summary.pop("wall_s")
    return json.dumps(summary, sort_keys=True)


@pytest.mark.parametrize("until_h", [None, 0.75])
def test_streamed_run_matches_kept(monkeypatch: pytest.MonkeyPatch, until_h: float | None) -> None:
    """The national workload with failures and the bundled allocations, in chunks of a few
    hundred jobs (so that chunks, batches of ended jobs and the jobs in flight at the end
    all meet); cut at its horizon, and cut earlier, while jobs have not yet arrived."""
    monkeypatch.setattr(inputs, "CHUNK_ROWS", 700)
    fleet = load_fleet("korea-2025")
    days = HOURS / 24.0
    table = synthesize(fleet, days, 0.9, seed=7)
    spec = national_spec("korea-2025", days, 0.9, 7, allocations="korea-2025")
    if until_h is not None:
        spec = replace(spec, until_s=until_h * 3600.0)
    kept = run_twin(spec, table=table, fleet=load_fleet("korea-2025"), keep_jobs=True)
    streamed = run_twin(spec, table=table, fleet=load_fleet("korea-2025"), keep_jobs=False)
    assert len(kept.result.jobs) == table.num_rows
    assert 0 < len(streamed.result.jobs) < table.num_rows  # it let the ended jobs go
    if until_h is None:
        assert kept.summary["preemptions"] > 0  # (none yet in the first 45 minutes)
    assert _summary(streamed) == _summary(kept)
    assert streamed.jobs_table().equals(kept.jobs_table())
    assert streamed.timeseries_table().equals(kept.timeseries_table())
    projects = kept.projects_table()
    assert projects is not None
    assert projects.equals(streamed.projects_table())
    # The streamed run's gate kept the figures of its jobs in flight only, and no charge.
    gate = streamed.result.allocations
    assert gate is not None
    assert kept.result.allocations is not None
    assert set(gate.project) <= {j.id for j in streamed.result.jobs}
    assert len(gate.project) < len(kept.result.allocations.project)
    assert gate.ledger.charges() == []
    assert len(kept.result.allocations.ledger.charges()) == gate.ledger.tally()[0] > 0
