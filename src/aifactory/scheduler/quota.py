"""Quota with Kueue's semantics: nominal quota, borrowing and lending within a cohort.

Per tenant and GPU class:

- ``nominal``: GPUs guaranteed to the tenant;
- ``lendable`` = lending limit (default: all of nominal): the part of nominal that the
  cohort may use while the tenant does not; ``guaranteed = nominal - lendable`` is
  never lent;
- ``borrowing_limit``: the most the tenant may use above its nominal (default: no limit).

A cohort's shared pool for a class is the sum of its members' lendable GPUs. A member's
use above its guaranteed part draws on the pool, so the admission test is
``sum(max(0, used_m - guaranteed_m)) <= pool`` plus the member's own ceiling
``used <= nominal + borrowing_limit``. A tenant without a cohort is held to its nominal.
Borrowed capacity is reclaimable: if a tenant within its nominal quota cannot be
admitted because others drew the pool dry, the scheduler preempts borrowers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aifactory.fleet.spec import Fleet

UNLIMITED: Final = 1 << 60


@dataclass(slots=True)
class QuotaCell:
    """One (tenant, class) quota and its live usage."""

    nominal: int
    lendable: int
    borrow_limit: int
    used: int = 0

    @property
    def guaranteed(self) -> int:
        """The part of nominal that is never lent."""
        return self.nominal - self.lendable

    @property
    def draw(self) -> int:
        """GPUs this tenant currently takes from its cohort's pool."""
        return max(0, self.used - self.guaranteed)


class QuotaBook:
    """Quota cells for every tenant x class, and cohort pools.

    Tenants and cohorts are dense indices (``index`` maps a tenant's name to its own):
    every admission test reads these tables, and a list read is cheaper than hashing a
    name into a dict on each of them.
    """

    __slots__ = (
        "cells",
        "cohort_draw",
        "cohort_members",
        "cohort_names",
        "cohort_of",
        "cohort_pool",
        "index",
        "tenants",
    )

    def __init__(self, fleet: Fleet, classes: tuple[str, ...]) -> None:
        self.tenants: list[str] = []
        self.index: dict[str, int] = {}
        self.cohort_names: list[str] = []
        self.cohort_of: list[int] = []  # cohort index of each tenant, -1 for none
        self.cells: list[list[QuotaCell]] = []
        self.cohort_pool: list[list[int]] = []
        self.cohort_draw: list[list[int]] = []
        self.cohort_members: list[list[int]] = []
        for tenant, _parent, cohort in fleet.iter_tenants():
            t = len(self.tenants)
            self.tenants.append(tenant.name)
            self.index[tenant.name] = t
            row = [QuotaCell(0, 0, 0) for _ in classes]
            for q in tenant.quotas:
                c = classes.index(q.gpu_class)
                limit = UNLIMITED if q.borrowing_limit is None else q.borrowing_limit
                row[c] = QuotaCell(q.nominal, q.lendable, limit)
            self.cells.append(row)
            if cohort is None:
                self.cohort_of.append(-1)
                for cell in row:  # no cohort: nothing to borrow from, nobody to lend to
                    cell.borrow_limit = 0
                continue
            if cohort not in self.cohort_names:
                self.cohort_names.append(cohort)
                self.cohort_pool.append([0] * len(classes))
                self.cohort_draw.append([0] * len(classes))
                self.cohort_members.append([])
            k = self.cohort_names.index(cohort)
            self.cohort_of.append(k)
            self.cohort_members[k].append(t)
            pool = self.cohort_pool[k]
            for c, cell in enumerate(row):
                pool[c] += cell.lendable

    def cohort_name(self, t: int) -> str | None:
        """The tenant's cohort, by name (None if it has none)."""
        k = self.cohort_of[t]
        return self.cohort_names[k] if k >= 0 else None

    def ceiling(self, t: int, gpu_class: int) -> int:
        """Most GPUs of a class tenant ``t`` could ever hold at once."""
        cell = self.cells[t][gpu_class]
        cohort = self.cohort_of[t]
        if cohort < 0:
            return cell.nominal
        return min(
            cell.nominal + cell.borrow_limit, cell.guaranteed + self.cohort_pool[cohort][gpu_class]
        )

    def fits(self, t: int, gpu_class: int, gpus: int) -> bool:
        """Whether admitting ``gpus`` more keeps every quota rule."""
        cell = self.cells[t][gpu_class]
        used = cell.used + gpus
        if used > cell.nominal + cell.borrow_limit:
            return False
        cohort = self.cohort_of[t]
        if cohort < 0:
            return used <= cell.nominal
        guaranteed = cell.nominal - cell.lendable
        if used <= guaranteed:
            return True  # within the part of nominal that is never lent: no draw on the pool
        extra = used - guaranteed - (cell.used - guaranteed if cell.used > guaranteed else 0)
        return self.cohort_draw[cohort][gpu_class] + extra <= self.cohort_pool[cohort][gpu_class]

    def fits_when_idle(self, t: int, gpu_class: int, gpus: int) -> bool:
        """Whether ``gpus`` would fit if the tenant held nothing of the class: the request
        is blocked only by the tenant's own running jobs (or by GPUs), not by others'."""
        cell = self.cells[t][gpu_class]
        if gpus > cell.nominal + cell.borrow_limit:
            return False
        cohort = self.cohort_of[t]
        if cohort < 0:
            return gpus <= cell.nominal
        others = self.cohort_draw[cohort][gpu_class] - cell.draw
        return others + max(0, gpus - cell.guaranteed) <= self.cohort_pool[cohort][gpu_class]

    def shortfall(self, t: int, gpu_class: int, gpus: int) -> int:
        """GPUs that borrowers must give back for the tenant to get ``gpus`` within nominal.

        Zero when the request fits; -1 when reclaim cannot help (the request goes beyond
        the tenant's nominal quota, so it would itself be borrowing).
        """
        cell = self.cells[t][gpu_class]
        cohort = self.cohort_of[t]
        if cell.used + gpus > cell.nominal or cohort < 0:
            return 0 if self.fits(t, gpu_class, gpus) else -1
        extra = max(0, cell.used + gpus - cell.guaranteed) - cell.draw
        return max(
            0, self.cohort_draw[cohort][gpu_class] + extra - self.cohort_pool[cohort][gpu_class]
        )

    def borrowed(self, t: int, gpu_class: int) -> int:
        """GPUs used above nominal (borrowed from the cohort)."""
        cell = self.cells[t][gpu_class]
        return max(0, cell.used - cell.nominal)

    def add(self, t: int, gpu_class: int, gpus: int) -> None:
        """Charge (positive) or refund (negative) usage."""
        cell = self.cells[t][gpu_class]
        old = cell.used
        new = cell.used = old + gpus
        cohort = self.cohort_of[t]
        if cohort >= 0:
            # The change in draw on the pool: use above the guaranteed part (per-job path,
            # so plain comparisons rather than max()).
            guaranteed = cell.nominal - cell.lendable
            after = new - guaranteed if new > guaranteed else 0
            before = old - guaranteed if old > guaranteed else 0
            if after != before:
                self.cohort_draw[cohort][gpu_class] += after - before

    def lent(self, t: int, gpu_class: int) -> int:
        """GPUs of this tenant's nominal quota currently used by others in its cohort."""
        cohort = self.cohort_of[t]
        if cohort < 0:
            return 0
        cell = self.cells[t][gpu_class]
        idle_lendable = max(0, min(cell.lendable, cell.nominal - cell.used))
        members = self.cohort_members[cohort]
        others_borrowing = sum(self.borrowed(m, gpu_class) for m in members if m != t)
        if others_borrowing == 0:
            return 0
        # Attribute borrowing to lenders in proportion to their idle lendable GPUs.
        idle_total = 0
        for m in members:
            other = self.cells[m][gpu_class]
            idle_total += max(0, min(other.lendable, other.nominal - other.used))
        if idle_total == 0:
            return 0
        return min(idle_lendable, round(others_borrowing * idle_lendable / idle_total))
