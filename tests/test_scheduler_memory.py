"""Jobs ask for GPU memory and for a list of acceptable classes (issue #17 §3): a job runs
only on classes whose model has at least ``hbm_gb_per_gpu`` of HBM, among the classes it
accepts (``gpu_classes``), chosen by the scheduler's order (most unused nominal quota of
the tenant first); a job no class can hold fails at submit with the reason.

The fleet: one site with an HGX H100 server (80 GB), an HGX B200 server (180 GB) and one
GB200 NVL72 rack shrunk to 2 trays (8 GPUs, 186 GB); tenant ``a`` has 8 of each.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aifactory.fleet import compile_topology
from aifactory.fleet.topology import Topology
from aifactory.scheduler.scheduler import Scheduler
from aifactory.workload.job import Job, JobState
from builders import check_invariants, hgx, make_fleet, nvl, tenant

HBM = {"h100": 80.0, "b200": 180.0, "gb200": 186.0}


def topo() -> Topology:
    groups = [hgx(1), hgx(1, model="b200"), nvl(1, nodes_per_domain=2)]
    quotas = {"h100": 8, "b200": 8, "gb200": 8}
    return compile_topology(make_fleet([[groups]], [tenant("a", quotas)]))


def job(name: str, gpus: int = 8, **kw: Any) -> Job:
    return Job(name, "a", 0.0, gpus, 100.0, **kw)


def started_class(sched: Scheduler, j: Job) -> str:
    assert sched.submit(j, 0.0) is None
    assert sched.schedule(0.0).started == [j]
    return j.placed_class


def test_memory_rules_out_small_gpus() -> None:
    sched = Scheduler(topo())
    assert started_class(sched, job("big", hbm_gb_per_gpu=150.0)) in {"b200", "gb200"}
    assert started_class(sched, job("bigger", hbm_gb_per_gpu=183.0)) == "gb200"


def test_a_list_of_classes_is_honoured_and_memory_filters_it() -> None:
    sched = Scheduler(topo())
    assert started_class(
        sched, job("listed", gpu_classes=("h100", "b200"), hbm_gb_per_gpu=100.0)
    ) == ("b200")
    either = job("either", gpu_classes=("h100", "gb200"))
    assert started_class(sched, either) in {"h100", "gb200"}


def test_a_job_no_class_can_hold_is_refused_with_the_reason() -> None:
    sched = Scheduler(topo())
    reason = sched.submit(job("huge", hbm_gb_per_gpu=300.0), 0.0)
    assert reason == (
        "not enough GPU memory: 300 GB per GPU asked, no GPU of this fleet has that much "
        "(the most here: 186 GB)"
    )
    reason = sched.submit(job("picky", gpu_classes=("h100", "b200"), hbm_gb_per_gpu=185.0), 0.0)
    assert reason is not None
    assert reason.startswith("not enough GPU memory: 185 GB per GPU asked, no GPU of the classes")
    assert sched.submit(job("typo", gpu_classes=("h100", "h200")), 0.0) == (
        "unknown GPU class: 'h200'"
    )


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"hbm_gb_per_gpu": -1.0}, "hbm_gb_per_gpu: must be none or > 0"),
        ({"hbm_gb_per_gpu": float("nan")}, "hbm_gb_per_gpu: must be none or > 0"),
        ({"gpu_classes": ("h100",)}, "gpu_classes: must be 2 to 16 different classes"),
        ({"gpu_classes": ("h100", "h100")}, "gpu_classes: must be 2 to 16 different classes"),
        (
            {"gpu_classes": ("h100", "b200"), "gpu_class": "h100"},
            "gpu_classes: give either one gpu_class or several",
        ),
    ],
)
def test_bad_memory_and_class_fields_are_refused_naming_the_field(
    fields: dict[str, Any], problem: str
) -> None:
    sched = Scheduler(topo())
    reason = sched.submit(job("bad", **fields), 0.0)
    assert reason is not None
    assert reason.startswith(f"invalid field: {problem}")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([1, 2, 4, 8]),
            st.sampled_from([None, 60.0, 100.0, 181.0, 186.0]),
            st.sampled_from([(), ("h100", "b200"), ("b200", "gb200"), ("h100", "gb200")]),
            st.floats(10.0, 500.0),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_every_start_fits_the_jobs_memory_and_classes(
    specs: list[tuple[int, float | None, tuple[str, ...], float]],
) -> None:
    """Random jobs over time: every job that runs is on a class it accepts whose GPUs
    hold its memory, and the scheduler's invariants hold after every pass."""
    sched = Scheduler(topo())
    jobs = [
        Job(f"j{i}", "a", 10.0 * i, g, run, hbm_gb_per_gpu=hbm, gpu_classes=classes)
        for i, (g, hbm, classes, run) in enumerate(specs)
    ]
    running: list[Job] = []
    for i, j in enumerate(jobs):
        now = 10.0 * i
        for r in [r for r in running if r.run_start_s + r.duration_s <= now]:
            sched.finish(r, now)
            running.remove(r)
        sched.submit(j, now)
        res = sched.schedule(now)
        running.extend(res.started)
        running = [r for r in running if r.state is JobState.RUNNING]
        for r in running:
            if r.hbm_gb_per_gpu is not None:
                assert HBM[r.placed_class] >= r.hbm_gb_per_gpu, r
            if r.gpu_classes:
                assert r.placed_class in r.gpu_classes, r
        check_invariants(sched)
    for j in jobs:
        if j.state is JobState.FAILED:  # refused at submit: nothing can hold it
            assert j.hbm_gb_per_gpu is not None
            fits = [c for c in (j.gpu_classes or tuple(HBM)) if HBM[c] >= j.hbm_gb_per_gpu]
            assert not fits, j
