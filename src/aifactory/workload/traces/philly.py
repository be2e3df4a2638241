"""Microsoft Philly (Jeon et al., ATC'19), as processed for the Pollux artifact.

Columns ``timestamp, duration, num_gpus, gpu_time, cluster``; the submit time is a naive
``YYYY-MM-DD HH:MM:SS`` and rows are not sorted. There is no job id, so each job is
named ``philly-<row index>`` (its position among the file's data rows), which stays
stable however the rows are later sorted. The virtual cluster becomes the tenant.
"""

from __future__ import annotations

from aifactory.workload.traces.common import ImportOptions, ImportResult, TraceError
from aifactory.workload.traces.csvmap import import_mapped

MAPPING = {"submit": "timestamp", "duration": "duration", "gpus": "num_gpus", "tenant": "cluster"}
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
HEADER = frozenset({"timestamp", "duration", "num_gpus"})


def import_philly(data: bytes, opts: ImportOptions) -> ImportResult:
    """``--format philly``."""
    if opts.mapping:
        raise TraceError("--map is only for --format csv", source=opts.source)
    return import_mapped(
        data,
        opts,
        dict(MAPPING),
        fmt="philly",
        time_format=opts.time_format or TIME_FORMAT,
        id_prefix="philly-",
    )
