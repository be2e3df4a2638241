"""How one job's failure stays that job's failure in the scheduler loop.

The loop catches errors per job and needs to tell three kinds apart: a lost database (drop
leadership: :func:`is_outage`), a scheduler whose in-memory state is in doubt (rebuild it
from the database: :class:`RebuildNeededError`), and an error of the pure core while
deciding, which it narrows to the jobs that cause it (:func:`failing_set`) by replaying
the decision on schedulers rebuilt from the database. Tests plant crashes through a
:data:`FaultHook`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Sequence

from sqlalchemy import RowMapping
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from aifactory.scheduler.scheduler import Scheduler
from aifactory.service.jobrows import PlacementList, scheduler_from_rows
from aifactory.workload.job import Job

log = logging.getLogger(__name__)

# A core error that takes more jobs than this together to raise is not narrowed further
# (each member costs about log2(live jobs) rebuilt forks): the scheduler is rebuilt instead.
MAX_CULPRITS = 4


class InjectedCrashError(BaseException):
    """Raised by a test's fault hook to stand for a crash of the process at that point.

    A BaseException, not an Exception, so that the loop's per-job isolation (which catches
    Exception) does not absorb it: it unwinds the cycle as a ``kill -9`` would end it.
    """


FaultHook = Callable[[str, str], None]
"""Called as ``hook(point, job_id)`` at the points of a cycle where a crash would leave
work half done: ``committed`` (intents are in the database, nothing launched),
``launching`` (just before the executor starts a job), ``launched`` (started, handle not
yet recorded) and ``recorded`` (handles committed). Tests raise :class:`InjectedCrashError`."""


def no_fault(point: str, job_id: str) -> None:
    del point, job_id


class RebuildNeededError(Exception):
    """The scheduler's in-memory state is in doubt: rebuild it from the database.

    Always safe, because launch is idempotent: a start committed but not yet launched is
    found (or requeued) by name on the rebuild, never started twice.
    """


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is unreachable (drop leadership) rather than that
    one job's data or decision went wrong (fail that job)."""
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def why(exc: BaseException) -> str:
    """A one-line reason for a job's history: the exception's type and message, bounded."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text[:300]


def schedule_raises(make: Callable[[], Scheduler], rows: Sequence[RowMapping], now: float) -> bool:
    """Whether a scheduler rebuilt from exactly these rows raises while scheduling."""
    try:
        sched, _ = scheduler_from_rows(make(), rows, now)
        sched.schedule(now)
    except Exception:  # noqa: BLE001 (any error is what is being looked for)
        return True
    return False


def failing_set(
    rows: Sequence[RowMapping], raises: Callable[[Sequence[RowMapping]], bool]
) -> list[RowMapping]:
    """A smallest set of ``rows`` whose scheduling raises, each member needed for it.

    Found the way delta debugging narrows a failing input: the shortest prefix of the
    remaining rows that, with the members found so far, raises ends with a row without
    which it does not; that row joins the set, and the search goes on among the rows
    before it until the set alone raises. Empty when nothing raises, when even no rows
    raise (not any job's doing), or when the set would exceed ``MAX_CULPRITS``.
    """
    if not rows or raises([]) or not raises(rows):
        return []
    found: list[RowMapping] = []
    pool = list(rows)

    def with_found(part: Sequence[RowMapping]) -> list[RowMapping]:
        return sorted([*found, *part], key=lambda r: int(r["id"]))

    while not raises(with_found([])):
        if len(found) == MAX_CULPRITS or not pool:
            return []
        lo, hi = 0, len(pool)  # invariant: found + pool[:lo] does not raise, + pool[:hi] does
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if raises(with_found(pool[:mid])):
                hi = mid
            else:
                lo = mid
        found.append(pool[hi - 1])
        pool = pool[: hi - 1]
    return sorted(found, key=lambda r: int(r["id"]))


def vet_starts(
    sched: Scheduler,
    known: Container[str],
    started: list[Job],
    preempted: list[Job],
    job_error: Callable[[str], None],
) -> tuple[list[Job], dict[str, PlacementList], list[tuple[Job, str]]]:
    """The starts a cycle may commit, their placements, and those it must fail.

    The core guarantees what is checked here; the loop checks it anyway, because a
    violation would otherwise reach the backend (two jobs on one GPU, a launch with no
    node) or crash the cycle for everyone. A start of a job the loop does not track means
    its state is in doubt: :class:`RebuildNeededError`.
    """
    evicted = {job.id for job in preempted}
    ok: list[Job] = []
    placements: dict[str, PlacementList] = {}
    bad: list[tuple[Job, str]] = []
    taken: set[tuple[str, int]] = set()
    for job in started:
        if job.id in evicted:
            # Started and preempted in one pass: it is pending in the scheduler again,
            # and still pending in the database; nothing to commit or launch.
            log.error("job %s was started and preempted in one cycle", job.id)
            job_error("decide")
            continue
        if job.id not in known:
            log.error("job %s was started but is not tracked", job.id)
            job_error("decide")
            raise RebuildNeededError(job.id)
        try:
            placement = list(sched.placement_of(job))
        except Exception as exc:  # noqa: BLE001 (fails this job alone)
            bad.append((job, f"internal error placing the job: {why(exc)}"))
            continue
        gpus = [(node, g) for node, part in placement for g in part]
        problem = None
        if not placement or len(gpus) != job.gpus:
            problem = f"placement of {len(gpus)} GPUs for a {job.gpus}-GPU job"
        elif len(set(gpus)) != len(gpus) or taken.intersection(gpus):
            problem = "placement gives a GPU twice"
        if problem is not None:
            bad.append((job, f"internal error: {problem}"))
            continue
        taken.update(gpus)
        placements[job.id] = placement
        ok.append(job)
    return ok, placements, bad
