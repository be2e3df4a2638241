"""Projects and allocations: what a grant of GPU-hours is, and how its state may move.

An allocation's lifecycle is an explicit transition table (:data:`TRANSITIONS`), each edge
with the reason it exists; a move not in the table raises. People decide the first edges
(request, endorse, approve, reject); the clock and the balance decide the rest (active,
exhausted, expired), applied by :meth:`Allocation.settle`. Every move and every change of
amount or period (top-up, extension) is kept in ``history`` with who made it and when.

The records are frozen pydantic models: a change returns a new allocation, so a caller
(the twin, or the service's store) decides when the new value is kept.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

MAX_GPU_HOURS = 1e10  # beyond every fleet's yearly capacity (300k GPUs x 8,760 h = 2.6e9)
NO_NUL = r"^[^\x00]*$"
SECONDS_PER_HOUR = 3600.0
CLOCK = "clock"  # the ``who`` of the moves that time and the balance make

Text = Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL)]
Who = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NO_NUL)]
Slug = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]


class IllegalTransitionError(ValueError):
    """A move the transition table does not have, or a change the state does not allow."""


class AllocState(StrEnum):
    """Where an allocation stands."""

    REQUESTED = "requested"
    ENDORSED = "endorsed"
    APPROVED = "approved"
    REJECTED = "rejected"
    ACTIVE = "active"
    EXHAUSTED = "exhausted"
    EXPIRED = "expired"


S = AllocState
# Every legal move, with why it exists.
TRANSITIONS: dict[tuple[AllocState, AllocState], str] = {
    (S.REQUESTED, S.ENDORSED): "the applicant's tenant-admin vouches for the request",
    (S.REQUESTED, S.REJECTED): "refused before endorsement (by its tenant-admin or the platform)",
    (S.ENDORSED, S.APPROVED): "a platform admin grants the endorsed request",
    (S.ENDORSED, S.REJECTED): "a platform admin refuses the endorsed request",
    (S.APPROVED, S.ACTIVE): "its start date is reached: jobs may draw on it",
    (S.APPROVED, S.EXPIRED): "its whole period passed before anything drew on it",
    (S.ACTIVE, S.EXHAUSTED): "its balance reached zero",
    (S.ACTIVE, S.EXPIRED): "its end date passed",
    (S.EXHAUSTED, S.ACTIVE): "a top-up (or an extension) restored a positive balance",
    (S.EXHAUSTED, S.EXPIRED): "its end date passed",
    (S.EXPIRED, S.ACTIVE): "an extension moved its end past now, with balance left",
    (S.EXPIRED, S.EXHAUSTED): "an extension moved its end past now, with no balance left",
}
# Granted states: the ones whose amount and period the clock and the balance govern.
GRANTED = frozenset({S.APPROVED, S.ACTIVE, S.EXHAUSTED, S.EXPIRED})


class ChangeKind(StrEnum):
    """What a history entry records."""

    MOVE = "move"  # a state transition
    TOPUP = "topup"  # more GPU-hours
    EXTEND = "extend"  # a later end


class Change(BaseModel):
    """One entry of an allocation's history."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    at: float = Field(description="When (seconds on the caller's clock).")
    who: Who = Field(description="Who made it (a token, a user, or 'clock').")
    kind: ChangeKind
    from_state: AllocState
    to_state: AllocState
    detail: Text = ""
    delta_gpu_hours: float = Field(default=0.0, description="GPU-hours added (top-up).")
    end_s: float | None = Field(default=None, description="The new end (extension).")


class Project(BaseModel):
    """A body of work that applies for GPU-hours: owned by a tenant, led by a PI."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, defer_build=True)

    name: Slug = Field(description="Short unique name (letters, digits, . _ -).")
    tenant: Slug = Field(description="The consortium or applicant organisation.")
    title: Annotated[str, StringConstraints(max_length=200, pattern=NO_NUL)] = ""
    pi: Annotated[str, StringConstraints(max_length=128, pattern=NO_NUL)] = Field(
        default="", description="Principal investigator."
    )
    members: tuple[Who, ...] = Field(default=(), description="Who may charge it (tokens, users).")
    start_s: float = Field(description="Start of the project's period.")
    end_s: float = Field(description="End of the project's period.")

    @model_validator(mode="after")
    def _period(self) -> Self:
        if not self.end_s > self.start_s:
            msg = "end_s: must be after start_s"
            raise ValueError(msg)
        return self


class Allocation(BaseModel):
    """A project's grant of GPU-hours of one class (or B200-equivalent hours) for a period.

    ``gpu_hours`` is what was asked while the request is open, and what is granted (top-ups
    included) once approved. ``gpu_class`` None: normalised B200-equivalent hours, which a
    job of any class with a known rate draws on (see :mod:`.rates`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, defer_build=True)

    id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_NUL)]
    project: Slug
    gpu_class: Slug | None = Field(default=None, description="None: B200-equivalent hours.")
    gpu_hours: float = Field(ge=0, le=MAX_GPU_HOURS, description="Asked, then granted.")
    start_s: float
    end_s: float
    state: AllocState = S.REQUESTED
    overdraft: bool = Field(
        default=False,
        description="Jobs may start past the balance (at low, preemptible priority).",
    )
    justification: Text = ""
    estimate_gpu_hours: float | None = Field(
        default=None, ge=0, le=MAX_GPU_HOURS, description="The planner's estimate, if any."
    )
    history: tuple[Change, ...] = ()

    @model_validator(mode="after")
    def _period(self) -> Self:
        if not self.end_s > self.start_s:
            msg = "end_s: must be after start_s"
            raise ValueError(msg)
        return self

    @property
    def granted_units(self) -> float:
        """The grant in unit-seconds (GPU-seconds of its class, or B200-equivalent)."""
        return self.gpu_hours * SECONDS_PER_HOUR

    def in_period(self, t: float) -> bool:
        """Whether ``t`` lies in [start, end)."""
        return self.start_s <= t < self.end_s

    def move(self, to: AllocState, *, who: str, at: float, detail: str = "") -> Allocation:
        """This allocation in state ``to``, the move recorded; raises if not in the table."""
        if (self.state, to) not in TRANSITIONS:
            msg = f"allocation {self.id}: cannot go from {self.state} to {to}"
            raise IllegalTransitionError(msg)
        change = Change(
            at=at,
            who=who,
            kind=ChangeKind.MOVE,
            from_state=self.state,
            to_state=to,
            detail=detail or TRANSITIONS[(self.state, to)],
        )
        return self.model_copy(update={"state": to, "history": (*self.history, change)})

    def topup(self, gpu_hours: float, *, who: str, at: float, detail: str = "") -> Allocation:
        """More GPU-hours on a granted, unexpired allocation (then :meth:`settle` it)."""
        if self.state not in (S.APPROVED, S.ACTIVE, S.EXHAUSTED):
            msg = f"allocation {self.id}: a top-up needs an approved, active or exhausted one"
            raise IllegalTransitionError(msg)
        total = self.gpu_hours + gpu_hours
        if not (math.isfinite(gpu_hours) and gpu_hours > 0 and total <= MAX_GPU_HOURS):
            msg = f"gpu_hours: a top-up must be positive and keep the total <= {MAX_GPU_HOURS:g}"
            raise ValueError(msg)
        change = Change(
            at=at,
            who=who,
            kind=ChangeKind.TOPUP,
            from_state=self.state,
            to_state=self.state,
            detail=detail,
            delta_gpu_hours=gpu_hours,
        )
        return self.model_copy(update={"gpu_hours": total, "history": (*self.history, change)})

    def extend(self, end_s: float, *, who: str, at: float, detail: str = "") -> Allocation:
        """A later end for a granted allocation (then :meth:`settle` it)."""
        if self.state not in GRANTED:
            msg = f"allocation {self.id}: only a granted allocation can be extended"
            raise IllegalTransitionError(msg)
        if not (math.isfinite(end_s) and end_s > self.end_s):
            msg = "end_s: an extension must move the end later"
            raise ValueError(msg)
        change = Change(
            at=at,
            who=who,
            kind=ChangeKind.EXTEND,
            from_state=self.state,
            to_state=self.state,
            detail=detail,
            end_s=end_s,
        )
        return self.model_copy(update={"end_s": end_s, "history": (*self.history, change)})

    def due(self, now: float, balance_units: float) -> AllocState | None:
        """The state the clock and the balance move a granted allocation to, or None."""
        expired = now >= self.end_s
        started = now >= self.start_s
        empty = balance_units <= 0
        return {
            S.APPROVED: S.EXPIRED if expired else (S.ACTIVE if started else None),
            S.ACTIVE: S.EXPIRED if expired else (S.EXHAUSTED if empty else None),
            S.EXHAUSTED: S.EXPIRED if expired else (None if empty else S.ACTIVE),
            S.EXPIRED: None if expired else (S.EXHAUSTED if empty else S.ACTIVE),
        }.get(self.state)

    def settle(self, now: float, balance_units: float) -> Allocation:
        """Apply the moves that time and the balance make (each recorded, by 'clock')."""
        current = self
        for _ in range(len(AllocState)):  # each move leaves a state; the chain is short
            target = current.due(now, balance_units)
            if target is None:
                return current
            current = current.move(target, who=CLOCK, at=now)
        return current
