"""Quota with Kueue's semantics: nominal quota, borrowing and lending within a cohort, and
quotas that nest (organisation -> consortium -> project, any depth).

Per tenant and GPU class:

- ``nominal``: GPUs guaranteed to the tenant (for a tenant with children that declares
  no quota of a class: the sum of its children's, so a grouping caps nothing extra);
- ``lendable`` = lending limit (default: all of nominal): the part of nominal that the
  tenant's peers (its siblings, or for a tree's top the other members of its cohort) may
  use while the tenant does not; ``guaranteed = nominal - lendable`` is never lent;
- ``borrowing_limit``: the most the tenant may use above its nominal (default: no limit;
  0 for a top tenant without a cohort, which has nobody to borrow from).

Jobs run in leaves. A node's usage is its subtree's; its *claim* is its usage or its
guaranteed part, whichever is larger (a leaf), or the sum of its children's claims or
its guaranteed part, whichever is larger (a parent): what it takes from its parent's
budget. The admission rules, at every level (Kueue's hierarchical cohorts, where a
parent's quota is what its subtree may use before it borrows):

- a leaf: ``used <= nominal + borrowing_limit``;
- a parent: the sum of its children's claims ``<= nominal + borrowing_limit`` (children
  borrow first from siblings, up to the parent's nominal, then through the parent);
- a cohort (of trees' tops): ``sum(claim - guaranteed) <= sum(lendable)`` over its
  members, which for one level is Kueue's flat cohort rule
  ``sum(max(0, used - guaranteed)) <= pool``.

With owner classes (:mod:`~aifactory.scheduler.owners`), a GPU class that several owners
paid for is several scheduling classes, one per owner's hardware, and a tenant borrows
from each lender's separately. Its ``borrowing_limit`` is nevertheless one figure for the
class it declared, as Kueue's ``borrowingLimit`` caps what a ClusterQueue borrows of a
resource in all: what a node *borrows* of a fleet class is the sum, over that class's
scheduling classes, of what it holds above its nominal there (a leaf: its usage; a
parent: its children's claims), and that sum stays within the limit. On a class that is
not split this is the per-class rule above; the per-class bound is implied by the sum.

Borrowed capacity is reclaimable: if a tenant within its nominal quota cannot be
admitted because others drew the shared capacity dry, the scheduler preempts borrowers
among the leaves it shares capacity with (:attr:`QuotaBook.reclaim_group`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aifactory.fleet.spec import Fleet, Tenant
from aifactory.scheduler.owners import SchedClasses

UNLIMITED: Final = 1 << 60


@dataclass(slots=True)
class QuotaCell:
    """One (tenant, class) quota and its live usage (a parent's: its subtree's)."""

    nominal: int
    lendable: int
    borrow_limit: int
    used: int = 0
    claims: int = 0  # a parent's: the sum of its children's claims
    reclaims: bool = True  # it evicts borrowers to take back its nominal (Quota.reclaim_lent)

    @property
    def guaranteed(self) -> int:
        """The part of nominal that is never lent."""
        return self.nominal - self.lendable

    @property
    def draw(self) -> int:
        """GPUs this tenant currently takes from what its peers lend."""
        return max(0, self.used - self.guaranteed)


def _effective(
    tenant: Tenant, classes: tuple[str, ...], sched: SchedClasses | None
) -> list[tuple[int, int, int, bool]]:
    """(nominal, lendable, borrowing limit, reclaims lent) per class of a tenant, where a
    parent that declares no quota of a class gets its children's sums (and no limits of
    its own). With owner classes (``sched``), a declared quota counts on the tenant's home
    hardware; on another owner's its nominal is 0 and only its borrowing limit applies."""
    if sched is not None and sched.split:
        names = [sched.fleet_classes[f] for f in sched.flavor]
    else:
        names = list(classes)
    declared = {q.gpu_class: q for q in tenant.quotas}
    out: list[tuple[int, int, int, bool]] = []
    below = [_effective(child, classes, sched) for child in tenant.children]
    for c, name in enumerate(names):
        q = declared.get(name)
        if q is not None:
            limit = UNLIMITED if q.borrowing_limit is None else q.borrowing_limit
            if sched is not None and not sched.home_class(tenant.name, c):
                out.append((0, 0, limit, q.reclaim_lent))
            else:
                out.append((q.nominal, q.lendable, limit, q.reclaim_lent))
        elif below:
            nominal = sum(row[c][0] for row in below)
            out.append((nominal, sum(row[c][1] for row in below), UNLIMITED, True))
        else:
            out.append((0, 0, 0, True))
    return out


class QuotaBook:
    """Quota cells for every tenant x class of the tenant tree, and cohort pools.

    Tenants and cohorts are dense indices (``index`` maps a tenant's name to its own), in
    the fleet's depth-first order: every admission test reads these tables, and a list
    read is cheaper than hashing a name into a dict on each of them. Only the top of each
    tree is a member of a cohort; a parent is the shared capacity of its children.
    """

    __slots__ = (
        "borrowing",
        "cells",
        "children",
        "cohort_draw",
        "cohort_members",
        "cohort_names",
        "cohort_of",
        "cohort_pool",
        "flavor",
        "floors",
        "grouped",
        "index",
        "limited",
        "parent_of",
        "reclaim_group",
        "split",
        "tenants",
        "top_of",
    )

    def __init__(
        self, fleet: Fleet, classes: tuple[str, ...], sched: SchedClasses | None = None
    ) -> None:
        self.tenants: list[str] = []
        self.index: dict[str, int] = {}
        self.cohort_names: list[str] = []
        self.cohort_of: list[int] = []  # cohort index of each tenant's tree, -1 for none
        self.parent_of: list[int] = []  # -1 for a tree's top
        self.top_of: list[int] = []  # the top of each tenant's tree
        self.children: list[list[int]] = []
        self.cells: list[list[QuotaCell]] = []
        self.cohort_pool: list[list[int]] = []
        self.cohort_draw: list[list[int]] = []
        self.cohort_members: list[list[int]] = []  # the tops of the trees in each cohort
        # Per scheduling class: its fleet class, and whether that class is split by owner
        # (only then does the sum over lenders differ from the per-class rule).
        self.flavor: list[int] = list(range(len(classes)))
        self.split: list[bool] = [False] * len(classes)
        n_flavors = len(classes)
        if sched is not None and sched.split:
            self.flavor = list(sched.flavor)
            self.split = [len(sched.of_flavor[f]) > 1 for f in sched.flavor]
            n_flavors = len(sched.fleet_classes)
        # Per tenant and fleet class: GPUs held above nominal, summed over the class's
        # split scheduling classes (kept for split classes only; see the module docstring).
        self.borrowing: list[list[int]] = []
        groupings: list[bool] = []  # a parent that declares no quota: its children's sums
        for tenant, parent, cohort in fleet.iter_tenants():
            t = len(self.tenants)
            self.tenants.append(tenant.name)
            self.index[tenant.name] = t
            self.children.append([])
            row = [
                QuotaCell(n, lend, limit, reclaims=keep)
                for n, lend, limit, keep in _effective(tenant, classes, sched)
            ]
            self.cells.append(row)
            self.borrowing.append([0] * n_flavors)
            groupings.append(bool(tenant.children) and not tenant.quotas)
            if parent is not None:
                p = self.index[parent.name]
                self.parent_of.append(p)
                self.top_of.append(self.top_of[p])
                self.children[p].append(t)
                self.cohort_of.append(self.cohort_of[p])
                continue
            self.parent_of.append(-1)
            self.top_of.append(t)
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
        # Claims start at the guaranteed parts, children before parents (depth-first order
        # puts every parent before its children); a tree whose claim exceeds its own
        # guaranteed part already draws on its cohort.
        for t in reversed(range(len(self.tenants))):
            kids = self.children[t]
            if kids:
                for c, cell in enumerate(self.cells[t]):
                    cell.claims = sum(self._claim(k, c) for k in kids)
        # A parent whose children's home hardware is not its own holds claims above its
        # nominal there from the start (their guaranteed parts): borrowing already.
        for t in range(len(self.tenants)):
            for c, cell in enumerate(self.cells[t]):
                if self.split[c]:
                    held = cell.claims if self.children[t] else cell.used
                    if held > cell.nominal:
                        self.borrowing[t][self.flavor[c]] += held - cell.nominal
        # Per tenant and class: split, with a borrowing limit on its path up (else no sum refuses).
        self.limited: list[list[bool]] = []
        for t, row in enumerate(self.cells):
            up = self.limited[self.parent_of[t]] if self.parent_of[t] >= 0 else [False] * len(row)
            self.limited.append(
                [self.split[c] and (x.borrow_limit < UNLIMITED or up[c]) for c, x in enumerate(row)]
            )
        # What each tenant claims while its subtree holds nothing: the guaranteed parts
        # below it, which no sibling may take (ceilings read them).
        self.floors = [
            [self._claim(t, c) for c in range(len(classes))] for t in range(len(self.tenants))
        ]
        for k, members in enumerate(self.cohort_members):
            for m in members:
                for c, cell in enumerate(self.cells[m]):
                    self.cohort_draw[k][c] += self._claim(m, c) - cell.guaranteed
        # A leaf whose every ancestor is a grouping is admitted by one rule, at its tree's
        # top (a grouping caps nothing, and claims exactly its children's claims: each is
        # at least its guaranteed part, whose sum is the grouping's): the top, else -1.
        self.grouped: list[int] = []
        for t in range(len(self.tenants)):
            p = self.parent_of[t]
            while p >= 0 and groupings[p]:
                p = self.parent_of[p]
            self.grouped.append(self.top_of[t] if p < 0 and self.parent_of[t] >= 0 else -1)
        # Per tenant, the leaves it shares capacity with (its tree's, and its cohort's
        # other trees'): where a reclaim may find borrowers.
        leaves_of: list[list[int]] = [[] for _ in self.tenants]
        for t in range(len(self.tenants)):
            if not self.children[t]:
                leaves_of[self.top_of[t]].append(t)
        self.reclaim_group: list[list[int]] = []
        for t in range(len(self.tenants)):
            top = self.top_of[t]
            k = self.cohort_of[t]
            tops = self.cohort_members[k] if k >= 0 else [top]
            group = [leaf for m in tops for leaf in leaves_of[m]]
            self.reclaim_group.append(group if len(group) > 1 else [])

    def is_leaf(self, t: int) -> bool:
        """Whether tenant ``t`` has no children (only leaves run jobs)."""
        return not self.children[t]

    def cohort_name(self, t: int) -> str | None:
        """The cohort of the tenant's tree, by name (None if it has none)."""
        k = self.cohort_of[t]
        return self.cohort_names[k] if k >= 0 else None

    def _claim(self, t: int, gpu_class: int) -> int:
        """What tenant ``t`` takes from its parent's (or cohort's) capacity now."""
        cell = self.cells[t][gpu_class]
        held = cell.claims if self.children[t] else cell.used
        guaranteed = cell.nominal - cell.lendable
        return held if held > guaranteed else guaranteed

    def ceiling(self, t: int, gpu_class: int) -> int:
        """Most GPUs of a class tenant ``t`` could ever hold at once (every other tenant
        holding nothing: then each claims its floor, the guaranteed parts below it)."""
        cell = self.cells[t][gpu_class]
        limit = cell.nominal + cell.borrow_limit
        inside = 0  # floors of the path's siblings so far: inside each level's claim
        n = t
        p = self.parent_of[n]
        while p >= 0:
            pc = self.cells[p][gpu_class]
            inside += sum(self.floors[s][gpu_class] for s in self.children[p] if s != n)
            limit = min(limit, pc.nominal + pc.borrow_limit - inside)
            n = p
            p = self.parent_of[n]
        k = self.cohort_of[n]
        top = self.cells[n][gpu_class]
        if k < 0:
            return max(0, min(limit, top.nominal - inside))
        others = sum(
            self.floors[m][gpu_class] - self.cells[m][gpu_class].guaranteed
            for m in self.cohort_members[k]
            if m != n
        )
        return max(0, min(limit, top.guaranteed + self.cohort_pool[k][gpu_class] - others - inside))

    def fits(self, t: int, gpu_class: int, gpus: int) -> bool:
        """Whether admitting ``gpus`` more keeps every quota rule."""
        cell = self.cells[t][gpu_class]
        used = cell.used + gpus
        if used > cell.nominal + cell.borrow_limit:
            return False
        if self.limited[t][gpu_class] and not self._borrowing(
            t, gpu_class, gpus, apply=False, leaf=True
        ):
            return False
        if self.parent_of[t] < 0:  # a tree's top (most tenants): one cell, one pool
            cohort = self.cohort_of[t]
            if cohort < 0:
                return used <= cell.nominal
            guaranteed = cell.nominal - cell.lendable
            if used <= guaranteed:
                return True  # within the part of nominal that is never lent: no draw
            extra = used - guaranteed - (cell.used - guaranteed if cell.used > guaranteed else 0)
            return (
                self.cohort_draw[cohort][gpu_class] + extra <= self.cohort_pool[cohort][gpu_class]
            )
        top = self.grouped[t]
        if top >= 0:  # only groupings above: the top's rule alone, on the leaf's claim
            guaranteed = cell.nominal - cell.lendable
            if used <= guaranteed:
                return True
            extra = used - guaranteed - (cell.used - guaranteed if cell.used > guaranteed else 0)
            cohort = self.cohort_of[top]
            if cohort < 0:
                top_cell = self.cells[top][gpu_class]
                return top_cell.claims + extra <= top_cell.nominal
            return (
                self.cohort_draw[cohort][gpu_class] + extra <= self.cohort_pool[cohort][gpu_class]
            )
        return self._excess(t, gpu_class, used, stop_unchanged=True) <= 0

    def _borrowing(self, t: int, gpu_class: int, gpus: int, *, apply: bool, leaf: bool) -> bool:
        """Whether ``gpus`` more of a split class for leaf ``t`` keep what every node on its
        path borrows of the fleet class, summed over the owners' scheduling classes, within
        its borrowing limit (the module's docstring; without ``leaf``, the levels above the
        leaf only). With ``apply``, record the change instead (before the claims change)."""
        f = self.flavor[gpu_class]
        n = t
        cell = self.cells[t][gpu_class]
        before = cell.used
        after = before + gpus
        while True:
            grow = (after - cell.nominal if after > cell.nominal else 0) - (
                before - cell.nominal if before > cell.nominal else 0
            )
            if apply:
                borrowing = self.borrowing[n]  # (spelled out: a typed add, see add())
                borrowing[f] = borrowing[f] + grow
            elif (
                (leaf or n != t)
                and grow > 0
                and cell.borrow_limit < UNLIMITED
                and self.borrowing[n][f] + grow > cell.borrow_limit
            ):
                return False
            g = cell.nominal - cell.lendable
            old_claim = before if before > g else g
            new_claim = after if after > g else g
            n = self.parent_of[n]
            if n < 0 or old_claim == new_claim:
                return True
            cell = self.cells[n][gpu_class]
            before = cell.claims
            after = before + new_claim - old_claim

    def _excess(self, t: int, gpu_class: int, used: int, *, stop_unchanged: bool) -> int:
        """The largest amount by which a rule above the leaf ``t`` would be broken if its
        usage were ``used`` (<= 0: none is). With ``stop_unchanged``, a level whose claim
        does not change ends the walk (the rules above it are as they are now)."""
        cell = self.cells[t][gpu_class]
        guaranteed = cell.nominal - cell.lendable
        old = self._claim(t, gpu_class)
        new = used if used > guaranteed else guaranteed
        worst = -UNLIMITED
        n = t
        p = self.parent_of[n]
        while p >= 0:
            if stop_unchanged and new == old:
                return worst
            pc = self.cells[p][gpu_class]
            claims = pc.claims - old + new
            worst = max(worst, claims - (pc.nominal + pc.borrow_limit))
            g = pc.nominal - pc.lendable
            old = pc.claims if pc.claims > g else g
            new = claims if claims > g else g
            n = p
            p = self.parent_of[n]
        k = self.cohort_of[n]
        if k < 0 or (stop_unchanged and new == old):
            return worst
        draw = self.cohort_draw[k][gpu_class] + new - old
        return max(worst, draw - self.cohort_pool[k][gpu_class])

    def fits_when_idle(self, t: int, gpu_class: int, gpus: int) -> bool:
        """Whether ``gpus`` would fit if the tenant held nothing of the class: the request
        is blocked only by the tenant's own running jobs (or by GPUs), not by others'."""
        cell = self.cells[t][gpu_class]
        if gpus > cell.nominal + cell.borrow_limit:
            return False
        # (the leaf's own sum over lenders is its own jobs' doing: only the levels above)
        if self.split[gpu_class] and not self._borrowing(
            t, gpu_class, gpus - cell.used, apply=False, leaf=False
        ):
            return False
        if self.parent_of[t] < 0:
            cohort = self.cohort_of[t]
            if cohort < 0:
                return gpus <= cell.nominal
            others = self.cohort_draw[cohort][gpu_class] - cell.draw
            return others + max(0, gpus - cell.guaranteed) <= self.cohort_pool[cohort][gpu_class]
        return self._excess(t, gpu_class, gpus, stop_unchanged=False) <= 0

    def shortfall(self, t: int, gpu_class: int, gpus: int) -> int:
        """GPUs that borrowers must give back for the tenant to get ``gpus`` within nominal
        (the largest excess over any level's rule: at least that many must be freed).

        Zero when the request fits; -1 when reclaim cannot help (the request goes beyond
        the tenant's nominal quota, so it would itself be borrowing).
        """
        cell = self.cells[t][gpu_class]
        cohort = self.cohort_of[t]
        top = self.parent_of[t] < 0
        if cell.used + gpus > cell.nominal or (top and cohort < 0):
            return 0 if self.fits(t, gpu_class, gpus) else -1
        if top:
            extra = max(0, cell.used + gpus - cell.guaranteed) - cell.draw
            return max(
                0,
                self.cohort_draw[cohort][gpu_class] + extra - self.cohort_pool[cohort][gpu_class],
            )
        return max(0, self._excess(t, gpu_class, cell.used + gpus, stop_unchanged=False))

    def borrowed(self, t: int, gpu_class: int) -> int:
        """GPUs used above nominal (borrowed from the tenant's peers)."""
        cell = self.cells[t][gpu_class]
        return max(0, cell.used - cell.nominal)

    def add(self, t: int, gpu_class: int, gpus: int) -> None:
        """Charge (positive) or refund (negative) usage of leaf ``t`` (and its ancestors)."""
        cell = self.cells[t][gpu_class]
        old = cell.used
        if self.split[gpu_class]:
            self._borrowing(t, gpu_class, gpus, apply=True, leaf=True)
        new = cell.used = old + gpus
        guaranteed = cell.nominal - cell.lendable
        p = self.parent_of[t]
        if p < 0:
            cohort = self.cohort_of[t]
            if cohort >= 0:
                # The change in draw on the pool: use above the guaranteed part (per-job
                # path, so plain comparisons rather than max()).
                after = new - guaranteed if new > guaranteed else 0
                before = old - guaranteed if old > guaranteed else 0
                if after != before:
                    # (x[i] = x[i] + d, not x[i] += d: compiled, an augmented item
                    # assignment is a generic PyNumber_InPlaceAdd; spelled out, a typed add)
                    draw = self.cohort_draw[cohort]
                    draw[gpu_class] = draw[gpu_class] + (after - before)
            return
        # A leaf in a tree: usage up the path, and each level's claim on the next.
        old_claim = old if old > guaranteed else guaranteed
        new_claim = new if new > guaranteed else guaranteed
        n = t
        while p >= 0:
            pc = self.cells[p][gpu_class]
            pc.used += gpus
            g = pc.nominal - pc.lendable
            before = pc.claims if pc.claims > g else g
            pc.claims += new_claim - old_claim
            after = pc.claims if pc.claims > g else g
            old_claim, new_claim = before, after
            n = p
            p = self.parent_of[n]
        cohort = self.cohort_of[n]
        if cohort >= 0 and new_claim != old_claim:
            draw = self.cohort_draw[cohort]
            draw[gpu_class] = draw[gpu_class] + (new_claim - old_claim)

    def lent(self, t: int, gpu_class: int) -> int:
        """GPUs of this tenant's nominal quota currently used by its peers (siblings, or
        for a tree's top the other trees of its cohort), attributed to lenders in
        proportion to their idle lendable GPUs."""
        p = self.parent_of[t]
        if p >= 0:
            peers = self.children[p]
        else:
            cohort = self.cohort_of[t]
            if cohort < 0:
                return 0
            peers = self.cohort_members[cohort]
        cell = self.cells[t][gpu_class]
        idle_lendable = max(0, min(cell.lendable, cell.nominal - cell.used))
        others_borrowing = sum(self.borrowed(m, gpu_class) for m in peers if m != t)
        if others_borrowing == 0:
            return 0
        idle_total = 0
        for m in peers:
            other = self.cells[m][gpu_class]
            idle_total += max(0, min(other.lendable, other.nominal - other.used))
        if idle_total == 0:
            return 0
        return min(idle_lendable, round(others_borrowing * idle_lendable / idle_total))
