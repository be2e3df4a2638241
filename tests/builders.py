"""Test builders: tiny fleets, jobs, a checked simulation, and invariant checks.

Fleets are built as plain dicts and validated by ``parse_fleet`` (the same path users'
YAML takes), so a builder cannot produce a fleet the loader would refuse. Sizes follow
the catalogue: an ``h100`` HGX domain is one node of 8 GPUs; a ``gb200`` NVL72 domain
is 18 nodes x 4 GPUs (tests may shrink it with ``nodes_per_domain``).

``checked_simulation`` runs the real :class:`Simulation` but swaps its kernel for one
that checks every invariant of :func:`check_invariants` before each event is taken,
i.e. after every event has been fully processed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aifactory.fleet import Fleet, Topology, compile_topology, parse_fleet
from aifactory.scheduler.config import SchedulerConfig
from aifactory.scheduler.scheduler import Scheduler
from aifactory.twin.failures import FailureInjector
from aifactory.twin.kernel import Event, Kernel
from aifactory.twin.simulator import SimResult, Simulation, TwinConfig
from aifactory.workload.job import Job, JobState

UNLIMITED = 1 << 60


# --------------------------------------------------------------------------- fleets
def hgx(domains: int, owner: str = "a", model: str = "h100", **extra: Any) -> dict[str, Any]:
    """A group of ``domains`` HGX servers (one 8-GPU node = one NVLink domain each)."""
    return {"model": model, "domains": domains, "owner": owner, **extra}


def nvl(
    domains: int, owner: str = "a", nodes_per_domain: int | None = None, **extra: Any
) -> dict[str, Any]:
    """A group of GB200 NVL72 racks (18 trays x 4 GPUs unless shrunk)."""
    group: dict[str, Any] = {"model": "gb200", "domains": domains, "owner": owner, **extra}
    if nodes_per_domain is not None:
        group["nodes_per_domain"] = nodes_per_domain
    return group


def tenant(
    name: str,
    quotas: dict[str, int | dict[str, Any]] | None = None,
    *,
    cohort: str | None = None,
) -> dict[str, Any]:
    """A tenant; ``quotas`` maps GPU class to a nominal, or to a full quota dict."""
    qs: list[dict[str, Any]] = []
    for cls, q in (quotas or {}).items():
        if isinstance(q, int):
            qs.append({"gpu_class": cls, "nominal": q})
        else:
            qs.append({"gpu_class": cls, **q})
    out: dict[str, Any] = {"name": name, "quotas": qs}
    if cohort is not None:
        out["cohort"] = cohort
    return out


def make_fleet(
    sites: Sequence[Sequence[Sequence[dict[str, Any]]]],
    tenants: Sequence[dict[str, Any]],
    *,
    name: str = "tiny",
    default_tenant: str | None = None,
    power_mw: Sequence[float] | None = None,
) -> Fleet:
    """``sites`` is site -> pod -> groups (see :func:`hgx`, :func:`nvl`); ``power_mw``: each
    site's power capacity (default 10 MW, which no tiny fleet's peak reaches)."""
    raw: dict[str, Any] = {
        "name": name,
        "sites": [
            {
                "name": f"s{si}",
                "region": f"region-{si}",
                "power_mw": 10.0 if power_mw is None else power_mw[si],
                "pue": 1.2,
                "pods": [
                    {"name": f"p{pi}", "groups": list(groups)} for pi, groups in enumerate(pods)
                ],
            }
            for si, pods in enumerate(sites)
        ],
        "tenants": list(tenants),
    }
    if default_tenant is not None:
        raw["default_tenant"] = default_tenant
    return parse_fleet(raw)


def hgx_topo(nodes: int = 2, tenants: Sequence[dict[str, Any]] | None = None) -> Topology:
    """One site, one pod, ``nodes`` HGX H100 servers; default: tenant 'a' owns all of it."""
    tenants = tenants or [tenant("a", {"h100": 8 * nodes})]
    return compile_topology(make_fleet([[[hgx(nodes)]]], tenants))


# --------------------------------------------------------------------------- jobs
def make_job(
    id: str,  # noqa: A002 (mirrors Job's own parameter name)
    tenant: str = "a",
    submit: float = 0.0,
    gpus: int = 8,
    run: float = 100.0,
    **kw: Any,
) -> Job:
    """A job with short positional defaults: tenant 'a', 8 GPUs, 100 s."""
    return Job(id, tenant, submit, gpus, run, **kw)


# --------------------------------------------------------------------------- invariants
def check_invariants(sched: Scheduler, down: dict[int, int] | None = None) -> None:
    """Every invariant of the issue's §10 that holds between events.

    - the free-GPU indices agree with a recount (``ClusterState.check``);
    - no GPU is held by two running jobs (or preempted ones still saving in their grace),
      and free/used/down masks partition each node;
    - free + used + down = capacity;
    - gangs are all-or-nothing: a running job holds exactly ``job.gpus`` GPUs, of one
      class, inside one site unless it allows crossing sites;
    - quota, recomputed from the running jobs and the fleet spec (not the quota book):
      a tenant never uses more than nominal + borrowing limit (nominal alone without a
      cohort), and in each cohort what members borrow above nominal never exceeds what
      lenders leave idle of their *lendable* part (nobody lends beyond its limit); what a
    node borrows of a class split by owner, summed over the lenders' hardware, stays
    within its borrowing limit.
    """
    cs = sched.cs
    topo = sched.topo
    sc = sched.sclasses  # scheduling classes: a class of several owners is one per owner
    view = sc.topo
    down = down or {}
    cs.check()
    used_mask = [0] * topo.n_nodes
    jobs = [seat.job for seat in sched.seats if seat.index >= 0]  # (< 0: ended, freed)
    running = [j for j in jobs if j.state == JobState.RUNNING]
    assert running == sched.running_jobs(), "running index drifted"
    # Preempted jobs still saving in their grace hold their GPUs too (scheduler.grace).
    saving = [j for j, _ in sched.saving_jobs()]
    assert all(j.state == JobState.PREEMPTED for j in saving), "a saving job is not preempted"
    holding = running + saving
    tix = {seat.job.id: seat.tix for seat in sched.seats if seat.index >= 0}
    assert sched.running_count == len(holding), "running count drifted"
    used: dict[tuple[str, str], int] = {}
    for job in holding:
        got = 0
        sites = set()
        classes = set()
        owners = set()
        for node, mask in job.placement:
            assert mask, f"{job.id}: empty mask on node {node}"
            assert used_mask[node] & mask == 0, f"{job.id}: GPU on node {node} allocated twice"
            used_mask[node] |= mask
            got += mask.bit_count()
            dom = cs.node_dom[node]
            sites.add(cs.pod_site[cs.dom_pod[dom]])
            classes.add(cs.dom_class[dom])
            owners.add(topo.owners[int(topo.domain_owner[dom])])
        assert got == job.gpus, f"{job.id}: holds {got} GPUs, asked {job.gpus} (gang broken)"
        assert len(classes) == 1, f"{job.id}: spans GPU classes"
        if not job.allow_cross_site:
            assert len(sites) == 1, f"{job.id}: spans sites without allowing it"
        c = classes.pop()
        if sc.owner[c] is not None:
            assert owners == {sc.owner[c]}, f"{job.id}: runs off its class's owner's hardware"
        if len(owners) == 1:
            assert job.hardware_owner in (owners.pop(), "mixed"), f"{job.id}: hardware_owner"
        key = (job.tenant, view.classes[c])
        used[key] = used.get(key, 0) + job.gpus
    for n in range(topo.n_nodes):
        full = (1 << cs.node_cap[n]) - 1
        d = down.get(n, 0)
        assert used_mask[n] & cs.node_mask[n] == 0, f"node {n}: a used GPU is also free"
        assert d & (used_mask[n] | cs.node_mask[n]) == 0, f"node {n}: a down GPU is in use"
        assert used_mask[n] | cs.node_mask[n] | d == full, f"node {n}: a GPU is unaccounted"
    booked = dict(used)  # the quota book also holds what jobs claim while victims save
    for seat in sched.claims.values():
        key = (seat.job.tenant, view.classes[seat.claim_class])
        booked[key] = booked.get(key, 0) + seat.claim_gpus
    subtree = subtree_used(topo.fleet, view.classes, booked)
    for t, cells in zip(sched.quota.tenants, sched.quota.cells, strict=True):
        for c, cell in enumerate(cells):
            assert cell.used == subtree[t, view.classes[c]], f"{t}: quota book drifted"
    pending = sum(1 for j in jobs if j.state == JobState.PENDING)
    assert sched.pending_count == pending, "pending count drifted"
    for t, sizes in enumerate(sched.pending.sizes):
        waiting = [j.gpus for j in jobs if j.state == JobState.PENDING and tix[j.id] == t]
        assert sizes == {g: waiting.count(g) for g in set(waiting)}, "pending sizes drifted"
        known = sched.smallest_pending(t)
        assert known in (None, min(waiting, default=None)), "smallest pending size drifted"
    prios: list[dict[int, int]] = [{} for _ in sched.tenants]
    for job in running:
        if job.preemptible:
            t = tix[job.id]
            prios[t][job.priority] = prios[t].get(job.priority, 0) + 1
    if sched.running.prio_counted:  # (else not kept yet: PRIORITIES)
        assert sched.running.prio_t == prios, "per-tenant priority counts drifted"
    else:
        assert not any(sched.running.prio_t), "priority counts kept before their first read"
    busy = sum(used.values())
    down_total = sum(m.bit_count() for m in down.values())
    assert sum(cs.class_free) + busy + down_total == topo.gpus_total, "free + used != capacity"
    check_quota(topo.fleet, view.classes, used)
    if sched.cfg.power_cap:
        check_power(sched, running)


def check_power(sched: Scheduler, running: list[Job]) -> None:
    """No site draws more IT power than its cap (power_mw / PUE), recomputed from the
    catalogue's watts and the running jobs' placements (scheduler/power.py's rule)."""
    cs = sched.cs
    topo = sched.sclasses.topo
    draw = [0.0] * len(topo.sites)
    for d in range(topo.n_domains):
        model = topo.class_model[int(topo.domain_class[d])]
        draw[int(topo.pod_site[topo.domain_pod[d]])] += int(topo.domain_gpus[d]) * model.idle_watts
    for job in running:
        for node, mask in job.placement:
            dom = cs.node_dom[node]
            model = topo.class_model[cs.dom_class[dom]]
            site = cs.pod_site[cs.dom_pod[dom]]
            draw[site] += mask.bit_count() * (model.busy_watts - model.idle_watts)
    for s, site in enumerate(topo.fleet.sites):
        cap = site.power_mw * 1e6 / site.pue
        assert draw[s] <= cap * (1 + 1e-9), f"site {site.name}: {draw[s]:.0f} W > {cap:.0f} W"


def subtree_used(
    fleet: Fleet, classes: tuple[str, ...], used: dict[tuple[str, str], int]
) -> dict[tuple[str, str], int]:
    """Usage of every tenant's subtree per class, from the leaves' usage."""
    out: dict[tuple[str, str], int] = {}

    def walk(t: Any) -> dict[str, int]:
        mine = {cls: used.get((t.name, cls), 0) for cls in classes}
        for child in t.children:
            for cls, n in walk(child).items():
                mine[cls] += n
        for cls, n in mine.items():
            out[t.name, cls] = n
        return mine

    for top in fleet.tenants:
        walk(top)
    return out


def owners_by_class(fleet: Fleet) -> dict[str, set[str]]:
    """The owners of each GPU class's hardware, from the spec."""
    out: dict[str, set[str]] = {}
    for _site, _pod, group in fleet.iter_groups():
        out.setdefault(group.flavor, set()).add(group.owner)
    return out


def _effective(
    t: Any, cls: str, path: tuple[str, ...] = (), owners: dict[str, set[str]] | None = None
) -> tuple[int, int, int]:
    """(nominal, lendable, borrowing limit) of a tenant for a class, from the spec: declared,
    else for a parent its children's sums and no limit, else nothing (a leaf without a
    quota of a class may not use it, as in Kueue). A scheduling class ``<class>@<owner>``
    (one owner's hardware, see scheduler/owners.py) holds a declared nominal only if that
    owner is the nearest on the tenant's ``path`` (itself, then its ancestors) to own
    hardware of the class."""
    flavor, _, owner = cls.partition("@")
    here = (t.name, *path)
    q = next((q for q in t.quotas if q.gpu_class == flavor), None)
    if q is not None:
        limit = UNLIMITED if q.borrowing_limit is None else q.borrowing_limit
        if owner:
            mine = (owners or {}).get(flavor, set())
            home = next((p for p in here if p in mine), None)
            if home != owner:
                return 0, 0, limit
        return q.nominal, q.lendable, limit
    if t.children:
        kids = [_effective(c, cls, here, owners) for c in t.children]
        return sum(k[0] for k in kids), sum(k[1] for k in kids), UNLIMITED
    return 0, 0, 0


def check_quota(fleet: Fleet, classes: tuple[str, ...], used: dict[tuple[str, str], int]) -> None:
    """Quota rules from the spec, recomputed from the leaves' usage (see
    :func:`check_invariants` and scheduler/quota.py): a leaf within its nominal plus
    borrowing limit; a parent's children's claims (usage, or the never-lent guaranteed
    part if larger) within its nominal plus borrowing limit (0 for a top without a
    cohort); a cohort's trees drawing no more than their tops lend; a node's borrowing of
    a class split by owner (``<class>@<owner>``), what it holds above nominal summed over
    the owners' scheduling classes, within its borrowing limit."""
    owners = owners_by_class(fleet)
    # (tenant, fleet class) -> [GPUs held above nominal over the split classes, limit]
    borrowed: dict[tuple[str, str], list[int]] = {}

    def claim(t: Any, cls: str, top_alone: bool, path: tuple[str, ...]) -> int:
        nominal, lend, limit = _effective(t, cls, path, owners)
        if top_alone:
            limit = 0
        guaranteed = nominal - lend
        if not t.children:
            held = used.get((t.name, cls), 0)
            assert held <= nominal + limit, f"{t.name}/{cls}: uses {held} > nominal + borrowing"
        else:
            held = sum(claim(c, cls, False, (t.name, *path)) for c in t.children)
            assert held <= nominal + limit, (
                f"{t.name}/{cls}: its children claim {held} > nominal {nominal} + borrowing"
            )
        flavor, at, _ = cls.partition("@")
        if at:
            row = borrowed.setdefault((t.name, flavor), [0, limit])
            row[0] += max(0, held - nominal)
        return max(held, guaranteed)

    for cls in classes:
        draw: dict[str, int] = {}
        pool: dict[str, int] = {}
        for top in fleet.tenants:
            k = claim(top, cls, top.cohort is None, ())
            if top.cohort is not None:
                nominal, lend, _ = _effective(top, cls, (), owners)
                draw[top.cohort] = draw.get(top.cohort, 0) + k - (nominal - lend)
                pool[top.cohort] = pool.get(top.cohort, 0) + lend
        for cohort, d in draw.items():
            assert d <= pool[cohort], (
                f"cohort {cohort}/{cls}: its trees draw {d} but their tops lend {pool[cohort]}"
            )
    for (name, flavor), (total, limit) in borrowed.items():
        assert total <= limit, (
            f"{name}/{flavor}: borrows {total} over its lenders' hardware > limit {limit}"
        )


class CheckingKernel(Kernel):
    """A kernel that checks the scheduler's invariants before handing out each event."""

    __slots__ = ("checks", "injector", "sched")

    def __init__(self, sched: Scheduler, injector: FailureInjector | None) -> None:
        super().__init__(0.0)
        self.sched = sched
        self.injector = injector
        self.checks = 0

    def pop(self) -> Event | None:
        """Check, then pop."""
        check_invariants(self.sched, self.injector.down if self.injector else None)
        self.checks += 1
        return super().pop()

    def handled_inline(self) -> None:
        """Check before a scheduling pass the simulator runs without the heap, too."""
        check_invariants(self.sched, self.injector.down if self.injector else None)
        self.checks += 1
        super().handled_inline()


def checked_simulation(
    topo: Topology,
    jobs: Sequence[Job],
    sched_cfg: SchedulerConfig | None = None,
    twin_cfg: TwinConfig | None = None,
    failures: FailureInjector | None = None,
) -> tuple[SimResult, int]:
    """Run the real simulator with invariants checked after every event; (result, checks)."""
    sim = Simulation(topo, jobs, sched_cfg, twin_cfg, failures=failures)
    kernel = CheckingKernel(sim.sched, failures)
    sim.kernel = kernel
    result = sim.run()
    check_invariants(sim.sched, failures.down if failures else None)
    return result, kernel.checks


def simulate(topo: Topology, jobs: Sequence[Job], **cfg: Any) -> dict[str, Job]:
    """Run a checked simulation with the given SchedulerConfig fields; jobs by id."""
    result, _ = checked_simulation(topo, jobs, SchedulerConfig(**cfg))
    return {j.id: j for j in result.jobs}
