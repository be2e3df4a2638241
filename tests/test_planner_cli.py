"""`aifactory plan train`: table and JSON output, and clean errors naming the option."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from aifactory.cli import app

LLAMA3 = ["plan", "train", "--params", "405e9", "--tokens", "15.6e12", "--gpu", "h100"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_json(runner: CliRunner) -> None:
    result = runner.invoke(app, [*LLAMA3, "--gpus", "16384", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["flops"] == pytest.approx(3.8e25, rel=0.05)
    assert data["interruptions_per_day"] * 54 == pytest.approx(419, rel=0.20)
    assert data["gpus"] == 16_384
    assert 0 < data["ettr"] < 1


def test_options_reach_the_planner(runner: CliRunner) -> None:
    args = [*LLAMA3, "--gpus", "16384", "--json", "--mfu", "0.5", "--ckpt-write", "30"]
    args += ["--restart", "300", "--failure-rate", "1e-5", "--pue", "1.1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["mfu"], data["ckpt_write_s"], data["restart_s"]) == (0.5, 30, 300)
    assert (data["failure_rate"], data["pue"]) == (1e-5, 1.1)


def test_table(runner: CliRunner) -> None:
    result = runner.invoke(app, [*LLAMA3, "--gpus", "16384"])
    assert result.exit_code == 0, result.output
    for label in ("training compute", "ETTR", "checkpoint interval, Daly", "MWh", "MW"):
        assert label in result.stdout


def test_solve_for_days(runner: CliRunner) -> None:
    result = runner.invoke(app, [*LLAMA3, "--days", "60", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["days_target"] == 60
    assert data["wall_days"] <= 60
    assert data["gpus"] % 8 == 0
    table = runner.invoke(app, [*LLAMA3, "--days", "60"])
    assert "solved for 60 days" in table.stdout


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        pytest.param(
            ["--gpus", "16384", "--days", "54"], "exactly one of --gpus and --days", id="both"
        ),
        pytest.param([], "exactly one of --gpus and --days", id="neither"),
        pytest.param(["--gpus", "0"], "--gpus: must be > 0", id="zero-gpus"),
        pytest.param(["--days", "-3"], "--days: must be > 0", id="neg-days"),
        pytest.param(["--days", "2"], "--days: cannot finish in 2 days", id="impossible"),
        pytest.param(["--gpus", "8", "--mfu", "1.5"], "--mfu: must be <= 1", id="mfu"),
        pytest.param(
            ["--gpus", "8", "--ckpt-write", "-1"], "--ckpt-write: must be >= 0", id="ckpt"
        ),
        pytest.param(["--gpus", "8", "--restart", "-1"], "--restart: must be >= 0", id="restart"),
        pytest.param(["--gpus", "8", "--failure-rate", "-1"], "--failure-rate", id="rate"),
        pytest.param(["--gpus", "8", "--pue", "0.5"], "--pue: must be >= 1", id="pue"),
    ],
)
def test_bad_values_exit_2_naming_the_option(
    runner: CliRunner, extra: list[str], needle: str
) -> None:
    result = runner.invoke(app, [*LLAMA3, *extra])
    assert result.exit_code == 2, result.output
    assert needle in result.stderr
    assert "Traceback" not in result.output


def test_negative_params_and_unknown_gpu(runner: CliRunner) -> None:
    args = ["plan", "train", "--params", "-1", "--tokens", "1e12", "--gpu", "h100", "--gpus", "8"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "--params: must be > 0" in result.stderr

    args = ["plan", "train", "--params", "1e9", "--tokens", "1e12", "--gpu", "tpu", "--gpus", "8"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "--gpu: unknown GPU model 'tpu'" in result.stderr
    assert "h100" in result.stderr


def test_not_a_number_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(app, [*LLAMA3, "--gpus", "many"])
    assert result.exit_code == 2
    assert "--gpus" in result.output
