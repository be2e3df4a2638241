"""The results rows of a streamed run's jobs, kept as columns instead of as Job objects.

Why: a run that streams its jobs in (:class:`~aifactory.twin.inputs.JobSource`) keeps no
list of every job; a job that reaches a final state (completed, or refused at submit) is
handed here and its object is let go, so that the run's memory follows the jobs in flight
rather than every job so far. Each finished job's fields are read by the same compiled
loop that reads a kept job list (:func:`aifactory.twin.fields.read_fields`), a batch at a
time, into one preallocated array per field indexed by the job's row (its place in submit
order), so the summary and ``jobs.parquet`` come out bit-identical to a run that kept its
jobs. Strings (tenant, kind, classes, placement level, owner, site) are stored as small
integer codes; a job's id is kept as the string its job had.

The scheduler's wait times of a finished job (``Scheduler.retired``) are moved here too,
as one array per wait reason, so they do not pile up in the scheduler either; so are the
allocation gate's figures of a job of a project (its project, time held and GPU-seconds
charged: :meth:`~aifactory.twin.allocgate.TwinAllocations.retire`), in a run with one.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from aifactory.reports.results import WAIT_REASONS
from aifactory.scheduler.records import Waiting
from aifactory.twin.allocgate import TwinAllocations
from aifactory.twin.fields import encode, read_fields
from aifactory.workload.job import Job

BATCH: Final = 4096  # finished jobs read at a time (their objects live until then)

_FLOATS: Final = (
    "submit",
    "start",
    "end",
    "duration",
    "attained",
    "run_start",
    "progress",
    "lost_preempt",
    "lost_failure",
    "staging_s",
    "slowdown",
)
_INTS: Final = ("gpus", "preemptions", "failures")
_STRINGS: Final = ("tenant", "kind", "gpu_class", "placed_class", "level", "hardware_owner", "site")


def _floats(values: list[float]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """``np.array(values, dtype=np.float64)``: the same array, made through ``array('d')``
    (C doubles from the Python floats, a third faster for a run's 82,247 jobs)."""
    return np.frombuffer(array("d", values), dtype=np.float64)


def _ints(values: list[int]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """``np.array(values, dtype=np.int64)``, read with ``np.fromiter`` (twice as fast)."""
    return np.fromiter(values, np.int64, len(values))


@dataclass(frozen=True, slots=True, eq=False)
class Coded:
    """A string column of a few distinct values as one small code per row, decoded a part
    at a time (a tuple of millions of references is 8 bytes a row; a code is 2)."""

    codes: np.ndarray[Any, np.dtype[np.int16]]
    values: tuple[Any, ...]
    """The value of each code."""

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, part: slice) -> tuple[Any, ...]:
        """The values of the rows of ``part``, in row order."""
        table = np.empty(max(len(self.values), 1), dtype=object)
        table[: len(self.values)] = self.values
        return tuple(table[self.codes[part]].tolist())

    def __iter__(self) -> Iterator[Any]:
        """Every row's value, in row order (decoded a part at a time)."""
        step = 1 << 16
        for lo in range(0, len(self.codes), step):
            yield from self[lo : lo + step]


class FinishedJobs:
    """Per-field arrays of ``n`` rows; a row is written once its job is :meth:`add`-ed and
    :meth:`flush`-ed (or :meth:`put` at the end, for the jobs still in flight)."""

    def __init__(self, n: int, gate: TwinAllocations | None = None) -> None:
        """``gate``: the run's allocation gate, whose figures of each job added are moved
        here (:attr:`project`, :attr:`held_s`, :attr:`charged`)."""
        self.n = n
        self.gate = gate
        # The gate's figures by row (project: its place in the allocations file, -1 none).
        self.project = np.full(n if gate is not None else 0, -1, dtype=np.int16)
        self.held_s = np.zeros(n if gate is not None else 0, dtype=np.float64)
        self.charged = np.zeros(n if gate is not None else 0, dtype=np.float64)
        self.floats = {name: np.zeros(n, dtype=np.float64) for name in _FLOATS}
        self.ints = {name: np.zeros(n, dtype=np.int64) for name in _INTS}
        self.state = np.zeros(n, dtype=np.int8)
        self.service = np.zeros(n, dtype=np.bool_)
        self.ids = np.empty(n, dtype=object)
        # (int16: a string column has a few distinct values; numpy refuses a code past it)
        self.codes = {name: np.zeros(n, dtype=np.int16) for name in _STRINGS}
        self.values: dict[str, dict[str | None, int]] = {name: {} for name in _STRINGS}
        self._waits: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}  # made when used
        # Wait records of finished jobs still waiting for a reason when they ended (none
        # expected: a job stops waiting when it starts): (row, waited, reason, since),
        # completed up to the run's end as Scheduler.wait_times does.
        self.open_waits: list[tuple[int, dict[str, float] | None, Waiting, float]] = []
        self._batch: list[Job] = []
        self._rows: list[int] = []

    def add(self, job: Job, row: int) -> None:
        """A job reached its final state: its row is read (in a batch) and the job let go."""
        self._batch.append(job)
        self._rows.append(row)
        if len(self._batch) >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Read the batch of finished jobs into their rows."""
        if self._batch:
            self.put(self._batch, self._rows)
            self._batch = []
            self._rows = []

    def put(self, jobs: list[Job], rows: list[int], *, retire: bool = True) -> None:
        """Write the rows of ``jobs`` (at ``rows``) from their fields now, and the gate's
        figures of them (``retire``: taken from the gate, the jobs having ended; else
        read, for the jobs still in flight at the end)."""
        f = read_fields(jobs)
        at = np.asarray(rows, dtype=np.intp)
        gate = self.gate
        if gate is not None:
            take = gate.retire if retire else gate.figures
            figures = [take(job_id) for job_id in f.ids]
            if figures:
                code, held, charged = zip(*figures, strict=True)
                self.project[at] = code
                self.held_s[at] = held
                self.charged[at] = charged
        fl = self.floats
        for name in ("submit", "start", "end", "duration", "run_start", "progress"):
            fl[name][at] = _floats(getattr(f, name))
        fl["attained"][at] = _floats(f.attained)
        fl["lost_preempt"][at] = _floats(f.lost_preempt)
        fl["lost_failure"][at] = _floats(f.lost_failure)
        fl["staging_s"][at] = _floats(f.staging_s)
        fl["slowdown"][at] = _floats(f.slowdown)
        for name in _INTS:
            self.ints[name][at] = _ints(getattr(f, name))
        self.state[at] = np.fromiter(f.state, np.int8, len(f.state))
        self.service[at] = np.array(f.service, dtype=np.bool_)
        self.ids[at] = f.ids
        strings: dict[str, list[Any]] = {
            "tenant": f.tenant,
            "kind": f.kind,
            "gpu_class": f.gpu_class,
            "placed_class": f.placed_class,
            "level": f.level,
            "hardware_owner": f.hardware_owner,
            "site": f.site,
        }
        for name, values in strings.items():
            self.codes[name][at] = encode(values, self.values[name])

    def strings(self, name: str) -> Coded:
        """The column ``name``: its rows' codes and the value of each code."""
        table: list[Any] = [None] * len(self.values[name])
        for value, code in self.values[name].items():
            table[code] = value
        return Coded(self.codes[name], tuple(table))

    def _wait(self, reason: str) -> np.ndarray[Any, np.dtype[np.float64]] | None:
        """The wait column of ``reason`` (made at its first use), None for another name."""
        column = self._waits.get(reason)
        if column is None and reason in WAIT_REASONS:
            column = self._waits[reason] = np.zeros(self.n, dtype=np.float64)
        return column

    @property
    def waits(self) -> dict[str, np.ndarray[Any, np.dtype[np.float64]]]:
        """Seconds each row waited for each reason (zeros for a reason none waited for)."""
        return {r: self._waits.get(r, np.zeros(self.n)) for r in WAIT_REASONS}

    def take_waits(self, retired: list[Any], rows: dict[str, int]) -> list[Any]:
        """Move the scheduler's wait records of ended jobs (``Scheduler.retired``: (index,
        id, waited, reason, since)) into the wait columns, by the jobs' rows; returns the
        records of jobs not in ``rows`` (left to the scheduler)."""
        left: list[Any] = []
        for record in retired:
            row = rows.get(record[1], -1)
            if row < 0:
                left.append(record)
                continue
            waited, reason, since = record[2], record[3], record[4]
            if reason is not None:
                self.open_waits.append((row, waited, reason, since))
            elif waited:
                for key, seconds in waited.items():
                    column = self._wait(str(key))
                    if column is not None:
                        column[row] = seconds
        return left

    def close_waits(self, end_s: float) -> None:
        """Complete the open wait records up to the run's end (as ``wait_times`` does)."""
        for row, was, reason, since in self.open_waits:
            waited = dict(was) if was is not None else {}
            if end_s > since:
                waited[reason.value] = waited.get(reason.value, 0.0) + (end_s - since)
            for key, seconds in waited.items():
                column = self._wait(str(key))
                if column is not None:
                    column[row] = seconds
        self.open_waits = []
