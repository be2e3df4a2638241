"""Preemption: which running jobs a waiting job may evict, and which of them it does.

Decides victims; starts and evicts nobody. Candidates come from a registry of rules keyed
by :class:`PreemptReason` (adding a reason is one :class:`CandidateRule` and one
``register`` line); every rule leaves out jobs that are not preemptible and jobs the
waiting job was itself evicted for (no preemption loops). :meth:`Preemption.search` then
chooses the victims that lose the least work (:class:`CostOrder`), first inside one pod
or site so that the freed GPUs can hold the gang, and proves a placement by removing
them for real from the cluster, quota and usage in a
:class:`~aifactory.scheduler.snapshot.WhatIf`: on success they stay detached for the
caller to evict (or to withdraw their starts); on failure, or an exception midway, every
one is attached again to exactly its GPUs, and nothing has changed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, final

from aifactory.heap import Keyed, RowHeap
from aifactory.scheduler.cluster import ClusterState
from aifactory.scheduler.placement import Level
from aifactory.scheduler.policies import Policy
from aifactory.scheduler.quota import QuotaBook
from aifactory.scheduler.running import Running
from aifactory.scheduler.seat import Seat
from aifactory.scheduler.snapshot import WhatIf
from aifactory.workload.progress import unsaved_progress

MAX_EXTRA_VICTIMS: Final = 8  # victims beyond the count-sufficient set tried for topology's sake
MAX_PRUNE: Final = 16  # victim sets up to this size are pruned of unnecessary victims
PACK: Final = 1 << 26  # GPU counts below this pack two to a float exactly (Victim)

# A pass's starts so far, by seat index (see the cycle's withdrawal of a start): a victim
# among them loses no work.
StartedThisPass = dict[int, tuple[float | None, str, str, str, float, float]]


class PreemptReason(StrEnum):
    """Why a running job may be evicted for a waiting one."""

    PRIORITY = "priority"  # a lower-priority job of the same tenant and class
    RANK = "rank"  # the policy's own rank (LAS): same priority, more service received
    RECLAIM = "reclaim"  # a borrower's job, when the tenant takes back its nominal quota


class CandidateRule:
    """One reason to evict: :meth:`add` appends to ``out`` the running jobs of the class
    that this reason lets ``job`` evict (``rank``: the policy's rank of ``job`` now). It
    reads the Preemption's state and changes nothing. (Rules are objects, not functions:
    compiled, a method of a native class is called directly, a function value through the
    interpreter.)"""

    def add(
        self, p: Preemption, seat: Seat, gpu_class: int, now: float, rank: int, out: list[Seat]
    ) -> None:
        """Append the candidates this rule allows."""
        raise NotImplementedError


RULES: dict[PreemptReason, CandidateRule] = {}


def register(reason: PreemptReason, rule: CandidateRule) -> None:
    """Add a candidate rule; a duplicate key is a programming error."""
    if reason in RULES:
        msg = f"preemption rule '{reason}' registered twice"
        raise ValueError(msg)
    RULES[reason] = rule


class PriorityRule(CandidateRule):
    """The tenant's own running jobs of the class with a lower priority."""

    def add(
        self, p: Preemption, seat: Seat, gpu_class: int, _now: float, _rank: int, out: list[Seat]
    ) -> None:
        """Append the candidates this rule allows."""
        prios = p.running.prios_tc(seat.tix, gpu_class)
        if not prios or min(prios) >= seat.priority:
            return
        barred = seat.job.preempted_for
        limit = p.limit
        for v in p.running.by_tc[seat.tix][gpu_class]:
            if v.preemptible and v.priority < seat.priority and not (barred and v.job.id in barred):
                out.append(v)
                if len(out) == limit:  # (never with limit 0: out is not empty here)
                    return


class RankRule(CandidateRule):
    """With a preemptive policy, the tenant's own running jobs of the class with the same
    priority that the policy ranks below the waiting job."""

    def add(
        self, p: Preemption, seat: Seat, gpu_class: int, now: float, rank: int, out: list[Seat]
    ) -> None:
        """Append the candidates this rule allows."""
        if not p.preemptive:
            return
        barred = seat.job.preempted_for
        policy = p.policy
        limit = p.limit
        for v in p.running.by_tc[seat.tix][gpu_class]:
            if (
                v.preemptible
                and v.priority == seat.priority
                and not (barred and v.job.id in barred)
                and policy.rank(v.job, now) > rank
            ):
                out.append(v)
                if len(out) == limit:
                    return


class ReclaimRule(CandidateRule):
    """When the job fits in its tenant's nominal quota: the running jobs of the class of
    every leaf it shares capacity with (its siblings, its tree's, its cohort's) that
    borrows in it. With owner classes (:mod:`~aifactory.scheduler.owners`) a class is one
    owner's hardware, so a reclaim frees exactly the lender's GPUs. A tenant whose quota
    says ``reclaim_lent: false`` reclaims nothing."""

    def add(
        self, p: Preemption, seat: Seat, gpu_class: int, _now: float, _rank: int, out: list[Seat]
    ) -> None:
        """Append the candidates this rule allows."""
        t = seat.tix
        quota = p.quota
        cell = quota.cells[t][gpu_class]
        group = quota.reclaim_group[t]
        if not group or cell.used + seat.gpus > cell.nominal or not cell.reclaims:
            return  # (a lender that does not reclaim waits for its borrowers' jobs to end)
        barred = seat.job.preempted_for
        limit = p.limit
        for member in group:
            if member == t or quota.borrowed(member, gpu_class) <= 0:
                continue
            for v in p.running.by_tc[member][gpu_class]:
                if v.preemptible and not (barred and v.job.id in barred):
                    out.append(v)
                    if len(out) == limit:
                        return


register(PreemptReason.PRIORITY, PriorityRule())
register(PreemptReason.RANK, RankRule())
register(PreemptReason.RECLAIM, ReclaimRule())


def victim_size_key(gpus: int, need: int) -> float:
    """A candidate's (GPUs beyond the need, then the bigger victim) packed into one exact
    float: no tuple per candidate, and reclaims list thousands. Exact while a job holds
    fewer than ``PACK`` GPUs, which the scheduler checks of the whole fleet."""
    over = gpus - need if gpus > need else 0
    return float(over * PACK + (PACK - gpus))


@final
class Victim(Keyed):
    """A preemption candidate with its eviction cost: least work lost first, then the
    fewest GPUs beyond what is still needed (an exact fit evicts nobody more than
    necessary), then the bigger victim, then the older job (a total order)."""

    __slots__ = ("seat",)

    def __init__(self, seat: Seat, lost: float, size_key: float) -> None:
        super().__init__(lost, size_key, (), seat.index)
        self.seat = seat


class CostOrder:
    """Preemption candidates in cost order, sorted only as far as they are read.

    A reclaim on a busy fleet has thousands of candidates (every running job of the
    borrowing tenants in the class), and the victim searches read the cheapest few. The
    candidates' costs are rows of a :class:`~aifactory.heap.RowHeap` (lost work, size
    key, seat index; the candidate's position), heapified (linear) and popped on demand,
    and a :class:`Victim` is made only for a candidate that is read. The order is the
    sorted order (a strict total one).
    """

    __slots__ = ("_cands", "_read", "_rows", "size")

    def __init__(self, cands: list[Seat], rows: RowHeap) -> None:
        rows.heapify()
        self._cands = cands
        self._rows = rows
        self._read: list[Victim] = []
        self.size = len(rows)

    def at(self, i: int) -> Victim:
        """The ``i``-th cheapest candidate (``0 <= i < size``)."""
        read = self._read
        rows = self._rows
        while len(read) <= i:
            read.append(Victim(self._cands[rows.ref[0]], rows.k0[0], rows.k1[0]))
            rows.pop()
        return read[i]


def _lost_first(v: Victim) -> float:
    """Sort key: most work lost first (victims that prove unnecessary are dropped so)."""
    return -v.k0


class Preemption:
    """Candidates and victim choice over the running jobs, quota and cluster."""

    def __init__(
        self,
        running: Running,
        policy: Policy,
        checkpoint_write_s: float,
        pod_capacity: list[int],
        site_capacity: list[int],
        preempt_grace_s: float = 0.0,
        limit: int = 0,
    ) -> None:
        self.running = running
        self.cs: ClusterState = running.cs
        self.quota: QuotaBook = running.quota
        self.policy = policy
        self.preemptive = policy.preemptive  # (a plain attribute: read per candidate)
        self.checkpoint_write_s = checkpoint_write_s
        self.preempt_grace_s = preempt_grace_s  # for jobs that do not say (Job.preempt_grace_s)
        self.pod_capacity = pod_capacity  # largest pod's GPUs, per class
        self.site_capacity = site_capacity  # largest site's GPUs, per class
        self.rules = list(RULES.values())
        # The scan limit SchedulerConfig.preempt_candidates: the most running jobs one
        # search may consider (0: every one the rules allow).
        self.limit = limit
        self.searches = 0  # searches that had candidates (counts, read by tests and benches)
        self.priced = 0  # candidates those searches priced
        self.most_priced = 0  # the most candidates one search priced

    def may_preempt_behind_head(self, seat: Seat) -> bool:
        """Whether a job behind its tenant's head may preempt: only for priority (it
        outranks running jobs) or the policy's rank, as a head that could not start may
        not be overtaken by a same-priority job taking GPUs back from others."""
        if self.preemptive:
            return True
        prios = self.running.prios_t(seat.tix)
        return bool(prios) and min(prios) < seat.priority

    def candidates(self, seat: Seat, gpu_class: int, now: float) -> list[Seat]:
        """Every running job of the class that some rule lets ``job`` evict (no job twice:
        the rules' sets are disjoint; in no particular order, as :class:`CostOrder` orders
        them totally), or, under the scan limit, the first ``limit`` of them that the rules
        meet, in rule order and each tenant's running jobs in the order they are indexed:
        a search then costs at most ``limit`` candidates, whatever runs."""
        rank = self.policy.rank(seat.job, now) if self.preemptive else 0
        out: list[Seat] = []
        limit = self.limit
        for rule in self.rules:
            rule.add(self, seat, gpu_class, now, rank, out)
            if limit and len(out) >= limit:
                break
        return out

    def lost_if_evicted(self, seat: Seat, now: float) -> float:
        """GPU-seconds of work ``job`` would lose if evicted now (unsaved progress and the
        restart overhead it paid; with a grace, the grace, and no progress if the grace
        is long enough to save it: :mod:`~aifactory.scheduler.grace`)."""
        grace = seat.job.preempt_grace_s
        if grace is None:
            grace = self.preempt_grace_s
        if grace > 0 and grace >= self.checkpoint_write_s:
            return (grace + seat.overhead_s) * seat.gpus
        unsaved = unsaved_progress(
            now - seat.run_start_s, seat.overhead_s, seat.checkpoint_s, self.checkpoint_write_s
        )
        return (unsaved + seat.overhead_s + grace) * seat.gpus

    def startable(self, seat: Seat, gpu_class: int) -> tuple[Level, list[tuple[int, int]]] | None:
        """A placement for ``job`` in the class now, if its quota allows one."""
        if not self.quota.fits(seat.tix, gpu_class, seat.gpus):
            return None
        return self.running.power.place(gpu_class, seat.gpus, cross_site=seat.cross, site=seat.site)

    def search(
        self, seat: Seat, gpu_class: int, now: float, this_pass: StartedThisPass
    ) -> list[Victim] | None:
        """The victims whose eviction lets ``job`` start in the class now, or None.

        On success the victims are detached (their GPUs, quota and usage free) and
        ``job`` fits: the caller evicts them, or withdraws the starts of those in
        ``this_pass``, and starts ``job``. On None nothing changed.
        """
        cands = self.candidates(seat, gpu_class, now)
        if not cands:
            return None
        self.searches += 1
        self.priced += len(cands)
        self.most_priced = max(self.most_priced, len(cands))
        # Necessary conditions, checked before touching any state: enough GPUs could be
        # freed at all, and enough of the right tenants' usage to satisfy the quota.
        gpus = seat.gpus
        total = 0
        own = 0
        for cand in cands:
            total += cand.gpus
            if cand.tix == seat.tix:
                own += cand.gpus
        free = self.cs.class_free[gpu_class]
        if free + total < gpus:
            return None
        quota = self.quota
        if not quota.fits(seat.tix, gpu_class, gpus):
            shortfall = quota.shortfall(seat.tix, gpu_class, gpus)
            cell = quota.cells[seat.tix][gpu_class]
            over_own = cell.used + gpus - (cell.nominal + cell.borrow_limit)
            if over_own > own or (shortfall > 0 and shortfall > total):
                return None
        need = gpus - free
        rows = RowHeap()
        for i, c in enumerate(cands):
            lost = 0.0 if this_pass and c.index in this_pass else self.lost_if_evicted(c, now)
            rows.extend(lost, victim_size_key(c.gpus, need), c.index, i)
        order = CostOrder(cands, rows)
        # Phase A, counts only: the cheapest victims inside one pod (or one site, for
        # gangs bigger than a pod) that free enough GPUs there, then enough quota.
        prefix = self._victims_in_scope(seat, gpu_class, order)
        if prefix is None:
            prefix = self._victims_anywhere(seat, gpu_class, order)
        if prefix is None:
            return None
        # Phase B: free that prefix for real and search a placement; topology may need a
        # few more victims (at most MAX_EXTRA_VICTIMS, the cheapest not chosen yet), after
        # which the attempt is given up.
        with WhatIf(self.running, now) as what_if:
            chosen = list(prefix)
            for v in chosen:
                what_if.remove(v.seat)
            found = self.running.power.place(gpu_class, gpus, cross_site=seat.cross, site=seat.site)
            chosen_ids = {v.seq for v in chosen}
            i = 0
            extra = 0
            while found is None and extra < MAX_EXTRA_VICTIMS and i < order.size:
                v = order.at(i)
                i += 1
                if v.seq in chosen_ids:
                    continue
                extra += 1
                what_if.remove(v.seat)
                chosen.append(v)
                found = self.running.power.place(
                    gpu_class, gpus, cross_site=seat.cross, site=seat.site
                )
            if found is None:
                return None  # (every removal undone as the block ends)
            # Drop victims that turned out unnecessary, most work lost first (for small
            # sets: each check is a placement search).
            prunable = chosen if len(chosen) <= MAX_PRUNE else []
            for v in sorted(prunable, key=_lost_first):
                what_if.put_back(v.seat)
                if self.startable(seat, gpu_class) is not None:
                    chosen.remove(v)
                else:
                    what_if.remove(v.seat)
            what_if.keep()
            return chosen

    def _victims_anywhere(
        self, seat: Seat, gpu_class: int, order: CostOrder
    ) -> list[Victim] | None:
        """Shortest prefix of the cost order freeing enough GPUs of the class and quota."""
        tenant, gpus, quota = seat.tix, seat.gpus, self.quota
        need = gpus - self.cs.class_free[gpu_class]
        prefix: list[Victim] = []
        freed = 0
        for i in range(order.size):
            if freed >= need and quota.fits(tenant, gpu_class, gpus):
                break
            v = order.at(i)
            quota.add(v.seat.tix, gpu_class, -v.seat.gpus)
            prefix.append(v)
            freed += v.seat.gpus
        enough = freed >= need and quota.fits(tenant, gpu_class, gpus)
        for v in prefix:
            quota.add(v.seat.tix, gpu_class, v.seat.gpus)
        return prefix if enough else None

    def _victims_in_scope(
        self, seat: Seat, gpu_class: int, order: CostOrder
    ) -> list[Victim] | None:
        """Cheapest victim set that frees the gang inside one pod (one site if bigger).

        Freeing the globally cheapest victims scatters the GPUs over the fleet, where a
        gang often still cannot be placed; the pod (site) whose cheapest victims free
        enough GPUs there at the least lost work is chosen instead. Victims that only
        help the quota (the tenant's own elsewhere) are added after, cheapest first.
        """
        cs = self.cs
        gpus = seat.gpus
        if gpus <= self.pod_capacity[gpu_class]:
            free_of = cs.cpod_free[gpu_class]
            by_site = False
        elif gpus <= self.site_capacity[gpu_class]:
            free_of = cs.csite_free[gpu_class]
            by_site = True
        else:
            return None
        # Walk victims in cost order, adding each one's GPUs to the scopes it frees.
        got: dict[int, int] = {}
        picked: dict[int, list[Victim]] = {}
        cost: dict[int, float] = {}
        best: tuple[float, int, int] | None = None  # (lost work, victims, scope)
        for i in range(order.size):
            v = order.at(i)
            lost = v.k0
            if best is not None and lost > best[0]:
                break  # costs only grow from here
            touched: dict[int, int] = {}
            for node, mask in v.seat.job.placement:
                sc = cs.dom_pod[cs.node_dom[node]]
                if by_site:
                    sc = cs.pod_site[sc]
                touched[sc] = touched.get(sc, 0) + mask.bit_count()
            for sc, n in touched.items():
                if sc in got and got[sc] + free_of.get(sc, 0) >= gpus:
                    continue  # already enough there
                got[sc] = got.get(sc, 0) + n
                picked.setdefault(sc, []).append(v)
                cost[sc] = cost.get(sc, 0.0) + lost
                if got[sc] + free_of.get(sc, 0) >= gpus:
                    cand = (cost[sc], len(picked[sc]), sc)
                    if best is None or cand < best:
                        best = cand
        if best is None:
            return None
        chosen = picked[best[2]]
        # Quota: the tenant may also need its own (or borrowers') usage back.
        quota, tenant = self.quota, seat.tix
        for v in chosen:
            quota.add(v.seat.tix, gpu_class, -v.seat.gpus)
        ok = quota.fits(tenant, gpu_class, gpus)
        if not ok:
            inside = {v.seq for v in chosen}
            chosen = list(chosen)
            for i in range(order.size):
                v = order.at(i)
                if v.seq in inside:
                    continue
                quota.add(v.seat.tix, gpu_class, -v.seat.gpus)
                chosen.append(v)
                if quota.fits(tenant, gpu_class, gpus):
                    ok = True
                    break
        for v in chosen:
            quota.add(v.seat.tix, gpu_class, v.seat.gpus)
        return chosen if ok else None
