"""GPU-hour allocations: projects, grants with a state machine, and the ledger that charges
them (issue #19).

Pure and I/O-free, with times in seconds on whatever clock the caller runs (the twin's
simulated seconds or the service's epoch seconds), so one model serves the twin and the
control plane. The service stores these records (``aifactory.service``); the scheduler
asks :meth:`Ledger.covers` before admitting a job of a project.
"""

from __future__ import annotations

from aifactory.allocations.ledger import Charge, Cover, Draw, Ledger
from aifactory.allocations.model import (
    TRANSITIONS,
    Allocation,
    AllocState,
    Change,
    ChangeKind,
    IllegalTransitionError,
    Project,
)
from aifactory.allocations.rates import B200_TFLOPS, RATE_SOURCE, b200_rates

__all__ = [
    "B200_TFLOPS",
    "RATE_SOURCE",
    "TRANSITIONS",
    "AllocState",
    "Allocation",
    "Change",
    "ChangeKind",
    "Charge",
    "Cover",
    "Draw",
    "IllegalTransitionError",
    "Ledger",
    "Project",
    "b200_rates",
]
