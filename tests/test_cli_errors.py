"""User errors end as one line ``error: ...`` and exit 2, before any long work (issue #21 §2).

Each case runs the real command in a fresh interpreter, as a user would, and checks the
whole output: exactly one line, naming the option or the file, and no traceback.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``aifactory ARGS`` in a fresh interpreter (stdout and stderr captured)."""
    return subprocess.run(
        [sys.executable, "-m", "aifactory", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_error_line(got: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Assert exit 2, one ``error:`` line on stderr, nothing on stdout; return the line."""
    assert "Traceback" not in got.stdout + got.stderr
    assert got.returncode == 2, got.stdout + got.stderr
    assert got.stdout == ""
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1, got.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    path = tmp_path / "philly.csv"
    rows = [
        f"2017-10-09 07:{i:02d}:00,{600 + 60 * i}.0,{[1, 2, 8][i % 3]},0,6214e9" for i in range(12)
    ]
    path.write_text("timestamp,duration,num_gpus,gpu_time,cluster\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "results"
    path.write_text("not a directory\n")
    return path


@pytest.mark.parametrize("command", ["simulate", "compare"])
def test_out_that_is_a_file(command: str, trace: Path, a_file: Path) -> None:
    got = cli(command, "--fleet", "demo", "--trace", str(trace), "--out", str(a_file))
    one_error_line(got, "--out", str(a_file), "not a directory")
    assert a_file.read_text() == "not a directory\n"


def test_out_under_a_file(trace: Path, a_file: Path) -> None:
    got = cli("simulate", "--fleet", "demo", "--trace", str(trace), "--out", str(a_file / "sub"))
    one_error_line(got, "--out", "is not a directory")


def test_run_out_that_is_a_file(a_file: Path) -> None:
    # checked before the workload is synthesised (which alone takes seconds)
    one_error_line(cli("run", "--days", "1", "--out", str(a_file), timeout=30), "--out")


def test_sweep_out_that_is_a_file(a_file: Path) -> None:
    one_error_line(cli("sweep", "korea-2030", "--out", str(a_file)), "--out")


def test_serve_unreachable_database(tmp_path: Path) -> None:
    # port 1 on the loopback: nothing listens there, the connection is refused at once
    url = "postgresql+psycopg://aifactory:secret@127.0.0.1:1/test"
    got = cli(
        "serve",
        "--database-url",
        url,
        "--executor",
        "noop",
        "--data-dir",
        str(tmp_path),
        "--port",
        str(free_port()),
    )
    line = one_error_line(got, "--database-url", "127.0.0.1:1", "refused")
    assert "secret" not in line


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_serve_busy_port(tmp_path: Path, busy_port: int) -> None:
    db = tmp_path / "aifactory.db"
    got = cli(
        "serve", "--database-url", f"sqlite:///{db}", "--executor", "noop",
        "--data-dir", str(tmp_path), "--port", str(busy_port),
    )  # fmt: skip
    one_error_line(got, "--port", f"127.0.0.1:{busy_port}")
    assert not db.exists()  # refused before the database was created or migrated


MAP = ["--format", "csv", "-m", "submit=submit", "-m", "duration=duration", "-m", "gpus=gpus"]


def test_import_of_only_bad_rows(tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_text("id,submit,duration,gpus\n1,0,-5,1\n2,x,10,1\n")
    out = tmp_path / "bad.parquet"
    got = cli("trace", "import", str(src), *MAP, "--out", str(out))
    one_error_line(got, "line 2", "negative duration")
    assert not out.exists()


def test_import_of_only_cpu_jobs(tmp_path: Path) -> None:
    src = tmp_path / "cpu.csv"
    src.write_text("id,submit,duration,gpus\n1,0,5,0\n2,1,10,0\n")
    got = cli("trace", "import", str(src), *MAP, "--out", str(tmp_path / "cpu.parquet"))
    one_error_line(got, "no GPU jobs in 2 rows (2 CPU jobs)")


def test_import_with_some_bad_rows_still_writes(tmp_path: Path) -> None:
    src = tmp_path / "mixed.csv"
    src.write_text("id,submit,duration,gpus\n1,0,-5,1\n2,3,10,1\n")
    out = tmp_path / "mixed.parquet"
    got = cli("trace", "import", str(src), *MAP, "--out", str(out))
    assert got.returncode == 0, got.stderr
    assert "wrote 1 jobs" in got.stdout
    assert out.exists()


def test_unreadable_output_is_one_line(tmp_path: Path) -> None:
    # trace import writes a single file: a directory in its place is an OSError, reported
    src = tmp_path / "ok.csv"
    src.write_text("id,submit,duration,gpus\n1,0,5,1\n")
    out = tmp_path / "a-dir.parquet"
    out.mkdir()
    one_error_line(cli("trace", "import", str(src), *MAP, "--out", str(out)))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["serve", "--port", "0"], "--port"),
        (["simulate", "--trace", "x.csv"], "Missing option '--fleet'"),
        (["no-such-command"], "No such command"),
    ],
    ids=["bad value", "missing option", "unknown command"],
)
def test_usage_errors_are_one_line(args: list[str], needle: str) -> None:
    line = one_error_line(cli(*args), needle)
    assert "--help" in line  # where to look next


@pytest.mark.parametrize("command", ["simulate", "compare"])
def test_a_trace_without_jobs_is_not_simulated(command: str, tmp_path: Path) -> None:
    src = tmp_path / "philly.csv"
    src.write_text("timestamp,duration,num_gpus,gpu_time,cluster\nxx,1,1,1,a\n")
    got = cli(command, "--fleet", "demo", "--trace", str(src))
    one_error_line(got, "line 2", "unparsable time")
