"""The twin refuses jobs whose fields are out of the scheduler core's bounds before it runs
anything (``scheduler.config.job_problem``, the check the control plane applies at
submit), naming the job and the field; valid input runs as before."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from aifactory.fleet import Fleet, compile_topology
from aifactory.twin.run import TwinSpec, run_twin
from aifactory.twin.simulator import Simulation
from aifactory.workload.job import JobState
from aifactory.workload.schema import OPTIONAL_COLUMNS, TRACE_SCHEMA
from builders import hgx, make_fleet, make_job, tenant


def fleet() -> Fleet:
    return make_fleet([[[hgx(1)]]], [tenant("a", {"h100": 8})], default_tenant="a")


def table(checkpoint_s: list[float | None]) -> pa.Table:
    def row(i: int, c: float | None) -> dict[str, object]:
        return {
            "job_id": f"j{i}", "tenant": "a", "submit_s": float(i), "duration_s": 100.0,
            "gpus": 8, "gpu_class": None, "estimate_s": None, "priority": 0,
            "observed_start_s": None, "status": None, "checkpoint_s": c,
        }  # fmt: skip

    schema = TRACE_SCHEMA.append(pa.field("checkpoint_s", OPTIONAL_COLUMNS["checkpoint_s"]))
    return pa.Table.from_pylist([row(i, c) for i, c in enumerate(checkpoint_s)], schema=schema)


def test_a_subnormal_checkpoint_interval_in_a_trace_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match=r"^job j1: checkpoint_s: must be none or from 1 "):
        run_twin(TwinSpec(fleet="tiny", trace="t"), table=table([600.0, 5e-324]), fleet=fleet())


def test_a_trace_with_valid_intervals_runs() -> None:
    run = run_twin(TwinSpec(fleet="tiny", trace="t"), table=table([600.0, None]), fleet=fleet())
    assert run.summary["completed"] == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [("duration_s", math.nan), ("estimate_s", math.inf), ("submit_s", math.nan)],
)
def test_simulation_names_the_job_and_field(field: str, value: float) -> None:
    good = make_job("ok")
    bad = make_job("bad", submit=1.0)
    setattr(bad, field, value)
    with pytest.raises(ValueError, match=rf"^job bad: {field}: "):
        Simulation(compile_topology(fleet()), [good, bad])
    assert good.state is JobState.PENDING  # nothing ran
