"""`aifactory trace import|inspect` through the CLI: output, files written, exit 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from aifactory.cli import app
from aifactory.fleet import fleet_summary, load_fleet
from aifactory.workload.schema import TRACE_SCHEMA

runner = CliRunner()

CSV = "job,when,secs,n,team\na,1000,3600,2,x\nb,1600,60,0,y\nc,4600,oops,1,y\nd,8200,7200,4,y\n"
MAP = [
    "--map",
    "id=job",
    "--map",
    "submit=when",
    "--map",
    "duration=secs",
    "--map",
    "gpus=n",
    "--map",
    "tenant=team",
]


def write(tmp_path: Path, text: str, name: str = "jobs.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_import_writes_parquet_and_reports_counts(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    res = runner.invoke(
        app,
        ["trace", "import", str(write(tmp_path, CSV)), "--format", "csv", *MAP, "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    assert "unparsable number" in res.output
    assert "CPU jobs" in res.output
    table = pq.read_table(out)
    assert table.schema.equals(TRACE_SCHEMA)
    assert table.column("job_id").to_pylist() == ["a", "d"]


def test_import_strict_fails_with_line_and_field(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    path = write(tmp_path, CSV)
    res = runner.invoke(
        app, ["trace", "import", str(path), "-f", "csv", *MAP, "--strict", "--out", str(out)]
    )
    assert res.exit_code == 2
    assert "line 4" in res.output
    assert "field 'duration'" in res.output
    assert "Traceback" not in res.output
    assert not out.exists()


def test_import_bad_inputs_exit_2(tmp_path: Path) -> None:
    out = str(tmp_path / "o.parquet")
    path = str(write(tmp_path, CSV))
    cases = [
        (["trace", "import", path, "--format", "csv", "--out", out], "needs a column mapping"),
        (["trace", "import", path, "--format", "csv", "--map", "submit", "--out", out], "FIELD="),
        (["trace", "import", path, "--format", "xls", "--out", out], "unknown format"),
        (["trace", "import", path, "--out", out], "cannot tell the trace format"),
        (["trace", "import", str(tmp_path / "nope.csv"), "--out", out], "no such file"),
        (["trace", "import", path, *MAP, "--map", "colour=team", "--out", out], "unknown field"),
    ]
    for args, message in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert "error:" in res.output
        assert message in res.output, (args, res.output)
        assert "Traceback" not in res.output


def test_inspect_json_with_fleet(tmp_path: Path) -> None:
    path = write(tmp_path, CSV)
    res = runner.invoke(app, ["trace", "inspect", str(path), *MAP, "--fleet", "demo", "--json"])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.stdout)
    assert stats["jobs"] == 2
    assert stats["import"] == {
        "format": "csv",
        "rows_read": 4,
        "skipped": {"unparsable number": 1},
        "cpu_jobs": 1,
    }
    gpu_hours = 2 * 1.0 + 4 * 2.0
    total = int(fleet_summary(load_fleet("demo"))["gpus_total"])
    assert stats["gpu_hours"] == gpu_hours
    assert stats["offered_load"] == gpu_hours / (total * 2.0)
    assert [t["tenant"] for t in stats["tenants"]] == ["y", "x"]


def test_inspect_tables_on_an_imported_parquet(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    runner.invoke(app, ["trace", "import", str(write(tmp_path, CSV)), *MAP, "--out", str(out)])
    res = runner.invoke(app, ["trace", "inspect", str(out), "--fleet", "demo"])
    assert res.exit_code == 0, res.output
    for expected in ("2 GPU jobs", "Job sizes", "Tenants", "offered load on demo", "p99"):
        assert expected in res.output


def test_inspect_bad_fleet_and_bad_file_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, CSV)
    res = runner.invoke(app, ["trace", "inspect", str(path), *MAP, "--fleet", "no-such-fleet"])
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"\x00\x01garbage")
    res = runner.invoke(app, ["trace", "inspect", str(junk)])
    assert res.exit_code == 2
    assert "not a readable Parquet file" in res.output
