"""Microsoft ITP clusters, 2021 (ElasticFlow traces, Gu et al., ASPLOS'23).

Columns ``job_id, submission_time, duration, num_gpu``; submit times are seconds from
the start of collection. The traces carry no user or team, so the tenant is empty.
"""

from __future__ import annotations

from aifactory.workload.traces.common import ImportOptions, ImportResult, TraceError
from aifactory.workload.traces.csvmap import import_mapped

MAPPING = {"id": "job_id", "submit": "submission_time", "duration": "duration", "gpus": "num_gpu"}
HEADER = frozenset(MAPPING.values())


def import_itp(data: bytes, opts: ImportOptions) -> ImportResult:
    """``--format itp``."""
    if opts.mapping:
        raise TraceError("--map is only for --format csv", source=opts.source)
    return import_mapped(data, opts, dict(MAPPING), fmt="itp", time_format=opts.time_format)
