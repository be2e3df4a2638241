"""``simulate`` ends its process without the interpreter's teardown (cli.skip_teardown):
what a normal exit would still have done -- the exit handlers, flushing the streams, the
files complete on disk, the exit status -- is all there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

# The console entry point with an exit handler of the kind a library registers.
ENTRY = """
import atexit, sys
atexit.register(lambda: sys.stderr.write("exit handler ran\\n"))
from aifactory.cli import main
sys.argv = ["aifactory", *sys.argv[1:]]
main()
"""


def _trace(tmp_path: Path) -> Path:
    path = tmp_path / "philly.csv"
    rows = [
        f"2017-10-09 07:{i:02d}:00,{600 + 60 * i}.0,{[1, 2, 8][i % 3]},0,6214e9" for i in range(12)
    ]
    path.write_text("timestamp,duration,num_gpus,gpu_time,cluster\n" + "\n".join(rows) + "\n")
    return path


def test_simulate_leaves_complete_files_and_runs_exit_handlers(tmp_path: Path) -> None:
    out = tmp_path / "out"
    got = subprocess.run(
        [sys.executable, "-c", ENTRY, "simulate", "--fleet", "demo", "--trace",
         str(_trace(tmp_path)), "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert got.stderr.splitlines()[-1] == "exit handler ran"
    printed = json.loads(got.stdout)  # the whole summary reached stdout (flushed)
    assert printed == json.loads((out / "summary.json").read_text())
    assert pq.read_table(out / "jobs.parquet").num_rows == 12
    assert pq.read_table(out / "timeseries.parquet").num_rows > 0
    assert (out / "report.html").read_text().rstrip().endswith("</html>")


def test_a_failing_simulate_still_exits_with_its_status(tmp_path: Path) -> None:
    got = subprocess.run(
        [sys.executable, "-c", ENTRY, "simulate", "--fleet", "demo", "--trace",
         str(tmp_path / "missing.csv")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert got.returncode != 0
    assert "exit handler ran" in got.stderr


# The console entry point, reporting from an exit handler whether the collector was on.
ENTRY_GC = """
import atexit, gc, sys
atexit.register(lambda: sys.stderr.write(f"collector enabled: {gc.isenabled()}\\n"))
from aifactory.cli import main
sys.argv = ["aifactory", *sys.argv[1:]]
main()
"""


def test_simulate_under_main_leaves_the_collector_off(tmp_path: Path) -> None:
    """A one-shot simulate run by the console entry point turns the cyclic collector off
    for the rest of its process (cli.pause_collector): its run is never walked again."""
    got = subprocess.run(
        [sys.executable, "-c", ENTRY_GC, "simulate", "--fleet", "demo", "--trace",
         str(_trace(tmp_path)), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert got.stderr.splitlines()[-1] == "collector enabled: False"


def test_simulate_in_process_leaves_the_collector_as_it_was(tmp_path: Path) -> None:
    """Run in-process (the Typer app, as tests and notebooks do), simulate must not turn
    the caller's collector off."""
    import gc  # noqa: PLC0415

    from typer.testing import CliRunner  # noqa: PLC0415

    from aifactory.cli import app  # noqa: PLC0415

    assert gc.isenabled()
    got = CliRunner().invoke(
        app, ["simulate", "--fleet", "demo", "--trace", str(_trace(tmp_path)), "--json"]
    )
    assert got.exit_code == 0, got.output
    assert gc.isenabled()
