"""Checkpoint intervals and the share of time a failing job loses (facts.md §3).

All times are in seconds: ``write_s`` is the checkpoint cost ``d`` (progress pauses while
it is written), ``mttf_s`` the job's mean time to failure ``M`` (see
:func:`aifactory.physics.failures.job_mttf_s`), ``restart_s`` the restart cost ``R``
(reload, rebuild communicators, warm up), and ``interval_s`` the compute time ``t``
between two checkpoints. ``mttf_s`` may be ``inf`` (no failures).

Why these formulas: Young (1974) and Daly (2006) give the interval that minimises
expected lost time to first order in ``d / M``; the lost-time sum below is the same
first-order model, so the three agree with each other and stay cheap enough for the
planner to evaluate inside a solver. They hold while ``t``, ``d`` and ``R`` are small
next to ``M``; beyond that the loss saturates and :func:`expected_ettr` clips at 0.
"""

from __future__ import annotations

import math


def young_interval_s(write_s: float, mttf_s: float) -> float:
    """Young's interval ``sqrt(2 d M)``, seconds of compute between checkpoints."""
    _check(write_s=write_s, mttf_s=mttf_s)
    return math.sqrt(2.0 * write_s * mttf_s)


def daly_interval_s(write_s: float, mttf_s: float) -> float:
    """Daly's higher-order interval, seconds; ``M`` itself when ``d >= 2M``.

    ``sqrt(2dM) * (1 + sqrt(d/2M)/3 + (d/2M)/9) - d`` for ``d < 2M``: when a checkpoint
    costs more than two MTTFs there is no useful optimum and Daly sets ``t = M``.
    """
    _check(write_s=write_s, mttf_s=mttf_s)
    if math.isinf(mttf_s):
        return math.inf
    if write_s >= 2.0 * mttf_s:
        return mttf_s
    x = write_s / (2.0 * mttf_s)
    return math.sqrt(2.0 * write_s * mttf_s) * (1.0 + math.sqrt(x) / 3.0 + x / 9.0) - write_s


def lost_fraction(interval_s: float, write_s: float, mttf_s: float, restart_s: float) -> float:
    """Expected share of wall time lost: ``d/t + t/(2M) + R/M`` (dimensionless).

    The three terms are: writing checkpoints, recomputing the half interval lost on
    average at each failure, and restarting after each failure. Not clipped, so a value
    of 1 or more says the job makes no progress at this size.
    """
    _check(write_s=write_s, mttf_s=mttf_s, restart_s=restart_s)
    if not interval_s > 0:
        msg = f"interval_s: must be > 0 (got {interval_s})"
        raise ValueError(msg)
    writing = 0.0 if math.isinf(interval_s) else write_s / interval_s
    if math.isinf(mttf_s):
        return writing
    return writing + interval_s / (2.0 * mttf_s) + restart_s / mttf_s


def recompute_fraction(interval_s: float, mttf_s: float) -> float:
    """The part of :func:`lost_fraction` spent recomputing lost work (GPUs busy): ``t/(2M)``."""
    _check(mttf_s=mttf_s)
    if math.isinf(mttf_s):
        return 0.0
    return interval_s / (2.0 * mttf_s)


def expected_ettr(interval_s: float, write_s: float, mttf_s: float, restart_s: float) -> float:
    """Effective training time ratio (useful time / wall time): ``1 - lost``, clipped to [0, 1]."""
    lost = lost_fraction(interval_s, write_s, mttf_s, restart_s)
    return min(1.0, max(0.0, 1.0 - lost))


def optimal_ettr(write_s: float, mttf_s: float, restart_s: float) -> float:
    """ETTR at Daly's interval (the planner's choice); 1 when there are no failures."""
    if math.isinf(mttf_s):
        return 1.0
    if write_s == 0:  # free checkpoints: checkpoint continuously, lose only the restarts
        _check(restart_s=restart_s)
        return min(1.0, max(0.0, 1.0 - restart_s / mttf_s))
    return expected_ettr(daly_interval_s(write_s, mttf_s), write_s, mttf_s, restart_s)


def _check(**values: float) -> None:
    for name, value in values.items():
        if math.isnan(value):
            msg = f"{name}: must be a number (got nan)"
            raise ValueError(msg)
        if name == "mttf_s" and not value > 0:
            msg = f"mttf_s: must be > 0 (got {value})"
            raise ValueError(msg)
        if name != "mttf_s" and (value < 0 or math.isinf(value)):
            msg = f"{name}: must be a finite number >= 0 (got {value})"
            raise ValueError(msg)
