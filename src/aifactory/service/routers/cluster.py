"""``/v1/fleet/status`` (as Slurm's sinfo) and ``/v1/share`` (as sshare): what operators
read first, computed from the database alone so that any replica answers (issue #21 §2).

- Status: the fleet's nodes per site, pod and GPU class, grouped by state as sinfo groups
  them: ``idle`` (no GPU given), ``mix`` (some), ``alloc`` (all); node lists compressed.
  GPUs given are read from running jobs' placements.
- Share: per tenant, its shares (nominal GPUs over all classes), its decayed usage and the
  fair-share factor of Slurm's classic multifactor plugin, ``F = 2^(-U/S)`` with ``U`` the
  tenant's part of all decayed usage and ``S`` its part of all shares (Slurm's
  priority_multifactor documentation, "Fair-share factor"). Usage decays with the
  scheduler's fair-share half-life; a job's usage is its GPUs over its latest run (from
  ``started_at`` to its end or now: earlier runs of a preempted job are not in the row).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import or_, select

from aifactory.fleet.hostlist import compress_nodes
from aifactory.service.api import Caller
from aifactory.service.auth import Role
from aifactory.service.errors import AUTHENTICATED, responses
from aifactory.service.routers import ServiceDep
from aifactory.service.tables import jobs
from aifactory.workload.job import JobState

router = APIRouter(tags=["fleet"])

# Jobs that ended more than this many half-lives ago add under 2^-20 of their usage.
FORGET_HALF_LIVES = 20


class NodeGroup(BaseModel):
    """Nodes of one site, pod and GPU class in one state (a line of sinfo)."""

    site: str
    pod: str
    gpu_class: str
    state: str = Field(description="idle (no GPU given), mix (some) or alloc (all).")
    nodes: int
    gpus: int
    gpus_used: int
    nodelist: str = Field(description="The nodes, compressed: seoul/hgx/n[108-143].")


class ShareRow(BaseModel):
    """A tenant's fair share (a line of sshare)."""

    tenant: str
    shares: int = Field(description="Nominal GPUs over all classes.")
    norm_shares: float = Field(description="shares / all tenants' shares.")
    usage_gpu_h: float = Field(description="Decayed usage, GPU-hours.")
    effective_usage: float = Field(description="usage / all tenants' usage.")
    fairshare: float = Field(description="2^(-effective_usage / norm_shares), in [0, 1].")
    running_gpus: int


@router.get(
    "/v1/fleet/status", response_model=list[NodeGroup], responses=responses(*AUTHENTICATED, 422)
)
def fleet_status(who: Caller, service: ServiceDep) -> list[NodeGroup]:
    """Nodes per site, pod, GPU class and state (idle, mix, alloc), as sinfo shows them."""
    del who
    used: Counter[str] = Counter()
    with service.db.read() as conn:
        for (placement,) in conn.execute(
            select(jobs.c.placement).where(jobs.c.state == JobState.RUNNING.value)
        ):
            for node, gpus in placement or []:
                used[str(node)] += len(gpus)
    topo = service.topo
    groups: dict[tuple[str, str, str, str], list[tuple[str, int, int]]] = {}
    for n in range(topo.n_nodes):
        d = int(topo.node_domain[n])
        pod = topo.pods[int(topo.domain_pod[d])]
        name = f"{pod}/d{d}/n{n}"  # as the scheduler names nodes (ClusterState.node_name)
        cap = int(topo.node_gpus[n])
        busy = min(used.get(name, 0), cap)
        state = "idle" if busy == 0 else ("alloc" if busy >= cap else "mix")
        site, _, pod_name = pod.partition("/")
        key = (site, pod_name, topo.classes[int(topo.domain_class[d])], state)
        groups.setdefault(key, []).append((name, cap, busy))
    return [
        NodeGroup(
            site=site,
            pod=pod,
            gpu_class=cls,
            state=state,
            nodes=len(members),
            gpus=sum(cap for _, cap, _ in members),
            gpus_used=sum(busy for _, _, busy in members),
            nodelist=compress_nodes(name for name, _, _ in members),
        )
        for (site, pod, cls, state), members in sorted(groups.items())
    ]


@router.get("/v1/share", response_model=list[ShareRow], responses=responses(*AUTHENTICATED, 422))
def share(who: Caller, service: ServiceDep) -> list[ShareRow]:
    """Shares, decayed usage and fair-share factor per tenant (members: their own)."""
    half_life = service.judge.cfg.fair.half_life_s
    now = service.clock()
    judge = service.judge
    # Jobs run in leaf tenants only; a parent's quota is its children's, counted once.
    shares = {t: 0 for t in service.tenants if judge.quota.is_leaf(judge.tenant_index[t])}
    for row in judge.quota_table():
        if row["tenant"] in shares:
            shares[str(row["tenant"])] += int(str(row["nominal"]))
    usage = dict.fromkeys(shares, 0.0)
    running = dict.fromkeys(shares, 0)
    forget = now - FORGET_HALF_LIVES * half_life
    scale = half_life / math.log(2.0)
    with service.db.read() as conn:
        rows: Any = conn.execute(
            select(jobs.c.tenant, jobs.c.gpus, jobs.c.started_at, jobs.c.ended_at).where(
                jobs.c.started_at.is_not(None),
                or_(jobs.c.ended_at.is_(None), jobs.c.ended_at > forget),
            )
        )
        for tenant, gpus, start, end in rows:
            if tenant not in usage:
                continue
            stop = now if end is None else min(float(end), now)
            if end is None:
                running[tenant] += int(gpus)
            begin = min(float(start), stop)
            # the decayed integral of `gpus` held over [begin, stop], in GPU-seconds
            usage[tenant] += (
                gpus
                * scale
                * (2.0 ** (-(now - stop) / half_life) - 2.0 ** (-(now - begin) / half_life))
            )
    total_shares = sum(shares.values()) or 1
    total_usage = sum(usage.values())
    out: list[ShareRow] = []
    for tenant in sorted(shares):
        norm = shares[tenant] / total_shares
        effective = usage[tenant] / total_usage if total_usage > 0 else 0.0
        factor = 2.0 ** (-effective / norm) if norm > 0 else 0.0
        out.append(
            ShareRow(
                tenant=tenant,
                shares=shares[tenant],
                norm_shares=norm,
                usage_gpu_h=usage[tenant] / 3600.0,
                effective_usage=effective,
                fairshare=factor,
                running_gpus=running[tenant],
            )
        )
    if who.role is Role.ADMIN:
        return out
    return [r for r in out if r.tenant == who.tenant]
