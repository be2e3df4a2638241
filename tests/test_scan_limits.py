"""Scan limits (SchedulerConfig.queue_depth, max_job_test, preempt_candidates; issue #20
§4): the jobs one pass tries, and the running jobs one preemption search considers, are
bounded by configuration, not by the backlog.

A limit at least the backlog never binds, so every decision is the unlimited one (a
differential property over the random fleets and workloads of the scheduler's property
tests). A limit that binds changes which jobs are tried when, never what the scheduler may
do: every invariant holds after every event and every job still ends. And on busy seeded
workloads a small limit does change decisions (the limit is wired to the pass).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import aifactory
from aifactory.fleet import Topology
from aifactory.scheduler.config import MAX_SCAN, BackfillMode, SchedulerConfig
from aifactory.workload.job import JobState
from test_scheduler_properties import (
    SETTINGS,
    JobSpec,
    _busy_fleet,
    _random_specs,
    cases,
    decisions,
    run,
)


@settings(SETTINGS, max_examples=100)
@given(cases(most_jobs=60), st.booleans())
def test_limits_at_least_the_backlog_change_no_decision(
    case: tuple[Topology, list[JobSpec], SchedulerConfig, float], between_scans: bool
) -> None:
    topo, specs, cfg, rate = case
    if between_scans:
        cfg = replace(cfg, backfill=BackfillMode.EASY, backfill_interval_s=30.0)
    unlimited, _ = run(topo, specs, cfg, rate)
    # A pass tries each pending job at most once: no backlog exceeds the jobs of the run.
    n = len(specs)
    # Nor can more jobs run than there are (preempt_candidates).
    bound = replace(cfg, queue_depth=n, max_job_test=n, preempt_candidates=n)
    limited, _ = run(topo, specs, bound, rate)
    assert decisions(limited) == decisions(unlimited)


@settings(SETTINGS, max_examples=80)
@given(cases(most_jobs=40), st.integers(1, 3), st.integers(1, 3), st.booleans())
def test_binding_limits_keep_every_invariant_and_every_job_ends(
    case: tuple[Topology, list[JobSpec], SchedulerConfig, float],
    depth: int,
    tests: int,
    between_scans: bool,
) -> None:
    topo, specs, cfg, rate = case
    if between_scans:
        cfg = replace(cfg, backfill=BackfillMode.EASY, backfill_interval_s=30.0)
    cfg = replace(cfg, queue_depth=depth, max_job_test=tests, preempt_candidates=tests)
    result, _ = run(topo, specs, cfg, rate)  # (the checked kernel asserts the invariants)
    jobs = result.jobs
    assert all(j.done for j in jobs), [j for j in jobs if not j.done]
    completed = sum(1 for j in jobs if j.state == JobState.COMPLETED)
    event(f"completed {'all' if completed == len(jobs) else 'some'}")


def test_a_small_limit_changes_decisions_on_busy_workloads() -> None:
    topo = _busy_fleet()
    changed = {"queue_depth": 0, "max_job_test": 0, "preempt_candidates": 0}
    for seed in range(3):
        specs = _random_specs(np.random.default_rng(seed), ["t0", "t1", "t2"], 70)
        for interval in (0.0, 30.0):
            cfg = SchedulerConfig(backfill_interval_s=interval)
            unlimited = decisions(run(topo, specs, cfg, 0.0)[0])
            for name in changed:
                limited = decisions(run(topo, specs, replace(cfg, **{name: 1}), 0.0)[0])
                changed[name] += limited != unlimited
    assert all(changed.values()), changed


LIMITS = ["queue_depth", "max_job_test", "preempt_candidates"]


def test_the_preemption_limit_bounds_the_candidates_of_every_search() -> None:
    """With ``preempt_candidates`` at L no search considers more than L running jobs (a
    count, not a time), where without it some search considers more: the limit binds on
    these workloads, and it bounds the work."""
    topo = _busy_fleet()
    limit = 2
    unbounded_most = 0
    for seed in range(3):
        specs = _random_specs(np.random.default_rng(seed), ["t0", "t1", "t2"], 70)
        cfg = SchedulerConfig(backfill_interval_s=30.0)
        full = run(topo, specs, cfg, 0.0)[0].scheduler.preemption
        bounded = run(topo, specs, replace(cfg, preempt_candidates=limit), 0.0)[0]
        pre = bounded.scheduler.preemption
        assert pre.searches > 0
        assert pre.most_priced <= limit
        assert pre.priced <= limit * pre.searches
        unbounded_most = max(unbounded_most, full.most_priced)
    assert unbounded_most > limit


@pytest.mark.parametrize("name", LIMITS)
@pytest.mark.parametrize("value", [-1, MAX_SCAN + 1])
def test_a_limit_out_of_bounds_is_refused_naming_it(name: str, value: int) -> None:
    with pytest.raises(ValueError, match=f"scheduler config: {name}: must be an integer"):
        SchedulerConfig(**{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", LIMITS)
def test_a_limit_that_is_not_an_integer_is_refused(name: str) -> None:
    """A float is refused in both builds: by the check (pure Python), or by the compiled
    class's typed field before any check runs. A bool only the pure build can tell from an
    int (the compiled field stores True as 1), so only there is it refused; the edges that
    take limits from users (the CLI's integer options, the scenario model) refuse bools."""
    if aifactory.BUILD == "compiled":
        with pytest.raises(TypeError):
            SchedulerConfig(**{name: 2.0})  # type: ignore[arg-type]
        return
    for value in (True, 2.0):
        with pytest.raises(ValueError, match=f"scheduler config: {name}: must be an integer"):
            SchedulerConfig(**{name: value})  # type: ignore[arg-type]


def test_zero_is_no_limit_and_the_default() -> None:
    cfg = SchedulerConfig()
    assert cfg.queue_depth == 0
    assert cfg.max_job_test == 0
    assert cfg.preempt_candidates == 0
    assert SchedulerConfig(queue_depth=MAX_SCAN, max_job_test=1).problem() is None
    assert SchedulerConfig(preempt_candidates=MAX_SCAN).problem() is None


@pytest.mark.parametrize("command", ["run", "simulate"])
@pytest.mark.parametrize("flag", ["--queue-depth", "--max-job-test"])
def test_the_cli_refuses_a_negative_limit_before_any_work(command: str, flag: str) -> None:
    from typer.testing import CliRunner  # noqa: PLC0415

    from aifactory.cli import app  # noqa: PLC0415

    args = [command, flag, "-1"]
    if command == "simulate":
        args += ["--fleet", "demo", "--trace", "no-such-trace.csv"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"{flag}: must be from 0 (no limit)" in result.output


def test_aifactory_run_uses_the_national_limits() -> None:
    from aifactory.twin.run import (  # noqa: PLC0415
        NATIONAL_MAX_JOB_TEST,
        NATIONAL_QUEUE_DEPTH,
        TwinSpec,
        national_spec,
    )

    spec = national_spec("korea-2025", 1.0, 0.9, 0)
    assert (spec.queue_depth, spec.max_job_test) == (NATIONAL_QUEUE_DEPTH, NATIONAL_MAX_JOB_TEST)
    # (no preemption limit: one bounded the candidates but not the drift, see config.py)
    assert spec.preempt_candidates == 0
    replay = TwinSpec(fleet="demo", trace="t")
    assert replay.queue_depth == replay.preempt_candidates == 0  # a replay: no limit
