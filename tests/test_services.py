"""Services are not batch jobs (issue #18 §3).

The rule implemented: a service (``Job.service``) asks for its GPUs for a lifetime
``duration_s``. A failure or preemption takes it down; it waits until it is placed again
(for a node failure, at least until the node is repaired), pays its restart time
(``restart_overhead_s``), then serves the rest of its lifetime. It loses no work, so it
ends at first start + lifetime + downtime. Its availability is served over wanted
service-GPU-seconds, wanted from submit until it ends; ETTR counts training work only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from aifactory.scheduler.config import SchedulerConfig
from aifactory.twin.failures import FAIL, FailureInjector
from aifactory.twin.kernel import EventClass
from aifactory.twin.results import jobs_table, summarize
from aifactory.twin.simulator import SimResult, TwinConfig
from aifactory.workload.job import JobState
from builders import checked_simulation, hgx_topo, make_job

RESTART_S = 30.0
REPAIR_S = 50.0


@dataclass(frozen=True)
class _Cause:
    name: str
    scope: str

    def sample_repair_s(self, rng: np.random.Generator) -> float:
        return REPAIR_S


@dataclass(frozen=True)
class _Model:
    scope: str
    rate_per_gpu_hour: float = 1.0

    def sample_cause(self, rng: np.random.Generator) -> Any:
        return _Cause(self.scope, self.scope)


class ScriptedFailures(FailureInjector):
    """Failures at given times (a one-node fleet: each hits the node every job runs on)."""

    def __init__(self, times: list[float], scope: str) -> None:
        super().__init__(_Model(scope))
        self.times = list(times)

    def schedule_next(self, now: float) -> None:
        if self.times:
            self._kernel.at(self.times.pop(0), EventClass.END, FAIL)


def _run(jobs: list[Any], times: list[float], scope: str) -> SimResult:
    cfg = SchedulerConfig(restart_overhead_s=RESTART_S)
    result, _ = checked_simulation(
        hgx_topo(1), jobs, cfg, TwinConfig(seed=1), ScriptedFailures(times, scope)
    )
    return result


def _summary(result: SimResult) -> dict[str, Any]:
    return summarize(result, fleet="f", trace="t", policy="fifo", backfill="easy", seed=1)


# Named hand cases: (scope of the failure, downtime it causes).
CASES = {
    "job failure: restart time only": ("job", RESTART_S),
    "node failure: until repaired, then restart": ("node", REPAIR_S + RESTART_S),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_service_that_fails_mid_life_resumes_and_ends_late_by_its_downtime(name: str) -> None:
    scope, down = CASES[name]
    life = 1000.0
    svc = make_job("svc", gpus=8, run=life, service=True)
    result = _run([svc], [400.0], scope)
    assert svc.state is JobState.COMPLETED
    assert svc.failures == 1
    assert svc.end_s == pytest.approx(0.0 + life + down)
    assert svc.lost_failure_gpu_s == 0.0  # it loses no work
    per = _summary(result)["per_tenant"]["a"]
    assert per["services"] == 1
    assert per["service_restarts"] == 1
    assert per["service_downtime_min"] == pytest.approx(down / 60.0)
    assert per["service_availability"] == pytest.approx(life / (life + down))
    assert per["ettr"] is None  # no training work at all
    table = jobs_table(result)
    assert table.column("service").to_pylist() == [True]
    assert table.column("downtime_s").to_pylist() == [pytest.approx(down)]


def test_a_batch_job_without_checkpoints_still_redoes_its_work() -> None:
    """The same failure for a batch job: it restarts from zero (what services did before)."""
    life = 1000.0
    batch = make_job("b", gpus=8, run=life)
    _run([batch], [400.0], "job")
    assert batch.end_s == pytest.approx(400.0 + RESTART_S + life)
    assert batch.lost_failure_gpu_s == pytest.approx(400.0 * 8)


def test_services_lose_no_work_over_many_failures() -> None:
    svc = make_job("svc", gpus=8, run=5000.0, service=True)
    times = [300.0 * k for k in range(1, 12)]
    result = _run([svc], times, "node")
    assert svc.failures == len(times)
    assert svc.lost_failure_gpu_s == 0.0
    per = _summary(result)["per_tenant"]["a"]
    assert per["gpu_hours_lost_failure"] == 0.0
    # Every failure cost a repair and a restart, no more; it served its whole lifetime.
    assert svc.end_s == pytest.approx(5000.0 + len(times) * (REPAIR_S + RESTART_S))
    assert per["service_availability"] == pytest.approx(5000.0 / svc.end_s)


def test_ettr_counts_training_work_only() -> None:
    """A tenant with a service and a training job: its ETTR is the training job's."""
    svc = make_job("svc", gpus=4, run=2000.0, service=True)
    train = make_job("t", gpus=4, run=1000.0, checkpoint_s=100.0)
    result = _run([svc, train], [450.0], "job")
    assert svc.failures == train.failures == 1
    assert train.end_s is not None
    assert train.first_start_s is not None
    expected = train.duration_s / (train.end_s - train.first_start_s)
    assert expected < 1.0
    per = _summary(result)["per_tenant"]["a"]
    assert per["ettr"] == pytest.approx(expected)
    assert per["service_availability"] == pytest.approx(2000.0 / (2000.0 + RESTART_S))


def test_a_service_still_running_at_the_horizon_counts_up_to_it() -> None:
    svc = make_job("svc", gpus=8, run=10_000.0, service=True)
    cfg = SchedulerConfig(restart_overhead_s=RESTART_S)
    result, _ = checked_simulation(
        hgx_topo(1),
        [svc],
        cfg,
        TwinConfig(seed=1, until_s=2000.0),
        ScriptedFailures([500.0], "job"),
    )
    assert svc.state is JobState.RUNNING
    per = _summary(result)["service"]
    assert per["services"] == 1
    assert per["service_availability"] == pytest.approx((2000.0 - RESTART_S) / 2000.0)


def test_the_synthesiser_marks_its_service_classes() -> None:
    from aifactory.fleet import load_fleet  # noqa: PLC0415 (only this test needs a bundled fleet)
    from aifactory.workload.synth.core import synthesize  # noqa: PLC0415

    table = synthesize(load_fleet("korea-2025"), 0.05, 0.5, 7)
    kinds = table.column("kind").to_pylist()
    service = table.column("service").to_pylist()
    marked = {k for k, s in zip(kinds, service, strict=True) if s}
    assert marked == {"inference-service", "ran-inference"} & set(kinds)
    assert marked  # the korea fleet has both
    assert table.schema.field("service").type == pa.bool_()
