"""A planned training run replayed through the twin with failures, over several seeds.

Why: the planner's wall time is a first-order expectation; the twin draws each failure,
takes nodes out for their repair, restarts the job from its last checkpoint and
re-places it on spare capacity, so its finish times show the spread the formula hides
and check the formula itself.

The simulated fleet is the job's GPUs plus a few spare NVLink domains
(``spare_fraction``, an assumption: large operators keep hot spares so that a failed
node is replaced at once instead of waited for), and never fewer than three times the
GPUs expected to be down for repair at once. It lives in the twin, which uses the
physics' models; the physics imports nothing of the twin.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from aifactory.fleet import GpuModel, compile_topology, parse_fleet
from aifactory.physics.failures import FailureModel, Scope, load_failure_model
from aifactory.physics.planner import SECONDS_PER_DAY, Plan
from aifactory.scheduler.config import SchedulerConfig
from aifactory.twin.failures import FailureInjector
from aifactory.twin.simulator import Simulation, TwinConfig
from aifactory.workload.job import Job, JobState

#: Spare GPUs kept next to the job, as a share of its size (assumption; at least one domain).
DEFAULT_SPARE_FRACTION = 0.02
#: Each run stops at this multiple of the planned wall time; a job not done by then is
#: counted as unfinished (the twin keeps drawing failures as long as it runs).
HORIZON_FACTOR = 1.5
#: Spares cover at least this multiple of the GPUs expected to be down for repair at
#: once, so that a shortage of spares does not dominate the finish time.
SPARE_COVER = 3.0


class CampaignResult(BaseModel):
    """Finish times of one planned run over ``seeds`` simulated campaigns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seeds: int = Field(description="Simulated campaigns (seeds 0 .. seeds-1).")
    finish_days: list[float | None] = Field(description="Finish time per seed (null: not done).")
    unfinished: int = Field(description="Runs not done within the horizon.")
    mean_days: float | None = Field(description="Mean finish time of the finished runs.")
    p50_days: float | None
    p90_days: float | None
    min_days: float | None
    max_days: float | None
    mean_interruptions: float = Field(description="Mean interruptions of the job per run.")
    spare_gpus: int = Field(description="Spare GPUs beside the job in the simulated fleet.")
    horizon_days: float = Field(description="Simulated time limit per run.")


def simulate_training(
    plan: Plan,
    gpu: GpuModel,
    seeds: int,
    *,
    failure_model: FailureModel | None = None,
    spare_fraction: float = DEFAULT_SPARE_FRACTION,
) -> CampaignResult:
    """Run ``plan`` through the twin ``seeds`` times (seed ``i`` for run ``i``).

    The failure model defaults to the bundled Llama 3 cause mix at the plan's rate.
    """
    if seeds < 1:
        msg = f"seeds: must be >= 1 (got {seeds})"
        raise ValueError(msg)
    if spare_fraction < 0:
        msg = f"spare_fraction: must be >= 0 (got {spare_fraction})"
        raise ValueError(msg)
    model = failure_model or load_failure_model("llama3").with_rate(plan.failure_rate)
    unit = gpu.nvlink_domain_gpus
    spare = max(plan.gpus * spare_fraction, SPARE_COVER * _expected_down_gpus(plan, gpu, model))
    spare_domains = max(1, math.ceil(spare / unit))
    domains = math.ceil(plan.gpus / unit) + spare_domains
    fleet = parse_fleet(
        {
            "name": "plan",
            "sites": [
                {
                    "name": "site",
                    "region": "planned",
                    "power_mw": max(1.0, plan.power_mw * 2),
                    "pue": plan.pue,
                    "pods": [
                        {
                            "name": "pod",
                            "groups": [{"model": gpu.id, "domains": domains, "owner": "lab"}],
                        }
                    ],
                }
            ],
            "tenants": [
                {"name": "lab", "quotas": [{"gpu_class": gpu.id, "nominal": domains * unit}]}
            ],
        },
        "plan",
    )
    topo = compile_topology(fleet)
    ideal_s = plan.ideal_days * SECONDS_PER_DAY
    horizon_s = plan.wall_days * SECONDS_PER_DAY * HORIZON_FACTOR
    config = SchedulerConfig(
        restart_overhead_s=plan.restart_s, checkpoint_write_s=plan.ckpt_write_s
    )
    finish: list[float | None] = []
    interruptions: list[int] = []
    for seed in range(seeds):
        job = Job(
            "training",
            "lab",
            0.0,
            plan.gpus,
            ideal_s,
            gpu_class=gpu.id,
            checkpoint_s=plan.ckpt_interval_daly_s,
        )
        injector = FailureInjector(model) if model.rate_per_gpu_hour > 0 else None
        twin = TwinConfig(sample_interval_s=SECONDS_PER_DAY, until_s=horizon_s, seed=seed)
        Simulation(topo, [job], config, twin, injector).run()
        end = job.end_s if job.state == JobState.COMPLETED else None
        finish.append(None if end is None else end / SECONDS_PER_DAY)
        interruptions.append(job.failures)
    return _summarise(finish, interruptions, domains * unit - plan.gpus, horizon_s)


def _expected_down_gpus(plan: Plan, gpu: GpuModel, model: FailureModel) -> float:
    """GPUs out for repair at any time (Little's law): node failures/s x mean repair x node."""
    node_repair_s = sum(
        float(share) * c.repair.mean_s
        for share, c in zip(model.shares, model.causes, strict=True)
        if c.scope == Scope.NODE
    )
    per_s = plan.gpus * model.rate_per_gpu_hour / 3600.0
    return per_s * node_repair_s * gpu.gpus_per_node


def _summarise(
    finish: list[float | None], interruptions: list[int], spare: int, horizon_s: float
) -> CampaignResult:
    done = np.array([f for f in finish if f is not None], dtype=np.float64)
    has = len(done) > 0
    return CampaignResult(
        seeds=len(finish),
        finish_days=finish,
        unfinished=len(finish) - len(done),
        mean_days=float(done.mean()) if has else None,
        p50_days=float(np.percentile(done, 50)) if has else None,
        p90_days=float(np.percentile(done, 90)) if has else None,
        min_days=float(done.min()) if has else None,
        max_days=float(done.max()) if has else None,
        mean_interruptions=float(np.mean(interruptions)),
        spare_gpus=spare,
        horizon_days=horizon_s / SECONDS_PER_DAY,
    )
