"""The Python API for notebooks: the CLI's `simulate`, `compare` and `plan train` as calls.

``import aifactory`` gives these names (imported on first use, so the CLI still starts
fast)::

    fleet = aifactory.load_fleet("demo")
    trace = aifactory.read_trace("philly.csv")
    result = aifactory.simulate(fleet=fleet, trace=trace, policy="las", seed=1)
    result.summary["avg_jct_s"], result.jobs_frame().head()
    result.report("out/las")  # summary.json, jobs.parquet, report.html, as the CLI writes

A fleet is a :class:`Fleet`, or a bundled name or YAML path; a trace is an
:class:`ImportResult` (from :func:`read_trace`), a normalised Arrow table, or a path in any
supported format. ``**options`` are the fields of :class:`aifactory.twin.run.TwinSpec`
(``backfill``, ``time_scale``, ``seed``, ``failures``, ``until_s``, ...); an unknown one is
a TypeError naming it. Same inputs and seed, same result, as with the CLI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aifactory.fleet import Fleet, SpecError, catalogue, load_fleet
from aifactory.physics.planner import Plan
from aifactory.physics.planner import plan_training as _plan_training
from aifactory.workload.traces import ImportResult, read_trace

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from aifactory.fleet.spec import GpuModel
    from aifactory.twin.run import TwinRun

__all__ = [
    "Comparison",
    "Result",
    "compare",
    "load_fleet",
    "plan_training",
    "read_trace",
    "simulate",
]

FleetLike = Fleet | str | Path


@dataclass(frozen=True)
class Result:
    """One finished run: its summary (the CLI's summary.json), per-job results and series."""

    run: TwinRun

    @property
    def summary(self) -> dict[str, Any]:
        """The run's figures: jobs, JCT and queue percentiles, utilisation, per tenant."""
        return self.run.summary

    def jobs(self) -> pa.Table:
        """Per-job results as an Arrow table (the rows of jobs.parquet)."""
        return self.run.jobs_table()

    def jobs_frame(self) -> pl.DataFrame:
        """Per-job results as a Polars frame."""
        import polars as pl  # noqa: PLC0415

        frame = pl.from_arrow(self.jobs())
        assert isinstance(frame, pl.DataFrame)  # a table gives a frame, never a series
        return frame

    def timeseries(self) -> pa.Table:
        """Busy GPUs, queue and power over time (the rows of timeseries.parquet)."""
        return self.run.timeseries_table()

    def report(self, path: str | Path) -> Path:
        """Write the CLI's outputs into directory ``path``; the report.html written."""
        from aifactory.cli.simulate_cmd import write_outputs  # noqa: PLC0415

        return write_outputs(self.run, Path(path))


@dataclass(frozen=True)
class Comparison:
    """Several policies on the same input: a result each, and the side-by-side rows."""

    results: dict[str, Result]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def report(self, path: str | Path) -> Path:
        """Write compare.json and compare.html into ``path``; the HTML written."""
        from aifactory.reports.compare import write_compare  # noqa: PLC0415

        summaries = [r.summary for r in self.results.values()]
        tables = {name: r.jobs() for name, r in self.results.items()}
        return write_compare(Path(path), summaries, tables)


def _fleet(fleet: FleetLike) -> tuple[Fleet, str]:
    if isinstance(fleet, Fleet):
        return fleet, fleet.name
    return load_fleet(str(fleet)), str(fleet)


def _trace(trace: Any) -> tuple[pa.Table, str]:
    if isinstance(trace, ImportResult):
        return trace.table, "(table)"
    if isinstance(trace, str | Path):
        return read_trace(trace, require_jobs=True).table, str(trace)
    return trace, "(table)"  # a normalised Arrow table


def _spec_fields() -> set[str]:
    from aifactory.twin.run import TwinSpec  # noqa: PLC0415

    return {f.name for f in dataclasses.fields(TwinSpec)} - {"fleet", "trace", "fmt", "policy"}


def simulate(*, fleet: FleetLike, trace: Any, policy: str = "fifo", **options: Any) -> Result:
    """Replay ``trace`` on ``fleet`` under ``policy`` (fifo, sjf, las, fair, priority)."""
    spec_fleet, fleet_name = _fleet(fleet)
    table, trace_name = _trace(trace)
    return _run(spec_fleet, fleet_name, table, trace_name, policy, options)


def _run(
    fleet: Fleet,
    fleet_name: str,
    table: pa.Table,
    trace_name: str,
    policy: str,
    options: dict[str, Any],
) -> Result:
    from aifactory.twin.run import TwinSpec, run_twin  # noqa: PLC0415

    known = _spec_fields()
    unknown = sorted(set(options) - known)
    if unknown:
        msg = f"unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        raise TypeError(msg)
    spec = TwinSpec(fleet=fleet_name, trace=trace_name, policy=policy, **options)
    return Result(run_twin(spec, table=table, fleet=fleet))


def compare(
    *,
    fleet: FleetLike,
    trace: Any,
    policies: Sequence[str] = ("fifo", "sjf", "las", "fair"),
    **options: Any,
) -> Comparison:
    """Run each policy on the same fleet and trace; the first is the baseline of ``rows``."""
    from aifactory.reports.compare import comparison_rows  # noqa: PLC0415

    spec_fleet, fleet_name = _fleet(fleet)
    table, trace_name = _trace(trace)
    results = {
        policy: _run(spec_fleet, fleet_name, table, trace_name, policy, options)
        for policy in policies
    }
    return Comparison(results, comparison_rows([r.summary for r in results.values()]))


def plan_training(params: float, tokens: float, gpu: str | GpuModel, **options: Any) -> Plan:
    """Plan a training run (the CLI's `plan train`): ``gpu`` a catalogue id such as "h100"
    or a :class:`GpuModel`; ``gpus`` or ``days`` and the rest as
    :func:`aifactory.physics.planner.plan_training` takes them."""
    if isinstance(gpu, str):
        models = catalogue()
        if gpu not in models:
            msg = f"gpu: unknown model '{gpu}' (catalogue: {', '.join(sorted(models))})"
            raise SpecError([msg])
        gpu = models[gpu]
    return _plan_training(params, tokens, gpu, **options)
