"""Vectorised samplers for sizes, durations, arrival times and time limits.

One registry per extension point, keyed by the kind enum of :mod:`.catalogue`; adding a
kind is one function and one decorator line. Every sampler draws a whole batch with
numpy from the generator it is handed, so it never touches global random state and a
batch of a million jobs costs milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from aifactory.workload.synth import exact
from aifactory.workload.synth.catalogue import (
    Arrival,
    ArrivalKind,
    ChoiceSize,
    DurationKind,
    Estimate,
    FittedDuration,
    FittedSize,
    LognormalDuration,
    LogUniformDuration,
    LogUniformSize,
    SizeKind,
    fitted_dataset,
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

SizeSampler = Callable[[Any, int, np.random.Generator, int], tuple[IntArray, IntArray]]
DurationSampler = Callable[[Any, IntArray, np.random.Generator], FloatArray]
ArrivalSampler = Callable[[Arrival, int, np.random.Generator, float], FloatArray]

SIZE_SAMPLERS: dict[SizeKind, SizeSampler] = {}
DURATION_SAMPLERS: dict[DurationKind, DurationSampler] = {}
ARRIVAL_SAMPLERS: dict[ArrivalKind, ArrivalSampler] = {}

_K = TypeVar("_K")
_F = TypeVar("_F")


def _register(registry: dict[_K, _F], key: _K) -> Callable[[_F], _F]:
    def deco(fn: _F) -> _F:
        if key in registry:
            msg = f"sampler for '{key}' registered twice"
            raise ValueError(msg)
        registry[key] = fn
        return fn

    return deco


# --- sizes: each returns (gpus, base) where base is the size before any scaling, used to
# pick the duration bucket of a fitted duration model.


def _truncated_choice(
    values: IntArray, probs: FloatArray, n: int, rng: np.random.Generator, cap: int
) -> IntArray:
    """Draw from a pmf restricted to values <= cap (renormalised). A gang larger than the
    tenant can ever hold would never run, so it is not offered."""
    p = np.where(values <= cap, probs, 0.0)
    total = p.sum()
    if total <= 0:
        return np.full(n, cap, dtype=np.int64)
    idx = np.searchsorted(np.cumsum(p / total), rng.random(n), side="right")
    return values[np.minimum(idx, len(values) - 1)]


@_register(SIZE_SAMPLERS, SizeKind.FITTED)
def _fitted_size(
    spec: FittedSize, n: int, rng: np.random.Generator, cap: int
) -> tuple[IntArray, IntArray]:
    ds = fitted_dataset(spec.dataset)
    gpus = _truncated_choice(ds.sizes * spec.scale, ds.size_probs, n, rng, cap)
    return gpus, np.maximum(gpus // spec.scale, 1)


@_register(SIZE_SAMPLERS, SizeKind.CHOICE)
def _choice_size(
    spec: ChoiceSize, n: int, rng: np.random.Generator, cap: int
) -> tuple[IntArray, IntArray]:
    values = np.asarray(spec.values, dtype=np.int64)
    w = np.asarray(spec.weights, dtype=np.float64)
    gpus = _truncated_choice(values, w / w.sum(), n, rng, cap)
    return gpus, gpus


@_register(SIZE_SAMPLERS, SizeKind.LOG_UNIFORM)
def _log_uniform_size(
    spec: LogUniformSize, n: int, rng: np.random.Generator, cap: int
) -> tuple[IntArray, IntArray]:
    g = spec.granularity
    hi = min(spec.max, cap)
    lo = min(spec.min, hi)
    lo_g = max(g, math.ceil(lo / g) * g)
    hi_g = (hi // g) * g
    if hi_g < lo_g:  # the tenant cannot hold even one granule: drop the rounding
        lo_g, hi_g, g = lo, hi, 1
    x = exact.exp(rng.uniform(math.log(lo), math.log(hi), n)) if hi > lo else np.full(n, float(lo))
    gpus = np.clip(np.rint(x / g).astype(np.int64) * g, lo_g, hi_g)
    return gpus, gpus


# --- durations (seconds, > 0)


@_register(DURATION_SAMPLERS, DurationKind.FITTED)
def _fitted_duration(spec: FittedDuration, base: IntArray, rng: np.random.Generator) -> FloatArray:
    """Inverse-CDF sampling of the bucket's quantile function, linear in log-duration
    between knots: the synthetic CDF meets the empirical one at every knot."""
    ds = fitted_dataset(spec.dataset)
    lq = ds.log_quantiles
    q = lq.shape[1] - 1
    bucket = ds.bucket_of(base)
    u = rng.random(len(base)) * q
    k = np.minimum(u.astype(np.int64), q - 1)
    frac = u - k
    logd: FloatArray = lq[bucket, k] * (1.0 - frac) + lq[bucket, k + 1] * frac
    return exact.exp(logd)


@_register(DURATION_SAMPLERS, DurationKind.LOGNORMAL)
def _lognormal_duration(
    spec: LognormalDuration, base: IntArray, rng: np.random.Generator
) -> FloatArray:
    d = exact.exp(rng.normal(math.log(spec.median_s), spec.sigma, len(base)))
    clipped: FloatArray = np.clip(d, spec.min_s, spec.max_s)
    return clipped


@_register(DURATION_SAMPLERS, DurationKind.LOG_UNIFORM)
def _log_uniform_duration(
    spec: LogUniformDuration, base: IntArray, rng: np.random.Generator
) -> FloatArray:
    return exact.exp(rng.uniform(math.log(spec.min_s), math.log(spec.max_s), len(base)))


# --- arrivals (seconds from the start, in [0, horizon))


@_register(ARRIVAL_SAMPLERS, ArrivalKind.POISSON)
def _poisson(_spec: Arrival, n: int, rng: np.random.Generator, horizon: float) -> FloatArray:
    """A homogeneous Poisson process given its count is i.i.d. uniform over the horizon."""
    return rng.random(n) * horizon


@_register(ARRIVAL_SAMPLERS, ArrivalKind.BURST)
def _burst(spec: Arrival, n: int, rng: np.random.Generator, horizon: float) -> FloatArray:
    """Bursts at Poisson times, each of ``burst_jobs`` jobs within ``spread_s`` (an
    evaluation sweep over a new checkpoint is submitted at once)."""
    k = spec.burst_jobs
    spread = min(spec.spread_s, horizon)
    starts = rng.random(-(-n // k)) * (horizon - spread)
    return starts[np.arange(n) // k] + rng.random(n) * spread


@_register(ARRIVAL_SAMPLERS, ArrivalKind.STANDING)
def _standing(spec: Arrival, n: int, rng: np.random.Generator, horizon: float) -> FloatArray:
    """Long-running services already wanted at the start: submitted within ``spread_s``."""
    return rng.random(n) * min(spec.spread_s, horizon)


def estimates(spec: Estimate, duration: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Time limits: duration x log-uniform factor, at most ``cap_s`` unless the job is longer
    (a job is never given a limit below its own run time, so no job is killed by it)."""
    lo, hi = math.log(spec.factor_min), math.log(spec.factor_max)
    factor = (
        exact.exp(rng.uniform(lo, hi, len(duration)))
        if hi > lo
        else np.full_like(duration, spec.factor_min)
    )
    est = duration * factor
    if spec.cap_s is not None:
        est = np.minimum(est, np.maximum(spec.cap_s, duration))
    return est
