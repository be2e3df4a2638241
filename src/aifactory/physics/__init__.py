"""The physics of scale: failures, checkpoints, energy, and the LLM training planner.

Pure functions and frozen records; the simulator (:mod:`aifactory.twin`) draws from the
failure model with its own seeded generator, and the CLI (`aifactory plan train`) wraps
the planner.
"""

from aifactory.physics.checkpoint import (
    daly_interval_s,
    expected_ettr,
    lost_fraction,
    optimal_ettr,
    young_interval_s,
)
from aifactory.physics.energy import DEFAULT_PUE, energy_mwh, energy_mwh_by_model, power_w
from aifactory.physics.failures import (
    Cause,
    FailureDraws,
    FailureModel,
    RepairTime,
    Scope,
    bundled_failure_models,
    expected_interruptions,
    job_mttf_s,
    load_failure_model,
)
from aifactory.physics.planner import Plan, TrainingRequest, plan_training, solve_gpus

__all__ = [
    "DEFAULT_PUE",
    "Cause",
    "FailureDraws",
    "FailureModel",
    "Plan",
    "RepairTime",
    "Scope",
    "TrainingRequest",
    "bundled_failure_models",
    "daly_interval_s",
    "energy_mwh",
    "energy_mwh_by_model",
    "expected_ettr",
    "expected_interruptions",
    "job_mttf_s",
    "load_failure_model",
    "lost_fraction",
    "optimal_ettr",
    "plan_training",
    "power_w",
    "solve_gpus",
    "young_interval_s",
]
