"""The ledger: which allocation a job's run is charged to, and whether a new job is covered.

Charging follows Slurm's accounting: a run interval is charged whole, from its start to its
end, whatever ended it (completion, failure, preemption, cancel), so time lost to
preemption and failures is charged too. A charge is never refused: a running job is never
stopped for its balance. Its GPU-seconds are drawn segment by segment of the interval,
each from the allocations of its project and class whose period holds that segment
(earliest end first); what no balance holds, or what falls outside every period, is the
charge's **overrun**, recorded on the allocation the segment was drawn from (its balance
goes below zero by exactly that) or, when no allocation held the segment, unattributed.
A job never draws on an allocation outside that allocation's period.

Charges are keyed (the service uses ``job:attempt``): charging a key twice returns the
first charge and changes nothing, so a replay after a restart cannot double a charge.
A ledger made with ``keep_charges=False`` keeps no charge, only their count and each
project's unallocated GPU-seconds (:meth:`Ledger.tally`): a caller whose keys cannot repeat
(the twin's ``job:run``) and that makes millions of charges needs no record of each.

Admission (:meth:`Ledger.cover`) asks whether the active allocations' balances at ``now``
hold a job's whole request (GPUs x time limit): covered, covered only by an allocation
that allows overdraft, or denied with the reason.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from aifactory.allocations.model import GRANTED, SECONDS_PER_HOUR, Allocation, AllocState


class Cover(StrEnum):
    """The answer to "may this job start on its project's allocations?"."""

    COVERED = "covered"
    OVERDRAFT = "overdraft"  # only past the balance, which the allocation allows
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class Draw:
    """GPU-seconds of one charge taken from one allocation (``units`` in its own unit)."""

    allocation: str
    gpu_seconds: float
    units: float


@dataclass(frozen=True, slots=True)
class Charge:
    """One run interval, charged: its draws, and the overrun no balance held."""

    key: str
    project: str
    gpu_class: str
    gpu_seconds: float
    start_s: float
    end_s: float
    draws: tuple[Draw, ...]
    overrun_gpu_seconds: float  # all that no balance held (attributed or not)
    overrun_allocation: str | None  # the allocation the first overrun was recorded on
    unallocated_gpu_seconds: float  # the part of the overrun no allocation's period held

    # Invariant: sum of draws' gpu_seconds + unallocated_gpu_seconds == gpu_seconds.


@dataclass(slots=True)
class _Account:
    alloc: Allocation
    used: float = 0.0  # units drawn within the balance
    overrun: float = 0.0  # units drawn past it (the balance is granted - used - overrun)


@dataclass(slots=True)
class Ledger:
    """Balances of a set of allocations, and the charges made to them (pure; no clock).

    ``rates``: B200-equivalents per GPU of each class (see :mod:`.rates`); a class without
    a rate can draw only on allocations of its own class.
    """

    allocations: Iterable[Allocation]
    rates: Mapping[str, float] = field(default_factory=dict)
    keep_charges: bool = True  # False: keys must not repeat (nothing remembers them)
    _accounts: dict[str, _Account] = field(init=False, default_factory=dict)
    _charges: dict[str, Charge] = field(init=False, default_factory=dict)
    _count: int = field(init=False, default=0)
    _unallocated: dict[str, float] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        for alloc in self.allocations:
            if alloc.id in self._accounts:
                msg = f"allocation {alloc.id}: given twice"
                raise ValueError(msg)
            self._accounts[alloc.id] = _Account(alloc)
        self.allocations = ()

    # -- reading -----------------------------------------------------------------------

    def allocation(self, alloc_id: str) -> Allocation:
        """The allocation as last given (see :meth:`replace`)."""
        return self._accounts[alloc_id].alloc

    def balance(self, alloc_id: str) -> float:
        """Granted minus drawn, in the allocation's unit-seconds (< 0 only by overrun)."""
        acc = self._accounts[alloc_id]
        return acc.alloc.granted_units - acc.used - acc.overrun

    def used(self, alloc_id: str) -> float:
        """Unit-seconds drawn, overrun included."""
        acc = self._accounts[alloc_id]
        return acc.used + acc.overrun

    def overrun(self, alloc_id: str) -> float:
        """Unit-seconds drawn past the balance."""
        return self._accounts[alloc_id].overrun

    def charges(self) -> list[Charge]:
        """Every charge, in the order made (none kept with ``keep_charges=False``)."""
        return list(self._charges.values())

    def tally(self) -> tuple[int, dict[str, float]]:
        """How many charges were made, and per project the GPU-seconds of them no
        allocation's period held (added in the order the charges were made)."""
        return self._count, dict(self._unallocated)

    def state(self, alloc_id: str, now: float) -> AllocState:
        """The allocation's state at ``now`` (the clock's and the balance's moves applied)."""
        acc = self._accounts[alloc_id]
        return acc.alloc.settle(now, self.balance(alloc_id)).state

    def copy(self) -> Ledger:
        """An independent ledger with the same allocations, balances and charges (what-if
        charges on the copy leave this one as it is)."""
        twin = Ledger((), self.rates, self.keep_charges)
        twin._accounts = {
            k: _Account(a.alloc, a.used, a.overrun) for k, a in self._accounts.items()
        }
        twin._charges = dict(self._charges)
        twin._count = self._count
        twin._unallocated = dict(self._unallocated)
        return twin

    def replace(self, alloc: Allocation) -> None:
        """Put a changed allocation (topped up, extended, approved) in place of its old self;
        what was drawn from it stays."""
        acc = self._accounts.get(alloc.id)
        if acc is None:
            self._accounts[alloc.id] = _Account(alloc)
        else:
            acc.alloc = alloc

    # -- admission and charging ----------------------------------------------------------

    def _factor(self, alloc: Allocation, gpu_class: str) -> float | None:
        """Units per GPU-second of ``gpu_class`` on ``alloc``; None: it cannot draw there."""
        if alloc.gpu_class is not None:
            return 1.0 if alloc.gpu_class == gpu_class else None
        return self.rates.get(gpu_class)

    def _eligible(self, project: str, gpu_class: str) -> list[tuple[_Account, float]]:
        """Granted allocations of ``project`` that ``gpu_class`` may draw on, with the
        factor, earliest end first (use what expires first)."""
        found = []
        for acc in self._accounts.values():
            a = acc.alloc
            if a.project != project or a.state not in GRANTED:
                continue
            factor = self._factor(a, gpu_class)
            if factor is not None and factor > 0:
                found.append((acc, factor))
        found.sort(key=lambda p: (p[0].alloc.end_s, p[0].alloc.id))
        return found

    def cover(self, project: str, gpu_class: str, gpu_seconds: float, now: float) -> Cover:
        """Whether the allocations active at ``now`` hold ``gpu_seconds`` of ``gpu_class``."""
        return self.explain(project, gpu_class, gpu_seconds, now)[0]

    def covers(self, project: str, gpu_class: str, gpu_seconds: float, now: float) -> bool:
        """Whether a job needing ``gpu_seconds`` may start now (covered, or by overdraft)."""
        return self.cover(project, gpu_class, gpu_seconds, now) is not Cover.DENIED

    def explain(
        self, project: str, gpu_class: str, gpu_seconds: float, now: float
    ) -> tuple[Cover, str]:
        """:meth:`cover` with the reason, in words a tenant can act on."""
        active = [
            (acc, f) for acc, f in self._eligible(project, gpu_class) if acc.alloc.in_period(now)
        ]
        if not active:
            return Cover.DENIED, f"project {project}: no active allocation for class {gpu_class}"
        left = sum(max(0.0, self.balance(acc.alloc.id)) / f for acc, f in active)
        if left >= gpu_seconds:
            return Cover.COVERED, "covered"
        need_h, left_h = gpu_seconds / SECONDS_PER_HOUR, left / SECONDS_PER_HOUR
        why = f"project {project}: needs {need_h:.6g} GPU-h of {gpu_class}, {left_h:.6g} left"
        if any(acc.alloc.overdraft for acc, _ in active):
            return Cover.OVERDRAFT, why + " (overdraft allowed)"
        return Cover.DENIED, why

    def charge(
        self,
        project: str,
        gpu_class: str,
        gpu_seconds: float,
        start_s: float,
        end_s: float,
        *,
        key: str | None = None,
    ) -> Charge:
        """Charge one run interval (never refused; see the module docstring)."""
        key = key if key is not None else f"#{self._count}"
        done = self._charges.get(key)
        if done is not None:
            return done
        if not (gpu_seconds >= 0 and end_s >= start_s):
            msg = f"charge {key}: needs gpu_seconds >= 0 and end_s >= start_s"
            raise ValueError(msg)
        eligible = self._eligible(project, gpu_class)
        cuts = {start_s, end_s}
        for acc, _ in eligible:
            cuts.update(t for t in (acc.alloc.start_s, acc.alloc.end_s) if start_s < t < end_s)
        points = sorted(cuts)
        span = end_s - start_s
        draws: dict[str, list[float]] = {}
        overrun = unallocated = 0.0
        overrun_on: str | None = None
        segments = list(itertools.pairwise(points)) if span > 0 else [(start_s, end_s)]
        for lo, hi in segments:
            need = gpu_seconds * ((hi - lo) / span) if span > 0 else gpu_seconds
            holders = [(acc, f) for acc, f in eligible if acc.alloc.start_s <= lo < acc.alloc.end_s]
            for acc, f in holders:
                if need <= 0:
                    break
                take = min(need, max(0.0, self.balance(acc.alloc.id)) / f)
                if take > 0:
                    acc.used += take * f
                    got = draws.setdefault(acc.alloc.id, [0.0, 0.0])
                    got[0] += take
                    got[1] += take * f
                    need -= take
            if need > 0:
                overrun += need
                if holders:
                    acc, f = holders[0]
                    acc.overrun += need * f
                    got = draws.setdefault(acc.alloc.id, [0.0, 0.0])
                    got[0] += need
                    got[1] += need * f
                    overrun_on = overrun_on or acc.alloc.id
                else:
                    unallocated += need
        done = Charge(
            key=key,
            project=project,
            gpu_class=gpu_class,
            gpu_seconds=gpu_seconds,
            start_s=start_s,
            end_s=end_s,
            draws=tuple(Draw(a, s, u) for a, (s, u) in draws.items()),
            overrun_gpu_seconds=overrun,
            overrun_allocation=overrun_on,
            unallocated_gpu_seconds=unallocated,
        )
        if self.keep_charges:
            self._charges[key] = done
        self._count += 1
        self._unallocated[project] = self._unallocated.get(project, 0.0) + unallocated
        return done
