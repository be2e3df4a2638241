"""Types shared by every trace importer: the formats, the result, the one error, the reasons.

Importers never raise anything but :class:`TraceError`: a trace is user input, and a user
who points the tool at the wrong file should get a sentence naming the file, the line and
the field, not a traceback. Rows that are merely bad are skipped and counted by reason so
the operator can see how much of their history was usable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import pyarrow as pa

from aifactory.fleet.errors import SpecError


class TraceFormat(StrEnum):
    """The input formats ``read_trace`` understands."""

    PHILLY = "philly"
    ITP = "itp"
    SACCT = "sacct"
    CSV = "csv"
    PARQUET = "parquet"


class TraceError(SpecError):
    """A trace could not be read at all, or (under ``strict``) had a bad row.

    A subclass of :class:`SpecError` so the CLI's ``user_errors()`` prints it as one
    clean line and exits 2.
    """

    def __init__(self, problem: str, source: str | None = None) -> None:
        super().__init__([problem], source=source)


# Why a row was skipped. The keys of ``ImportResult.skipped`` are these strings.
MISSING_FIELD = "missing field"
UNPARSABLE_NUMBER = "unparsable number"
UNPARSABLE_TIME = "unparsable time"
NEGATIVE_DURATION = "negative duration"
ZERO_DURATION = "zero duration"
NEGATIVE_GPUS = "negative gpus"
FRACTIONAL_NUMBER = "not a whole number"
OUT_OF_RANGE = "number out of range"
NEGATIVE_ESTIMATE = "negative estimate"
NEGATIVE_SUBMIT = "negative submit"
START_BEFORE_SUBMIT = "start before submit"
DUPLICATE_ID = "duplicate id"
WRONG_FIELD_COUNT = "wrong number of fields"
NEVER_STARTED = "never started"
JOB_STEP = "job step"

# Rows with no GPUs are not errors: they are CPU jobs, counted in ``cpu_jobs``.
CPU_JOB = "cpu job"

# Reasons that describe the workload rather than bad data: ``strict`` does not fail on
# them (a sacct dump always holds jobs cancelled while pending, and one taken without
# ``--allocations`` holds job steps).
BENIGN_REASONS = frozenset({NEVER_STARTED, JOB_STEP, CPU_JOB})


@dataclass(frozen=True)
class ImportResult:
    """A normalised trace and what happened to the rows that did not make it."""

    table: pa.Table
    rows_read: int
    skipped: dict[str, int] = field(default_factory=dict)
    cpu_jobs: int = 0
    format: str = ""

    @property
    def rows_kept(self) -> int:
        """Rows in ``table`` (GPU jobs that passed every check)."""
        return int(self.table.num_rows)


@dataclass(frozen=True)
class ImportOptions:
    """What the caller asked for, passed unchanged to the importer."""

    source: str
    mapping: Mapping[str, str] | None = None
    time_format: str | None = None
    strict: bool = False
