"""`plan train --simulate`: the planned run through the twin agrees with the formula."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from aifactory.cli import app
from aifactory.fleet import catalogue
from aifactory.physics import plan_training
from aifactory.twin.campaign import simulate_training

# A 70B model on 1,024 H100 at 10x the Llama 3 rate: ~130 interruptions in ~27 days, so
# the failure terms matter, yet each run takes well under a second.
SMALL = {"params": 70e9, "tokens": 2e12, "gpus": 1_024, "failure_rate": 2e-4}


def test_simulated_finish_agrees_with_the_planned_wall_time() -> None:
    h100 = catalogue()["h100"]
    plan = plan_training(gpu=h100, **SMALL)
    result = simulate_training(plan, h100, 3)
    assert result.unfinished == 0
    assert result.mean_days is not None
    # The plan is a first-order expectation; seed-to-seed spread is ~1% here. 5% bound.
    assert result.mean_days == pytest.approx(plan.wall_days, rel=0.05)
    assert result.mean_interruptions == pytest.approx(plan.expected_interruptions, rel=0.2)
    assert result.spare_gpus > 0
    again = simulate_training(plan, h100, 3)
    assert again.finish_days == result.finish_days


def test_without_failures_the_twin_finishes_at_the_ideal_time() -> None:
    h100 = catalogue()["h100"]
    plan = plan_training(gpu=h100, **{**SMALL, "failure_rate": 0.0})
    result = simulate_training(plan, h100, 1)
    assert result.finish_days == [pytest.approx(plan.ideal_days)]
    assert result.mean_interruptions == 0


def test_bad_seed_count() -> None:
    h100 = catalogue()["h100"]
    plan = plan_training(gpu=h100, **SMALL)
    with pytest.raises(ValueError, match="seeds"):
        simulate_training(plan, h100, 0)


def test_cli_simulate() -> None:
    runner = CliRunner()
    args = ["plan", "train", "--params", "70e9", "--tokens", "2e12", "--gpu", "h100"]
    args += ["--gpus", "1024", "--failure-rate", "2e-4"]
    result = runner.invoke(app, [*args, "--simulate", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["simulation"]["seeds"] == 2
    assert len(data["simulation"]["finish_days"]) == 2
    table = runner.invoke(app, [*args, "--simulate", "1"])
    assert table.exit_code == 0, table.output
    assert "Through the twin" in table.stdout
    bad = runner.invoke(app, [*args, "--simulate", "0"])
    assert bad.exit_code == 2
    assert "--simulate: must be >= 1" in bad.stderr
