"""Fuzzing the importers: random bytes and random CSVs never raise anything but TraceError.

When an import does succeed, its result must still be a valid normalised trace, and the
rows read must all be accounted for (kept, skipped for one reason, or CPU jobs).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aifactory.workload.schema import TRACE_SCHEMA
from aifactory.workload.traces import FIELDS, ImportResult, TraceError, TraceFormat, read_trace

FORMATS = [f.value for f in TraceFormat]
# Column names the importers look for, plus some they do not.
NAMES = [
    "timestamp", "duration", "num_gpus", "gpu_time", "cluster", "job_id", "submission_time",
    "num_gpu", "JobID", "Account", "Submit", "Start", "End", "Elapsed", "State", "AllocTRES",
    "ReqTRES", "Timelimit", "t", "g", "id", "", " x ", "日本",
]  # fmt: skip
VALUES = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "1",
            "-1",
            "1.5",
            "1e400",
            "nan",
            "Unknown",
            "None",
            "UNLIMITED",
            "1-02:03:04",
            "99:99",
            "2017-10-09 07:01:55",
            "2024-01-15T10:00:00",
            "2024-02-30T25:61:61",
            "gres/gpu=2",
            "cpu=1,gres/gpu:a100=x,gres/gpu:h100=3",
            "gres/gpu=",
            "CANCELLED by 0",
            "a.b",
            '"',
            '"quoted, with comma"',
            "line\nbreak",
            "\r",
            "|",
            ",",
            "\x00",
        ]
    ),
    st.text(max_size=12),
)
# AIFACTORY_FUZZ_EXAMPLES=5000 for a long hunt; the default keeps the suite quick.
SETTINGS = settings(
    max_examples=int(os.environ.get("AIFACTORY_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def check(result: ImportResult) -> None:
    table = result.table
    assert table.schema.equals(TRACE_SCHEMA)
    assert result.rows_read == table.num_rows + sum(result.skipped.values()) + result.cpu_jobs
    assert all(v > 0 for v in result.skipped.values())
    got = table.to_pylist()
    submits = [r["submit_s"] for r in got]
    assert submits == sorted(submits)  # ties keep the file's order (test_traces.py)
    for r in got:
        assert r["submit_s"] >= 0
        assert r["duration_s"] > 0
        assert r["gpus"] > 0
    assert len({r["job_id"] for r in got}) == len(got)


def attempt(path: Path, fmt: str | None, mapping: dict[str, str] | None, **kw: object) -> None:
    try:
        result = read_trace(path, fmt, mapping=mapping, **kw)  # type: ignore[arg-type]
    except TraceError:
        return
    check(result)


HEADERS = [
    b"",
    b"timestamp,duration,num_gpus,gpu_time,cluster\n",
    b"job_id,submission_time,duration,num_gpu\n",
    b"t,duration,g\n",
    b"JobID|Account|Submit|Start|End|Elapsed|State|AllocTRES|ReqTRES|Timelimit\n",
    b"PAR1",
]


@SETTINGS
@given(
    head=st.sampled_from(HEADERS),
    data=st.binary(max_size=3000),
    fmt=st.sampled_from([*FORMATS, None]),
)
def test_random_bytes(scratch: Path, head: bytes, data: bytes, fmt: str | None) -> None:
    path = scratch / "bytes.trace"
    path.write_bytes(head + data)
    mapping = {"submit": "t", "duration": "duration", "gpus": "g"} if fmt == "csv" else None
    attempt(path, fmt, mapping)
    attempt(path, fmt, mapping, strict=True)


@st.composite
def random_csv(draw: st.DrawFn) -> tuple[str, list[str]]:
    delimiter = draw(st.sampled_from([",", "|"]))
    header = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=8))
    lines = [delimiter.join(header)]
    for _ in range(draw(st.integers(0, 12))):
        width = draw(st.sampled_from([len(header), len(header), len(header), 1, len(header) + 1]))
        lines.append(delimiter.join(draw(VALUES) for _ in range(width)))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return newline.join(lines) + draw(st.sampled_from(["", newline, newline * 2])), header


@SETTINGS
@given(
    csv_and_header=random_csv(),
    fmt=st.sampled_from([*FORMATS, None]),
    fields=st.lists(st.sampled_from([*FIELDS, "bogus"]), max_size=6, unique=True),
    time_format=st.sampled_from([None, "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%H", "%Q"]),
    strict=st.booleans(),
    picks=st.data(),
)
def test_random_csvs(
    scratch: Path,
    csv_and_header: tuple[str, list[str]],
    fmt: str | None,
    fields: list[str],
    time_format: str | None,
    strict: bool,
    picks: st.DataObject,
) -> None:
    text, header = csv_and_header
    path = scratch / "random.csv"
    path.write_text(text, encoding="utf-8", newline="")
    if picks.draw(st.booleans()):
        fields = ["submit", "duration", "gpus", *fields]
    mapping = {f: picks.draw(st.sampled_from([*header, "absent"])) for f in fields} or None
    attempt(path, fmt, mapping, time_format=time_format, strict=strict)


DATETIMES = st.datetimes(
    min_value=datetime(1990, 1, 1),
    max_value=datetime(2040, 1, 1),
)
ISO = DATETIMES.map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S"))
PLAIN_TIME = DATETIMES.map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S"))
COUNT = st.integers(-2, 130).map(str)
SECONDS = st.one_of(st.integers(-5, 10**7).map(str), st.floats(-1, 1e7).map(str))
CLOCK = st.builds(
    lambda d, h, m, sec, form: form.format(d=d, h=h, m=m, s=sec),
    st.integers(0, 30),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.sampled_from(
        ["{d}-{h:02d}:{m:02d}:{s:02d}", "{h:02d}:{m:02d}:{s:02d}", "{m}:{s:02d}", "{m}"]
    ),
)
TRES = st.builds(
    lambda n, kind, form: form.format(n=n, kind=kind),
    st.integers(-1, 64),
    st.sampled_from(["a100", "h100", "b200"]),
    st.sampled_from(
        [
            "billing={n},cpu=4,gres/gpu={n},mem=8G,node=1",
            "cpu=4,gres/gpu:{kind}={n},mem=8G",
            "cpu=4,gres/gpu:{kind}={n},gres/gpu={n}",
            "cpu=4,mem=8G,node=1",
            "cpu=2,gres/gpumem={n}G",
        ]
    ),
)


def plausible(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Mostly valid values for a column (8 in 9), sometimes anything at all."""
    return st.sampled_from(range(9)).flatmap(lambda k: VALUES if k == 0 else valid)


@SETTINGS
@given(
    rows=st.lists(
        st.tuples(
            plausible(st.one_of(PLAIN_TIME, st.sampled_from(["a", "b", "c", "a.1"]))),
            plausible(st.one_of(PLAIN_TIME, SECONDS)),
            plausible(SECONDS),
            plausible(COUNT),
            plausible(st.one_of(SECONDS, st.sampled_from(["x", "y", ""]))),
        ),
        max_size=15,
    ),
    fmt=st.sampled_from(["philly", "itp", "csv"]),
    strict=st.booleans(),
)
def test_well_formed_headers_with_random_values(
    scratch: Path, rows: list[tuple[str, ...]], fmt: str, strict: bool
) -> None:
    # The right header keeps the importer past its column checks, so the row checks are fuzzed.
    header = {
        "philly": "timestamp,num_gpus,duration,gpu_time,cluster",
        "itp": "job_id,submission_time,duration,num_gpu,extra",
        "csv": "a,b,c,d,e",
    }[fmt]
    if fmt == "philly":  # timestamp, then gpus where ITP has its submit time: both exercised
        rows = [(r[1], r[3], r[2], r[4], r[0]) for r in rows]
    body = "\n".join(",".join('"' + v.replace('"', '""') + '"' for v in row) for row in rows)
    path = scratch / "values.csv"
    path.write_text(header + "\n" + body + "\n", encoding="utf-8", newline="")
    mapping = (
        {"id": "a", "submit": "b", "duration": "c", "gpus": "d", "estimate": "e"}
        if fmt == "csv"
        else None
    )
    attempt(path, fmt, mapping, strict=strict)


@SETTINGS
@given(
    rows=st.lists(
        st.tuples(
            plausible(st.one_of(st.integers(1, 30).map(str), st.just("7.batch"))),
            plausible(st.sampled_from(["u1", "u2"])),
            plausible(st.sampled_from(["acct1", "acct2", ""])),
            plausible(st.just("gpu")),
            plausible(ISO),
            plausible(st.one_of(ISO, st.sampled_from(["Unknown", "None"]))),
            plausible(st.one_of(ISO, st.just("Unknown"))),
            plausible(CLOCK),
            plausible(st.sampled_from(["COMPLETED", "FAILED", "CANCELLED by 0", "RUNNING"])),
            plausible(TRES),
            plausible(TRES),
            plausible(st.one_of(CLOCK, st.sampled_from(["UNLIMITED", "Partition_Limit"]))),
        ),
        max_size=12,
    ),
    time_format=st.sampled_from([None, "%Y-%m-%dT%H:%M:%S"]),
    strict=st.booleans(),
)
def test_sacct_with_random_values(
    scratch: Path, rows: list[tuple[str, ...]], time_format: str | None, strict: bool
) -> None:
    header = (
        "JobID|User|Account|Partition|Submit|Start|End|Elapsed|State|AllocTRES|ReqTRES|Timelimit"
    )
    body = "\n".join("|".join(v.replace("\n", " ") for v in row) for row in rows)
    path = scratch / "sacct.txt"
    path.write_text(header + "\n" + body + "\n", encoding="utf-8", newline="")
    attempt(path, "sacct", None, time_format=time_format, strict=strict)
