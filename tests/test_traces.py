"""Trace importers on small fixtures written by the tests: every format, every bad-row reason."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aifactory.fleet import fleet_summary, load_fleet
from aifactory.workload.schema import TRACE_SCHEMA
from aifactory.workload.traces import (
    ImportResult,
    TraceError,
    TraceFormat,
    infer_format,
    parse_mapping,
    read_trace,
    write_trace,
)
from aifactory.workload.traces.inspect import trace_stats


def write(tmp_path: Path, text: str, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def rows(result: ImportResult) -> list[dict[str, object]]:
    return result.table.to_pylist()


def assert_accounted(result: ImportResult) -> None:
    """Every row read is kept, skipped for one reason, or a CPU job."""
    assert result.rows_read == result.rows_kept + sum(result.skipped.values()) + result.cpu_jobs


def assert_normalised(result: ImportResult) -> None:
    table = result.table
    assert table.schema.equals(TRACE_SCHEMA)
    got = table.to_pylist()
    keys = [(r["submit_s"], r["job_id"]) for r in got]
    assert keys == sorted(keys)
    if got:
        assert min(r["submit_s"] for r in got) >= 0
        assert all(r["duration_s"] > 0 and r["gpus"] > 0 for r in got)
        assert len({r["job_id"] for r in got}) == len(got)
    assert_accounted(result)


# ---------------------------------------------------------------- Philly and ITP

PHILLY = """timestamp,duration,num_gpus,gpu_time,cluster
2017-10-09 07:01:55,66.0,1,66.0,11cb48
2017-10-09 06:13:03,2951.0,8,23608.0,6214e9
2017-10-09 07:01:55,860.0,2,1720.0,6c71a0

"""


def test_philly_normalises_unsorted_rows(tmp_path: Path) -> None:
    result = read_trace(write(tmp_path, PHILLY), "philly")
    assert_normalised(result)
    assert result.format == "philly"
    assert result.rows_read == 3  # the trailing blank line is not a row
    got = rows(result)
    # Sorted by submit, ties by id; ids are the rows' positions in the file.
    assert [r["job_id"] for r in got] == ["philly-1", "philly-0", "philly-2"]
    assert [r["submit_s"] for r in got] == [0.0, 48 * 60 + 52.0, 48 * 60 + 52.0]
    assert got[0]["tenant"] == "6214e9"
    assert got[0]["gpus"] == 8
    assert got[0]["duration_s"] == 2951.0
    assert got[0]["observed_start_s"] is None
    assert got[0]["priority"] == 0


def test_itp_keeps_ids_and_leaves_tenant_empty(tmp_path: Path) -> None:
    text = "job_id,submission_time,duration,num_gpu\nb,1999,600,4\na,2000,700,1\nc,1999,800,2\n"
    result = read_trace(write(tmp_path, text), "itp")
    assert_normalised(result)
    got = rows(result)
    assert [(r["job_id"], r["submit_s"]) for r in got] == [("b", 0.0), ("c", 0.0), ("a", 1.0)]
    assert {r["tenant"] for r in got} == {""}


def test_equal_submit_times_keep_the_file_order(tmp_path: Path) -> None:
    # Sources list jobs in submission order (sacct by job id as a number), so ties keep the
    # file's order; sorting ids as strings would put "10" before "9".
    text = "id,t,d,g\nz,5,1,1\n9,5,1,1\n10,5,1,1\na,4,1,1\n"
    result = read_trace(
        write(tmp_path, text),
        "csv",
        mapping={"id": "id", "submit": "t", "duration": "d", "gpus": "g"},
    )
    assert [r["job_id"] for r in rows(result)] == ["a", "z", "9", "10"]


# ---------------------------------------------------------------- any CSV

CSV_MAP = {"id": "id", "submit": "t", "duration": "d", "gpus": "g", "estimate": "e"}
CSV_HEAD = "id,t,d,g,e\n"
CSV_GOOD = "j0,100,60,1,120\n"


def test_csv_with_every_optional_field(tmp_path: Path) -> None:
    text = (
        "job,who,when,secs,n,limit,state,kind,prio\n"
        "a,team1,1700000100,60,2,120,COMPLETED,h100,5\n"
        "b,,1700000000,30.5,1,,,,\n"
    )
    mapping = {
        "id": "job",
        "tenant": "who",
        "submit": "when",
        "duration": "secs",
        "gpus": "n",
        "estimate": "limit",
        "status": "state",
        "gpu_class": "kind",
        "priority": "prio",
    }
    result = read_trace(write(tmp_path, text), "csv", mapping=mapping)
    assert_normalised(result)
    b, a = rows(result)
    assert b == {
        "job_id": "b",
        "tenant": "",
        "submit_s": 0.0,
        "duration_s": 30.5,
        "gpus": 1,
        "gpu_class": None,
        "estimate_s": None,
        "priority": 0,
        "observed_start_s": None,
        "status": None,
    }
    assert a["tenant"] == "team1"
    assert a["submit_s"] == 100.0
    assert a["estimate_s"] == 120.0
    assert a["status"] == "COMPLETED"
    assert a["gpu_class"] == "h100"
    assert a["priority"] == 5


def test_csv_datetimes_and_start_end(tmp_path: Path) -> None:
    text = (
        "submitted,began,ended,gpus\n"
        "2024-03-01 10:00:00,2024-03-01 10:30:00,2024-03-01 12:30:00,8\n"
        "2024-03-01 09:00:00,2024-03-01 09:00:10,2024-03-01 09:01:10,1\n"
    )
    mapping = {"submit": "submitted", "start": "began", "end": "ended", "gpus": "gpus"}
    result = read_trace(
        write(tmp_path, text), "csv", mapping=mapping, time_format="%Y-%m-%d %H:%M:%S"
    )
    assert_normalised(result)
    first, second = rows(result)
    assert (first["job_id"], first["submit_s"], first["observed_start_s"]) == ("job-1", 0.0, 10.0)
    assert first["duration_s"] == 60.0
    assert (second["submit_s"], second["observed_start_s"]) == (3600.0, 5400.0)
    assert second["duration_s"] == 7200.0


def test_csv_fractional_seconds_in_python_format(tmp_path: Path) -> None:
    text = "s,d,g\n2024-03-01T10:00:00.250,5,1\n2024-03-01T10:00:01.5,5,1\n"
    mapping = {"submit": "s", "duration": "d", "gpus": "g"}
    result = read_trace(
        write(tmp_path, text), "csv", mapping=mapping, time_format="%Y-%m-%dT%H:%M:%S.%f"
    )
    assert [r["submit_s"] for r in rows(result)] == [0.0, 1.25]


def test_csv_cpu_jobs_are_counted_not_skipped(tmp_path: Path) -> None:
    text = CSV_HEAD + CSV_GOOD + "j1,100,60,0,\nj2,100,60,0,\n"
    result = read_trace(write(tmp_path, text), "csv", mapping=CSV_MAP, strict=True)
    assert result.cpu_jobs == 2
    assert result.skipped == {}
    assert result.rows_kept == 1


def test_csv_header_names_match_case_insensitively(tmp_path: Path) -> None:
    text = "Submit,Duration,GPUs\n1,2,3\n"
    result = read_trace(
        write(tmp_path, text),
        "csv",
        mapping={"submit": "submit", "duration": "duration", "gpus": "gpus"},
    )
    assert result.rows_kept == 1


def test_quoted_fields_and_crlf(tmp_path: Path) -> None:
    text = 'id,t,d,g,e\r\n"a,1",100,60,1,\r\n"b ""q""",101,60,2,\r\n'
    result = read_trace(write(tmp_path, text), "csv", mapping=CSV_MAP)
    assert [r["job_id"] for r in rows(result)] == ["a,1", 'b "q"']


# One good row, then one bad row (line 3) per case: the reason counted, and the field
# named by --strict.
BAD_ROWS = [
    pytest.param("j1,100,,1,\n", "missing field", "duration", id="missing-duration"),
    pytest.param(",100,60,1,\n", "missing field", "id", id="missing-id"),
    pytest.param("j1,100,abc,1,\n", "unparsable number", "duration", id="unparsable-duration"),
    pytest.param("j1,100,60,x,\n", "unparsable number", "gpus", id="unparsable-gpus"),
    pytest.param("j1,100,inf,1,\n", "unparsable number", "duration", id="infinite-duration"),
    pytest.param("j1,100,60,1,nan\n", "unparsable number", "estimate", id="nan-estimate"),
    pytest.param("j1,soon,60,1,\n", "unparsable time", "submit", id="unparsable-submit"),
    pytest.param("j1,100,-5,1,\n", "negative duration", "duration", id="negative-duration"),
    pytest.param("j1,100,0,1,\n", "zero duration", "duration", id="zero-duration"),
    pytest.param("j1,100,60,-2,\n", "negative gpus", "gpus", id="negative-gpus"),
    pytest.param("j1,100,60,1.5,\n", "not a whole number", "gpus", id="fractional-gpus"),
    pytest.param("j1,100,60,1e12,\n", "number out of range", "gpus", id="huge-gpus"),
    pytest.param("j1,100,60,1,-1\n", "negative estimate", "estimate", id="negative-estimate"),
    pytest.param("j0,100,60,1,\n", "duplicate id", "id", id="duplicate-id"),
    pytest.param("j1,100,60\n", "wrong number of fields", None, id="short-row"),
    pytest.param("j1,100,60,1,5,extra\n", "wrong number of fields", None, id="long-row"),
]


@pytest.mark.parametrize(("bad", "reason", "field"), BAD_ROWS)
def test_bad_row_is_skipped_and_counted(tmp_path: Path, bad: str, reason: str, field: str) -> None:
    path = write(tmp_path, CSV_HEAD + CSV_GOOD + bad)
    result = read_trace(path, "csv", mapping=CSV_MAP)
    assert result.skipped == {reason: 1}
    assert result.rows_read == 2
    assert [r["job_id"] for r in rows(result)] == ["j0"]
    assert_normalised(result)


@pytest.mark.parametrize(("bad", "reason", "field"), BAD_ROWS)
def test_strict_names_line_and_field(tmp_path: Path, bad: str, reason: str, field: str) -> None:
    path = write(tmp_path, CSV_HEAD + CSV_GOOD + bad)
    with pytest.raises(TraceError) as info:
        read_trace(path, "csv", mapping=CSV_MAP, strict=True)
    message = str(info.value)
    assert message.startswith(f"{path}: line 3")
    assert reason in message
    if field is not None:
        assert f"field '{field}'" in message


def test_start_before_submit(tmp_path: Path) -> None:
    text = "t,s,e,g\n100,110,200,1\n100,90,200,1\n"
    mapping = {"submit": "t", "start": "s", "end": "e", "gpus": "g"}
    result = read_trace(write(tmp_path, text), "csv", mapping=mapping)
    assert result.skipped == {"start before submit": 1}
    with pytest.raises(TraceError, match=r"line 3: field 'start' \(column 's'\)"):
        read_trace(write(tmp_path, text), "csv", mapping=mapping, strict=True)


def test_end_before_start_is_negative_duration(tmp_path: Path) -> None:
    text = "t,s,e,g\n100,110,100,1\n"
    mapping = {"submit": "t", "start": "s", "end": "e", "gpus": "g"}
    result = read_trace(write(tmp_path, text), "csv", mapping=mapping)
    assert result.skipped == {"negative duration": 1}


def test_unparsable_datetime_is_a_time_problem(tmp_path: Path) -> None:
    text = "s,d,g\n2024-03-01 10:00:00,5,1\n01/03/2024,5,1\n"
    result = read_trace(
        write(tmp_path, text),
        "csv",
        mapping={"submit": "s", "duration": "d", "gpus": "g"},
        time_format="%Y-%m-%d %H:%M:%S",
    )
    assert result.skipped == {"unparsable time": 1}


def test_first_bad_row_wins_across_reasons(tmp_path: Path) -> None:
    # Line 3 is ragged (slow path); line 4 has a bad number: strict reports line 3.
    text = CSV_HEAD + CSV_GOOD + "j1,1\nj2,100,abc,1,\n"
    with pytest.raises(TraceError, match="line 3: wrong number of fields"):
        read_trace(write(tmp_path, text), "csv", mapping=CSV_MAP, strict=True)
    text = CSV_HEAD + CSV_GOOD + "j2,100,abc,1,\nj1,1\n"
    with pytest.raises(TraceError, match="line 3: field 'duration'"):
        read_trace(write(tmp_path, text), "csv", mapping=CSV_MAP, strict=True)


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    text = "\n" + CSV_HEAD + "\n" + CSV_GOOD + "\n\nj1,100,zz,1,\n"
    with pytest.raises(TraceError, match="line 7: field 'duration'"):
        read_trace(write(tmp_path, text), "csv", mapping=CSV_MAP, strict=True)


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"id,t,d,g,e\nj\xe9,1,2,3,\nj2,1,x\xff,3,\n")
    result = read_trace(path, "csv", mapping=CSV_MAP)
    assert result.rows_kept == 1
    assert result.skipped == {"unparsable number": 1}


# ---------------------------------------------------------------- mapping and file errors

MAPPING_ERRORS = [
    pytest.param(None, "needs a column mapping", id="no-mapping"),
    pytest.param({"submit": "t", "gpus": "g"}, "lacks duration", id="no-duration"),
    pytest.param({"duration": "d", "gpus": "g"}, "lacks submit", id="no-submit"),
    pytest.param(
        {"submit": "t", "duration": "d", "gpus": "g", "colour": "c"},
        "unknown field",
        id="unknown-field",
    ),
    pytest.param(
        {"submit": "t", "duration": "d", "gpus": "nope"}, "no column 'nope'", id="absent-column"
    ),
    pytest.param({"submit": "t", "end": "d", "gpus": "g"}, "lacks duration", id="end-alone"),
    pytest.param(
        {"submit": "t", "duration": "d", "end": "d", "gpus": "g"},
        "end without start",
        id="end-without-start",
    ),
]


@pytest.mark.parametrize(("mapping", "message"), MAPPING_ERRORS)
def test_mapping_errors(tmp_path: Path, mapping: dict[str, str] | None, message: str) -> None:
    path = write(tmp_path, CSV_HEAD + CSV_GOOD)
    with pytest.raises(TraceError, match=message):
        read_trace(path, "csv", mapping=mapping)


def test_parse_mapping_syntax() -> None:
    assert parse_mapping(["submit=ts", " gpus = n "]) == {"submit": "ts", "gpus": "n"}
    assert parse_mapping([]) is None
    with pytest.raises(TraceError, match="expected FIELD=COLUMN"):
        parse_mapping(["submit"])
    with pytest.raises(TraceError, match="twice"):
        parse_mapping(["submit=a", "submit=b"])


def test_map_is_only_for_csv(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="only for --format csv"):
        read_trace(write(tmp_path, PHILLY), "philly", mapping={"submit": "timestamp"})


def test_bad_time_format_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "s,d,g\n2024-03-01,1,1\n")
    with pytest.raises(TraceError, match="time format"):
        read_trace(
            path, "csv", mapping={"submit": "s", "duration": "d", "gpus": "g"}, time_format="%H"
        )


@pytest.mark.parametrize("fmt", [f.value for f in TraceFormat])
def test_unreadable_files(tmp_path: Path, fmt: str) -> None:
    mapping = {"submit": "t", "duration": "d", "gpus": "g"} if fmt == "csv" else None
    with pytest.raises(TraceError, match="no such file"):
        read_trace(tmp_path / "absent.csv", fmt, mapping=mapping)
    with pytest.raises(TraceError, match="directory"):
        read_trace(tmp_path, fmt, mapping=mapping)
    empty = write(tmp_path, "", "empty.csv")
    with pytest.raises(TraceError):
        read_trace(empty, fmt, mapping=mapping)


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="unknown format 'excel'"):
        read_trace(write(tmp_path, PHILLY), "excel")


def test_header_only_gives_an_empty_trace(tmp_path: Path) -> None:
    result = read_trace(write(tmp_path, "timestamp,duration,num_gpus,gpu_time,cluster\n"))
    assert result.rows_read == 0
    assert result.table.num_rows == 0
    assert result.table.schema.equals(TRACE_SCHEMA)


# ---------------------------------------------------------------- format inference


def test_infer_format(tmp_path: Path) -> None:
    assert infer_format(write(tmp_path, PHILLY, "a.csv")) is TraceFormat.PHILLY
    itp = "job_id,submission_time,duration,num_gpu\n"
    assert infer_format(write(tmp_path, itp, "b.csv")) is TraceFormat.ITP
    assert infer_format(write(tmp_path, SACCT, "c.txt")) is TraceFormat.SACCT
    assert infer_format(tmp_path / "whatever.parquet") is TraceFormat.PARQUET
    table = read_trace(write(tmp_path, PHILLY, "d.csv")).table
    write_trace(table, tmp_path / "no_suffix")
    assert infer_format(tmp_path / "no_suffix") is TraceFormat.PARQUET
    with pytest.raises(TraceError, match="cannot tell the trace format"):
        infer_format(write(tmp_path, "a,b,c\n1,2,3\n", "e.csv"))


def test_mapping_without_format_means_csv(tmp_path: Path) -> None:
    path = write(tmp_path, CSV_HEAD + CSV_GOOD)
    assert read_trace(path, mapping=CSV_MAP).format == "csv"


# ---------------------------------------------------------------- sacct

SACCT = (
    "JobID|User|Account|Partition|Submit|Start|End|Elapsed|State|AllocTRES|ReqTRES|Timelimit\n"
    "100|alice|nlp|gpu|2024-01-15T10:00:00|2024-01-15T10:05:00|2024-01-15T11:05:00|01:00:00"
    "|COMPLETED|billing=8,cpu=8,gres/gpu=4,mem=64G,node=1|cpu=8,gres/gpu=4|1-02:03:04\n"
    "101|bob|vision|gpu|2024-01-15T09:00:00|Unknown|Unknown|00:00:00|CANCELLED by 0||"
    "cpu=1,gres/gpu=8|02:00:00\n"
    "102|bob|vision|gpu|2024-01-15T09:30:00|2024-01-15T09:31:00|Unknown|00:10:00|RUNNING"
    "|cpu=1,gres/gpu:a100=2,gres/gpu:h100=1|cpu=1|30:00\n"
    "103|carol|cpu|cpu|2024-01-15T09:30:00|2024-01-15T09:31:00|2024-01-15T09:41:00|00:10:00"
    "|COMPLETED|cpu=4,mem=4G,node=1|cpu=4|UNLIMITED\n"
    "103.batch|carol|cpu|cpu|2024-01-15T09:30:00|2024-01-15T09:31:00|2024-01-15T09:41:00"
    "|00:10:00|COMPLETED|cpu=4,mem=4G,node=1||\n"
    "104|dan|nlp|gpu|2024-01-15T09:45:00|2024-01-15T09:46:00|2024-01-15T09:56:00|00:10:00"
    "|TIMEOUT|cpu=2,gres/gpumem=80G|cpu=2,gres/gpu=2|Partition_Limit\n"
)


def test_sacct(tmp_path: Path) -> None:
    result = read_trace(write(tmp_path, SACCT, "sacct.txt"), "sacct", strict=True)
    assert_normalised(result)
    assert result.skipped == {"never started": 1, "job step": 1}
    assert result.cpu_jobs == 2  # 103, and 104 whose AllocTRES shows gpumem but no GPUs
    got = {r["job_id"]: r for r in rows(result)}
    assert set(got) == {"100", "102"}
    running, done = got["102"], got["100"]
    # Times are relative to the earliest kept submit (102 at 09:30).
    assert running["submit_s"] == 0.0
    assert running["observed_start_s"] == 60.0
    assert running["duration_s"] == 600.0  # End unknown: Elapsed so far
    assert running["gpus"] == 3  # typed gres entries summed
    assert running["estimate_s"] == 30 * 60.0
    assert running["status"] == "RUNNING"
    assert running["tenant"] == "vision"
    assert done["submit_s"] == 1800.0
    assert done["observed_start_s"] == 2100.0
    assert done["duration_s"] == 3600.0
    assert done["estimate_s"] == 86400 + 2 * 3600 + 3 * 60 + 4.0
    assert done["gpu_class"] is None


def test_sacct_state_keeps_only_the_first_word(tmp_path: Path) -> None:
    text = SACCT.replace("|RUNNING|", "|CANCELLED by 12345|")
    got = {r["job_id"]: r for r in rows(read_trace(write(tmp_path, text, "s.txt"), "sacct"))}
    assert got["102"]["status"] == "CANCELLED"


@pytest.mark.parametrize(
    ("limit", "seconds"),
    [
        ("1-02:03:04", 93784.0),
        ("02:03:04", 7384.0),
        ("30:00", 1800.0),
        ("45", 2700.0),
        ("2-12", 2 * 86400 + 12 * 3600.0),
        ("2-12:30", 2 * 86400 + 12 * 3600 + 30 * 60.0),
        ("UNLIMITED", None),
        ("Partition_Limit", None),
        ("", None),
    ],
)
def test_sacct_time_limits(tmp_path: Path, limit: str, seconds: float | None) -> None:
    text = SACCT.splitlines()[0] + "\n" + SACCT.splitlines()[1].replace("1-02:03:04", limit)
    (row,) = rows(read_trace(write(tmp_path, text, "s.txt"), "sacct", strict=True))
    assert row["estimate_s"] == seconds


def test_sacct_bad_limit_and_tres(tmp_path: Path) -> None:
    lines = SACCT.splitlines()
    text = "\n".join(
        [
            lines[0],
            lines[1],
            lines[1].replace("100|", "200|").replace("1-02:03:04", "soon"),
            lines[1].replace("100|", "201|").replace("gres/gpu=4,mem", "gres/gpu=four,mem"),
            lines[1].replace("100|", "202|").replace("2024-01-15T10:05:00", "yesterday"),
        ]
    )
    result = read_trace(write(tmp_path, text, "s.txt"), "sacct")
    assert result.skipped == {"unparsable time": 2, "unparsable number": 1}
    with pytest.raises(TraceError, match=r"line 3: field 'estimate' \(column 'Timelimit'\)"):
        read_trace(write(tmp_path, text, "s.txt"), "sacct", strict=True)


def test_sacct_requested_gpus_when_nothing_allocated(tmp_path: Path) -> None:
    lines = SACCT.splitlines()
    text = lines[0] + "\n" + lines[1].replace("billing=8,cpu=8,gres/gpu=4,mem=64G,node=1", "")
    (row,) = rows(read_trace(write(tmp_path, text, "s.txt"), "sacct"))
    assert row["gpus"] == 4  # from ReqTRES


def test_sacct_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no column Start"):
        read_trace(write(tmp_path, "JobID|Submit|End|AllocTRES\n1|x|y|z\n", "s.txt"), "sacct")


def test_sacct_with_trailing_delimiter(tmp_path: Path) -> None:
    # `sacct --parsable` (not 2) ends every line with '|'.
    text = "\n".join(line + "|" for line in SACCT.splitlines()) + "\n"
    result = read_trace(write(tmp_path, text, "s.txt"), "sacct")
    assert result.rows_kept == 2


# ---------------------------------------------------------------- Parquet


def test_parquet_round_trip(tmp_path: Path) -> None:
    original = read_trace(write(tmp_path, SACCT, "s.txt"), "sacct").table
    write_trace(original, tmp_path / "t.parquet")
    again = read_trace(tmp_path / "t.parquet")
    assert again.format == "parquet"
    assert again.table.equals(original)


def test_parquet_keeps_optional_columns_and_does_not_rebase(tmp_path: Path) -> None:
    table = pa.table(
        {
            "job_id": ["a", "b"],
            "submit_s": [50.0, 40.0],
            "duration_s": [10.0, 20.0],
            "gpus": pa.array([1, 2], pa.int64()),
            "preemptible": [True, False],
            "unknown": [1, 2],
        }
    )
    pq.write_table(table, tmp_path / "syn.parquet")
    result = read_trace(tmp_path / "syn.parquet")
    got = rows(result)
    assert [(r["job_id"], r["submit_s"], r["preemptible"]) for r in got] == [
        ("b", 40.0, False),
        ("a", 50.0, True),
    ]
    assert result.table.column_names[: len(TRACE_SCHEMA)] == TRACE_SCHEMA.names
    assert "unknown" not in result.table.column_names


def test_parquet_bad_rows_and_columns(tmp_path: Path) -> None:
    table = pa.table(
        {
            "job_id": ["a", "b", None, "d", "e"],
            "submit_s": [0.0, -1.0, 1.0, 2.0, 3.0],
            "duration_s": [1.0, 1.0, 1.0, float("nan"), 1.0],
            "gpus": pa.array([1, 1, 1, 1, 2**40], pa.int64()),
        }
    )
    pq.write_table(table, tmp_path / "bad.parquet")
    result = read_trace(tmp_path / "bad.parquet")
    assert result.skipped == {
        "negative submit": 1,
        "missing field": 1,
        "unparsable number": 1,
        "number out of range": 1,
    }
    with pytest.raises(TraceError, match=r"row 2: field 'submit' \(column 'submit_s'\)"):
        read_trace(tmp_path / "bad.parquet", strict=True)
    pq.write_table(pa.table({"job_id": ["a"]}), tmp_path / "thin.parquet")
    with pytest.raises(TraceError, match="no column submit_s, duration_s, gpus"):
        read_trace(tmp_path / "thin.parquet")
    pq.write_table(
        pa.table({"job_id": ["a"], "submit_s": [[1.0]], "duration_s": [1.0], "gpus": [1]}),
        tmp_path / "typed.parquet",
    )
    with pytest.raises(TraceError, match="column 'submit_s' is list"):
        read_trace(tmp_path / "typed.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(TraceError, match="not a readable Parquet file"):
        read_trace(tmp_path / "junk.parquet")


def test_write_trace_checks_the_schema(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no column"):
        write_trace(pa.table({"job_id": ["a"]}), tmp_path / "x.parquet")
    good = read_trace(write(tmp_path, PHILLY)).table
    with pytest.raises(TraceError, match="cannot write"):
        write_trace(good, tmp_path / "missing-dir" / "x.parquet")


# ---------------------------------------------------------------- inspect


def test_trace_stats(tmp_path: Path) -> None:
    text = "id,t,d,g,who\na,0,3600,1,x\nb,1800,7200,4,y\nc,3600,1800,1,x\nd,7200,3600,8,y\n"
    mapping = {"id": "id", "submit": "t", "duration": "d", "gpus": "g", "tenant": "who"}
    table = read_trace(write(tmp_path, text), "csv", mapping=mapping).table
    fleet = load_fleet("demo")
    total = int(fleet_summary(fleet)["gpus_total"])
    stats = trace_stats(table, fleet_gpus=total)
    gpu_hours = 1 * 1 + 2 * 4 + 0.5 * 1 + 1 * 8
    assert stats["jobs"] == 4
    assert stats["span_s"] == 7200.0
    assert stats["gpu_hours"] == pytest.approx(gpu_hours)
    assert [(s["gpus"], s["jobs"]) for s in stats["gpu_sizes"]] == [(1, 2), (4, 1), (8, 1)]
    assert stats["duration_s"]["p50"] == pytest.approx(3600.0)
    assert stats["duration_s"]["max"] == 7200.0
    assert [(t["tenant"], t["jobs"]) for t in stats["tenants"]] == [("y", 2), ("x", 2)]
    assert stats["tenants"][0]["gpu_hours"] == pytest.approx(16.0)
    assert stats["offered_load"] == pytest.approx(gpu_hours / (total * 2.0))
    assert "observed_queue_s" not in stats


def test_trace_stats_of_empty_and_single_job_traces(tmp_path: Path) -> None:
    empty = read_trace(write(tmp_path, CSV_HEAD), "csv", mapping=CSV_MAP).table
    stats = trace_stats(empty, fleet_gpus=8)
    assert stats["jobs"] == 0
    assert stats["duration_s"]["p50"] is None
    assert stats["offered_load"] is None
    one = read_trace(write(tmp_path, CSV_HEAD + CSV_GOOD), "csv", mapping=CSV_MAP).table
    assert trace_stats(one, fleet_gpus=8)["offered_load"] is None  # zero span


def test_trace_stats_observed_queue(tmp_path: Path) -> None:
    table = read_trace(write(tmp_path, SACCT, "s.txt"), "sacct").table
    queue = trace_stats(table)["observed_queue_s"]
    assert queue["jobs"] == 2
    assert queue["max"] == 300.0  # job 100 waited 5 minutes
