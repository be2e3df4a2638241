"""The Python API (issue #21 §3): ``import aifactory`` gives load_fleet, read_trace,
simulate, compare and plan_training, the same runs as the CLI's; the notebook-style
example in docs/examples runs as written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import aifactory
from aifactory.cli import app
from aifactory.fleet import SpecError
from aifactory.workload.synth import synthesize

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "notebook.py"


@pytest.fixture(scope="module")
def trace_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "w.parquet"
    pq.write_table(synthesize(aifactory.load_fleet("demo"), 0.1, 0.5, 3), path)
    return path


def without_wall(summary: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in summary.items() if k not in ("wall_s", "trace")}


def test_the_names_are_there_and_documented() -> None:
    for name in ("load_fleet", "read_trace", "simulate", "compare", "plan_training"):
        assert name in aifactory.__all__
        assert callable(getattr(aifactory, name))
        assert getattr(aifactory, name).__doc__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = aifactory.nope  # the lazy lookup refuses what the API does not have


def test_simulate_is_the_clis_simulate(trace_path: Path) -> None:
    result = aifactory.simulate(fleet="demo", trace=trace_path, policy="sjf", seed=4)
    cli = CliRunner().invoke(
        app, ["simulate", "--fleet", "demo", "--trace", str(trace_path), "--policy", "sjf",
              "--seed", "4", "--json"],
    )  # fmt: skip
    assert cli.exit_code == 0, cli.output
    assert without_wall(result.summary) == without_wall(json.loads(cli.stdout))
    assert result.jobs().num_rows == result.jobs_frame().height == result.summary["jobs"]
    assert result.timeseries().num_rows > 0


def test_inputs_as_objects_give_the_same_run(trace_path: Path) -> None:
    by_path = aifactory.simulate(fleet="demo", trace=trace_path, seed=1)
    fleet = aifactory.load_fleet("demo")
    by_object = aifactory.simulate(fleet=fleet, trace=aifactory.read_trace(trace_path), seed=1)
    assert without_wall(by_path.summary) == without_wall(by_object.summary)


def test_compare_and_reports(trace_path: Path, tmp_path: Path) -> None:
    both = aifactory.compare(fleet="demo", trace=trace_path, policies=["fifo", "las"])
    assert [r["policy"] for r in both.rows] == ["fifo", "las"]
    assert set(both.results) == {"fifo", "las"}
    assert both.report(tmp_path / "cmp").name == "compare.html"
    assert both.results["las"].report(tmp_path / "las").is_file()
    assert (tmp_path / "las" / "summary.json").is_file()


def test_bad_options_name_themselves(trace_path: Path) -> None:
    with pytest.raises(TypeError, match=r"unknown option.*polcy"):
        aifactory.simulate(fleet="demo", trace=trace_path, polcy="las")
    with pytest.raises(SpecError, match="gpu: unknown model 'h1000'"):
        aifactory.plan_training(70e9, 2e12, "h1000", gpus=8)
    plan = aifactory.plan_training(70e9, 2e12, "h100", gpus=1024)
    assert plan.gpus == 1024
    assert plan.wall_days > plan.ideal_days > 0


def test_the_notebook_example_runs(tmp_path: Path) -> None:
    got = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert got.returncode == 0, got.stderr
    assert "avg JCT" in got.stdout
    assert (tmp_path / "las" / "report.html").is_file()
    assert (tmp_path / "compare" / "compare.html").is_file()
