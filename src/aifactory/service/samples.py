"""The metrics history behind the dashboard's overview charts (issue #21 §1).

Every 5 minutes the leader writes one row of ``samples``: GPUs busy, free and down per site
and class (busy from the allocation rows, so it is what the database says runs), pending
GPUs per tenant, and power per site against the site's cap from the fleet spec. Power is an
estimate: busy GPUs at the model's ``busy_watts``, free ones at ``idle_watts``, times the
site's PUE. The service has no node health yet, so ``down`` is 0 until it has; the field is
there so the charts and the API need not change when it comes.

Why a thread: a sample is two reads and one write, a few milliseconds on SQLite but more on
a busy PostgreSQL; the scheduling cycle must not wait for it. :meth:`Sampler.tick` only
compares the clock with the next slot and, when one is due, hands the work to a thread of
its own (one at a time). A slot's row is keyed by the slot's start, so a second leader (or
a restart in the same 5 minutes) finds it written and leaves it. Rows older than the
retention are deleted in the same transaction as each new row.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select

from aifactory.fleet.spec import Fleet
from aifactory.fleet.topology import Topology
from aifactory.service.db import Database
from aifactory.service.tables import allocations, jobs, samples
from aifactory.workload.job import JobState

log = logging.getLogger(__name__)

SAMPLE_S = 300.0  # one row per this many seconds of wall time
MAX_POINTS = 2_000  # the most samples one read returns (a week at 5 minutes)


def slot(now: float) -> float:
    """The start of the 5-minute slot ``now`` falls in."""
    return math.floor(now / SAMPLE_S) * SAMPLE_S


@dataclass(frozen=True, slots=True)
class _Cell:
    """A site and GPU class with what it has, and what each of its GPUs draws (W)."""

    site: str
    gpu_class: str
    gpus: int
    busy_w: float
    idle_w: float
    pue: float


class Sampler:
    """Takes the 5-minute samples of one fleet; the leader calls :meth:`tick` each cycle."""

    def __init__(self, db: Database, topo: Topology, fleet: Fleet, retention_s: float) -> None:
        self.db = db
        self.retention_s = retention_s
        pue = {s.name: s.pue for s in fleet.sites}
        self.caps_kw = {s.name: s.power_mw * 1000.0 for s in fleet.sites}
        # node name (as the scheduler names it: pod/d<domain>/n<node>) -> its cell
        self._node_cell: dict[str, tuple[str, str]] = {}
        gpus: Counter[tuple[str, str]] = Counter()
        watts: dict[tuple[str, str], tuple[float, float]] = {}
        for n in range(topo.n_nodes):
            d = int(topo.node_domain[n])
            pod = topo.pods[int(topo.domain_pod[d])]
            c = int(topo.domain_class[d])
            key = (pod.partition("/")[0], topo.classes[c])
            self._node_cell[f"{pod}/d{d}/n{n}"] = key
            gpus[key] += int(topo.node_gpus[n])
            model = topo.class_model[c]
            watts[key] = (model.busy_watts, model.idle_watts)
        self._cells = [
            _Cell(site, cls, gpus[(site, cls)], *watts[(site, cls)], pue.get(site, 1.0))
            for site, cls in sorted(gpus)
        ]
        self._next = -math.inf  # the next slot to write; -inf: not known yet
        self._worker: threading.Thread | None = None

    def snapshot(self) -> dict[str, Any]:
        """What the fleet looks like now, as one sample's payload."""
        with self.db.read() as conn:
            busy_nodes = conn.execute(
                select(allocations.c.node, func.count()).group_by(allocations.c.node)
            ).all()
            pending = conn.execute(
                select(jobs.c.tenant, func.coalesce(func.sum(jobs.c.gpus), 0))
                .where(jobs.c.state == JobState.PENDING.value)
                .group_by(jobs.c.tenant)
            ).all()
        busy: Counter[tuple[str, str]] = Counter()
        for node, count in busy_nodes:
            key = self._node_cell.get(str(node))
            if key is not None:
                busy[key] += int(count)
        gpu_rows: list[dict[str, Any]] = []
        power: defaultdict[str, float] = defaultdict(float)
        for cell in self._cells:
            used = min(busy[(cell.site, cell.gpu_class)], cell.gpus)
            down = 0
            free = cell.gpus - used - down
            gpu_rows.append(
                {
                    "site": cell.site,
                    "gpu_class": cell.gpu_class,
                    "busy": used,
                    "free": free,
                    "down": down,
                }
            )
            power[cell.site] += (used * cell.busy_w + free * cell.idle_w) * cell.pue / 1000.0
        return {
            "gpus": gpu_rows,
            "pending": {str(t): int(g) for t, g in sorted(pending) if int(g) > 0},
            "power": [
                {"site": site, "kw": round(kw, 3), "cap_kw": self.caps_kw.get(site, 0.0)}
                for site, kw in sorted(power.items())
            ],
        }

    def take(self, now: float) -> bool:
        """Write the sample of ``now``'s slot unless it is written; drop expired rows.
        True if this call wrote it."""
        at = slot(now)
        data = self.snapshot()
        with self.db.write() as conn:
            if conn.execute(select(samples.c.at).where(samples.c.at == at)).first() is not None:
                return False
            conn.execute(samples.insert().values(at=at, data=data))
            if self.retention_s > 0:
                conn.execute(delete(samples).where(samples.c.at < at - self.retention_s))
        return True

    def tick(self, now: float) -> None:
        """Called by the leader every cycle: start a sample in the background when a new
        slot began; costs the cycle a comparison otherwise. Never raises."""
        if now < self._next or (self._worker is not None and self._worker.is_alive()):
            return
        self._next = slot(now) + SAMPLE_S
        self._worker = threading.Thread(target=self._run, args=(now,), name="sampler")
        self._worker.daemon = True
        self._worker.start()

    def join(self, timeout: float = 10.0) -> None:
        """Wait for a sample in flight (tests, and a clean stop)."""
        if self._worker is not None:
            self._worker.join(timeout)

    def _run(self, now: float) -> None:
        try:
            self.take(now)
        except Exception:  # a lost sample is a gap in a chart, never a failed leader
            log.exception("taking the metrics sample failed")


def read_samples(
    db: Database, start: float, end: float, step: float
) -> list[tuple[float, dict[str, Any]]]:
    """Samples with ``start <= at <= end``, the last one of each ``step``-long bucket."""
    with db.read() as conn:
        rows: Iterable[Any] = conn.execute(
            select(samples.c.at, samples.c.data)
            .where(samples.c.at >= start, samples.c.at <= end)
            .order_by(samples.c.at)
        )
        picked: dict[int, tuple[float, dict[str, Any]]] = {}
        for at, data in rows:
            picked[math.floor((float(at) - start) / step)] = (float(at), dict(data))
    return [picked[k] for k in sorted(picked)]
