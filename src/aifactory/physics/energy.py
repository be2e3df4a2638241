"""Power and energy from the GPU catalogue and a site's PUE.

Figures per GPU come from :class:`aifactory.fleet.GpuModel` (``busy_watts``,
``idle_watts``); the facility overhead is the site's power usage effectiveness (PUE),
so facility power = IT power x PUE. This is the same convention as the fleet summary's
peak power, so a plan's or a run's megawatts compare directly with a site's capacity.

Units: watts (W) for power, GPU-seconds for busy/idle time, megawatt-hours (MWh) for
energy. 1 MWh = 3.6e9 J = 3.6e9 W*s.
"""

from __future__ import annotations

from collections.abc import Mapping

from aifactory.fleet.spec import GpuModel

JOULES_PER_MWH = 3.6e9

#: PUE used when no site is given (the planner). Assumption: a modern liquid-cooled AI
#: data centre; the bundled fleets carry their own per-site figures (1.25-1.3).
DEFAULT_PUE = 1.2


def power_w(busy_gpus: float, idle_gpus: float, model: GpuModel, pue: float) -> float:
    """Facility power, W, of ``busy_gpus`` busy and ``idle_gpus`` idle GPUs of ``model``."""
    _check_counts(busy_gpus, idle_gpus, pue)
    return (busy_gpus * model.busy_watts + idle_gpus * model.idle_watts) * pue


def energy_mwh(busy_gpu_s: float, idle_gpu_s: float, model: GpuModel, pue: float) -> float:
    """Facility energy, MWh, of so many GPU-seconds busy and idle on ``model``."""
    _check_counts(busy_gpu_s, idle_gpu_s, pue)
    return (busy_gpu_s * model.busy_watts + idle_gpu_s * model.idle_watts) * pue / JOULES_PER_MWH


def energy_mwh_by_model(
    busy_gpu_s: Mapping[str, float],
    idle_gpu_s: Mapping[str, float],
    models: Mapping[str, GpuModel],
    pue: float,
) -> float:
    """Facility energy, MWh, summed over GPU models (GPU-seconds keyed by model id).

    Raises KeyError naming a model id missing from ``models``.
    """
    total = 0.0
    for model_id in sorted(set(busy_gpu_s) | set(idle_gpu_s)):
        if model_id not in models:
            msg = f"unknown GPU model '{model_id}'"
            raise KeyError(msg)
        total += energy_mwh(
            busy_gpu_s.get(model_id, 0.0), idle_gpu_s.get(model_id, 0.0), models[model_id], pue
        )
    return total


def _check_counts(busy: float, idle: float, pue: float) -> None:
    if busy < 0 or idle < 0:
        msg = f"busy and idle amounts must be >= 0 (got {busy}, {idle})"
        raise ValueError(msg)
    if pue < 1:
        msg = f"pue: must be >= 1 (got {pue})"
        raise ValueError(msg)
