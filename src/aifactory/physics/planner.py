"""The LLM training planner: compute, time, interruptions, checkpoints and energy of a run.

A pure function over typed records: :func:`plan_training` takes the model size, the
tokens, the GPU model and either a GPU count or a deadline, and returns a :class:`Plan`.

The model, each step with its source:

- compute: ``6 * params * tokens`` FLOPs (dense transformer; facts.md §2);
- ideal time: ``flops / (gpus * bf16 peak * MFU)``;
- failures: Poisson at ``failure_rate`` per GPU-hour, job MTTF ``3600 / (gpus * rate)``
  (:mod:`aifactory.physics.failures`; Llama 3, facts.md §3);
- checkpoints at Daly's interval; the effective training time ratio (ETTR) is
  ``1 - (d/t + t/2M + R/M)`` (:mod:`aifactory.physics.checkpoint`), and the wall time is
  ``ideal / ETTR``;
- energy: GPUs draw busy power while computing or recomputing lost work and idle power
  while writing checkpoints or restarting, times the PUE (:mod:`aifactory.physics.energy`).

Because ETTR falls as the job grows, more GPUs stop paying off beyond a point; solving
for the GPUs that meet a deadline therefore searches numerically (the throughput
``gpus * ETTR`` peaks, then the smallest count that meets the deadline below that peak
is found by bisection), in whole NVLink domains of the GPU model.
"""

from __future__ import annotations

import math
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aifactory.fleet.errors import SpecError, problems_from
from aifactory.fleet.spec import Frozen, GpuModel
from aifactory.physics.checkpoint import (
    daly_interval_s,
    optimal_ettr,
    recompute_fraction,
    young_interval_s,
)
from aifactory.physics.energy import DEFAULT_PUE, energy_mwh, power_w
from aifactory.physics.failures import LLAMA3_RATE_PER_GPU_HOUR, job_mttf_s

SECONDS_PER_DAY = 86_400.0
FLOPS_PER_PARAM_TOKEN = 6.0  # forward + backward of a dense transformer (facts.md §2)

#: Largest job the solver considers, GPUs: well past any fleet, so "cannot finish" means
#: failures, not this cap, are the limit (at 2e-5 the throughput peaks far below it).
MAX_SOLVE_GPUS = 10_000_000

_SOURCE = "plan"


class TrainingRequest(Frozen):
    """The planner's inputs, validated; field names are the keyword arguments."""

    params: float = Field(gt=0, allow_inf_nan=False, description="Model parameters.")
    tokens: float = Field(gt=0, allow_inf_nan=False, description="Training tokens.")
    gpus: int | None = Field(default=None, gt=0, description="GPUs; or give days.")
    days: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="Deadline, days; or give gpus."
    )
    mfu: float = Field(default=0.4, gt=0, le=1, description="Model FLOPs utilisation.")
    ckpt_write_s: float = Field(
        default=60.0, ge=0, allow_inf_nan=False, description="Checkpoint write cost, s."
    )
    restart_s: float = Field(
        default=600.0, ge=0, allow_inf_nan=False, description="Restart cost per failure, s."
    )
    failure_rate: float = Field(
        default=LLAMA3_RATE_PER_GPU_HOUR,
        ge=0,
        allow_inf_nan=False,
        description="Unexpected interruptions per GPU-hour.",
    )
    pue: float = Field(default=DEFAULT_PUE, ge=1, le=3, description="Site PUE.")

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.gpus is None) == (self.days is None):
            msg = "gpus: give exactly one of gpus and days"
            raise ValueError(msg)
        return self


class Plan(BaseModel):
    """A training plan. The first ten fields are the stable JSON of issue #5, in order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flops: float = Field(description="Training compute, FLOPs (6 x params x tokens).")
    ideal_days: float = Field(description="Days without failures or checkpoints.")
    interruptions_per_day: float = Field(description="Expected unexpected interruptions/day.")
    expected_interruptions: float = Field(description="Expected interruptions over wall_days.")
    ckpt_interval_young_s: float | None = Field(description="Young's interval, s (null: none).")
    ckpt_interval_daly_s: float | None = Field(description="Daly's interval, s (null: none).")
    ettr: float = Field(description="Effective training time ratio at Daly's interval.")
    wall_days: float = Field(description="Expected wall time, days (ideal / ETTR).")
    energy_mwh: float = Field(description="Facility energy over the wall time, MWh.")
    power_mw: float = Field(description="Peak facility power, all GPUs busy, MW.")
    gpu: str = Field(description="GPU model id.")
    gpus: int = Field(description="GPUs of the job (solved when days was given).")
    days_target: float | None = Field(description="The deadline solved for, days, if any.")
    mttf_h: float | None = Field(description="Job mean time to failure, hours (null: none).")
    gpu_hours: float = Field(description="GPU-hours held over the wall time.")
    mfu: float
    ckpt_write_s: float
    restart_s: float
    failure_rate: float
    pue: float


def plan_training(
    params: float,
    tokens: float,
    gpu: GpuModel,
    gpus: int | None = None,
    days: float | None = None,
    *,
    mfu: float = 0.4,
    ckpt_write_s: float = 60.0,
    restart_s: float = 600.0,
    failure_rate: float = LLAMA3_RATE_PER_GPU_HOUR,
    pue: float = DEFAULT_PUE,
) -> Plan:
    """Plan a training run on ``gpus`` GPUs, or on the fewest that finish within ``days``.

    Raises :class:`SpecError` (``field: problem``) on bad inputs, and when the deadline
    cannot be met at any size (the message gives the fastest achievable).
    """
    try:
        req = TrainingRequest(
            params=params,
            tokens=tokens,
            gpus=gpus,
            days=days,
            mfu=mfu,
            ckpt_write_s=ckpt_write_s,
            restart_s=restart_s,
            failure_rate=failure_rate,
            pue=pue,
        )
    except ValidationError as exc:
        raise SpecError(problems_from(exc), _SOURCE) from None
    n = req.gpus if req.gpus is not None else solve_gpus(req, gpu)
    return _plan(req, gpu, n)


def training_flops(params: float, tokens: float) -> float:
    """Training compute of a dense transformer, FLOPs: ``6 * params * tokens``."""
    return FLOPS_PER_PARAM_TOKEN * params * tokens


def wall_seconds(req: TrainingRequest, gpu: GpuModel, gpus: int) -> float:
    """Expected wall time on ``gpus`` GPUs, seconds; ``inf`` when the job cannot progress."""
    ettr = _ettr(req, gpus)
    return math.inf if ettr <= 0 else _ideal_s(req, gpu, gpus) / ettr


def solve_gpus(req: TrainingRequest, gpu: GpuModel) -> int:
    """Fewest GPUs, in whole NVLink domains of ``gpu``, that finish within ``req.days``.

    Why not a closed form: ETTR depends on the size through the MTTF, so the wall time
    is ``flops / (gpus * ETTR(gpus))``, which first falls and then rises with size.
    """
    assert req.days is not None
    target_s = req.days * SECONDS_PER_DAY
    unit = gpu.nvlink_domain_gpus

    def throughput(k: int) -> float:  # GPU-equivalents of useful work on k domains
        return k * unit * _ettr(req, k * unit)

    # 1. The size of peak throughput: ternary search (unimodal: concave, then flat at 0).
    lo, hi = 1, max(1, MAX_SOLVE_GPUS // unit)
    while hi - lo > 2:
        m1 = lo + (hi - lo) // 3
        m2 = hi - (hi - lo) // 3
        if throughput(m1) < throughput(m2):
            lo = m1 + 1
        else:
            hi = m2
    peak = max(range(lo, hi + 1), key=throughput)
    fastest_s = wall_seconds(req, gpu, peak * unit)
    if fastest_s > target_s:
        best = (
            f"the fastest is {fastest_s / SECONDS_PER_DAY:,.1f} days on {peak * unit:,} GPUs"
            if math.isfinite(fastest_s)
            else "the job makes no progress at any size"
        )
        msg = f"days: cannot finish in {req.days:g} days on {gpu.id}: {best}"
        raise SpecError([msg], _SOURCE)
    # 2. The smallest size meeting the deadline: bisection on [1, peak], where the wall
    #    time falls monotonically with size.
    lo, hi = 1, peak
    while lo < hi:
        mid = (lo + hi) // 2
        if wall_seconds(req, gpu, mid * unit) <= target_s:
            hi = mid
        else:
            lo = mid + 1
    return lo * unit


def _mttf_s(req: TrainingRequest, gpus: int) -> float:
    return job_mttf_s(gpus, req.failure_rate)


def _ettr(req: TrainingRequest, gpus: int) -> float:
    return optimal_ettr(req.ckpt_write_s, _mttf_s(req, gpus), req.restart_s)


def _ideal_s(req: TrainingRequest, gpu: GpuModel, gpus: int) -> float:
    flops = training_flops(req.params, req.tokens)
    return flops / (gpus * gpu.bf16_tflops * 1e12 * req.mfu)


def _plan(req: TrainingRequest, gpu: GpuModel, gpus: int) -> Plan:
    mttf = _mttf_s(req, gpus)
    ettr = _ettr(req, gpus)
    if ettr <= 0:
        msg = (
            f"gpus: on {gpus:,} GPUs the job makes no progress (MTTF {mttf / 3600:.2g} h "
            "against checkpoint and restart costs); use fewer GPUs or a lower failure rate"
        )
        raise SpecError([msg], _SOURCE)
    ideal_s = _ideal_s(req, gpu, gpus)
    wall_s = ideal_s / ettr
    failures = not math.isinf(mttf)
    young = young_interval_s(req.ckpt_write_s, mttf) if failures else None
    daly = daly_interval_s(req.ckpt_write_s, mttf) if failures else None
    # GPUs are busy while computing and recomputing lost work, idle while writing a
    # checkpoint or restarting: busy share = ETTR + recompute share.
    busy = 1.0 if daly is None or daly == 0 else min(1.0, ettr + recompute_fraction(daly, mttf))
    gpu_s = wall_s * gpus
    per_day = gpus * req.failure_rate * 24.0
    return Plan(
        flops=training_flops(req.params, req.tokens),
        ideal_days=ideal_s / SECONDS_PER_DAY,
        interruptions_per_day=per_day,
        expected_interruptions=per_day * wall_s / SECONDS_PER_DAY,
        ckpt_interval_young_s=young,
        ckpt_interval_daly_s=daly,
        ettr=ettr,
        wall_days=wall_s / SECONDS_PER_DAY,
        energy_mwh=energy_mwh(busy * gpu_s, (1.0 - busy) * gpu_s, gpu, req.pue),
        power_mw=power_w(gpus, 0, gpu, req.pue) / 1e6,
        gpu=gpu.id,
        gpus=gpus,
        days_target=req.days,
        mttf_h=mttf / 3600.0 if failures else None,
        gpu_hours=gpu_s / 3600.0,
        mfu=req.mfu,
        ckpt_write_s=req.ckpt_write_s,
        restart_s=req.restart_s,
        failure_rate=req.failure_rate,
        pue=req.pue,
    )
