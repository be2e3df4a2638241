"""Real traces in: Philly, ITP, Slurm sacct, any CSV and Parquet, into one schema.

``read_trace`` returns an :class:`ImportResult` whose ``table`` follows
``aifactory.workload.schema.TRACE_SCHEMA``; bad rows are skipped and counted by reason,
and only :class:`TraceError` ever escapes an importer.
"""

from aifactory.workload.traces.api import (
    IMPORTERS,
    infer_format,
    parse_mapping,
    read_trace,
    write_trace,
)
from aifactory.workload.traces.common import ImportResult, TraceError, TraceFormat
from aifactory.workload.traces.csvmap import FIELDS

__all__ = [
    "FIELDS",
    "IMPORTERS",
    "ImportResult",
    "TraceError",
    "TraceFormat",
    "infer_format",
    "parse_mapping",
    "read_trace",
    "write_trace",
]
