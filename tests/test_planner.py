"""The training planner against Llama 3's published figures, and its solve-for-GPUs inverse."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aifactory.fleet import SpecError, catalogue
from aifactory.physics import optimal_ettr, plan_training
from aifactory.physics.planner import Plan

ISSUE_KEYS = [
    "flops",
    "ideal_days",
    "interruptions_per_day",
    "expected_interruptions",
    "ckpt_interval_young_s",
    "ckpt_interval_daly_s",
    "ettr",
    "wall_days",
    "energy_mwh",
    "power_mw",
]
DAY = 86_400.0


def llama3(**over: Any) -> Plan:
    """Llama 3 405B: 405e9 parameters, 15.6e12 tokens, 16,384 H100 (facts.md §2-3)."""
    kwargs: dict[str, Any] = {"gpus": 16_384}
    kwargs.update(over)
    return plan_training(405e9, 15.6e12, catalogue()["h100"], **kwargs)


def test_training_compute_matches_llama3() -> None:
    assert llama3().flops == pytest.approx(3.8e25, rel=0.05)


def test_interruptions_over_54_days_match_llama3() -> None:
    assert llama3().interruptions_per_day * 54 == pytest.approx(419, rel=0.20)


def test_json_keys_are_the_issues_then_extras() -> None:
    keys = list(llama3().model_dump(mode="json"))
    assert keys[: len(ISSUE_KEYS)] == ISSUE_KEYS


def test_figures_follow_from_the_model() -> None:
    plan = llama3()
    h100 = catalogue()["h100"]
    ideal_s = 6 * 405e9 * 15.6e12 / (16_384 * h100.bf16_tflops * 1e12 * 0.4)
    assert plan.ideal_days == pytest.approx(ideal_s / DAY)
    assert plan.mttf_h == pytest.approx(1 / (16_384 * 2e-5))
    mttf_s = 3600 / (16_384 * 2e-5)
    assert plan.ettr == pytest.approx(optimal_ettr(60, mttf_s, 600))
    assert plan.wall_days == pytest.approx(plan.ideal_days / plan.ettr)
    assert plan.expected_interruptions == pytest.approx(plan.interruptions_per_day * plan.wall_days)
    assert plan.ckpt_interval_young_s == pytest.approx(math.sqrt(2 * 60 * mttf_s))
    assert plan.ckpt_interval_daly_s is not None
    assert plan.ckpt_interval_daly_s < math.sqrt(2 * 60 * mttf_s)


def test_power_and_energy_bounds() -> None:
    plan = llama3(pue=1.1)
    h100 = catalogue()["h100"]
    assert plan.power_mw == pytest.approx(16_384 * h100.busy_watts * 1.1 / 1e6)
    gpu_s = plan.gpus * plan.wall_days * DAY
    all_busy = gpu_s * h100.busy_watts * 1.1 / 3.6e9
    all_idle = gpu_s * h100.idle_watts * 1.1 / 3.6e9
    assert all_idle < plan.energy_mwh < all_busy
    # GPUs are busy at least while doing useful work (ETTR of the wall time).
    assert plan.energy_mwh >= plan.ettr * all_busy


def test_without_failures_the_wall_time_is_ideal() -> None:
    plan = llama3(failure_rate=0.0)
    assert plan.ettr == 1.0
    assert plan.wall_days == pytest.approx(plan.ideal_days)
    assert plan.expected_interruptions == 0.0
    assert plan.ckpt_interval_young_s is None
    assert plan.mttf_h is None
    dumped = plan.model_dump(mode="json")
    assert dumped["ckpt_interval_daly_s"] is None


def test_bigger_jobs_fail_more_and_waste_more() -> None:
    small, big = llama3(gpus=4_096), llama3(gpus=32_768)
    assert big.interruptions_per_day == pytest.approx(8 * small.interruptions_per_day)
    assert big.ettr < small.ettr
    assert big.wall_days < small.wall_days


@pytest.mark.parametrize(
    ("gpu", "days"),
    [("h100", 90.0), ("h100", 54.0), ("gb200", 30.0), ("b200", 20.0), ("a100-80g", 365.0)],
)
def test_solved_gpus_finish_within_the_deadline_and_one_domain_fewer_does_not(
    gpu: str, days: float
) -> None:
    model = catalogue()[gpu]
    plan = plan_training(405e9, 15.6e12, model, days=days)
    unit = model.nvlink_domain_gpus
    assert plan.gpus % unit == 0
    assert plan.days_target == days
    assert plan.wall_days <= days
    fewer = plan_training(405e9, 15.6e12, model, gpus=plan.gpus - unit)
    assert fewer.wall_days > days
    same = plan_training(405e9, 15.6e12, model, gpus=plan.gpus)
    assert same.wall_days == plan.wall_days


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    params=st.floats(1e9, 1e12),
    tokens=st.floats(1e11, 3e13),
    days=st.floats(1, 200),
    gpu=st.sampled_from(["h100", "gb200", "b200", "h200"]),
    rate=st.sampled_from([0.0, 1e-5, 2e-5, 5e-5]),
)
def test_inverse_property(params: float, tokens: float, days: float, gpu: str, rate: float) -> None:
    model = catalogue()[gpu]
    problems: list[str] = []
    try:
        plan = plan_training(params, tokens, model, days=days, failure_rate=rate)
    except SpecError as exc:
        problems = exc.problems
    assert all("cannot finish" in p for p in problems)
    assume(not problems)
    assert plan.wall_days <= days * (1 + 1e-12)
    if plan.gpus > model.nvlink_domain_gpus:
        fewer = plan_training(
            params, tokens, model, gpus=plan.gpus - model.nvlink_domain_gpus, failure_rate=rate
        )
        assert fewer.wall_days > days


def test_an_impossible_deadline_says_what_is_possible() -> None:
    with pytest.raises(SpecError, match=r"days: cannot finish in 3 days on h100: the fastest is"):
        llama3(gpus=None, days=3)


def test_a_job_too_big_to_progress() -> None:
    with pytest.raises(SpecError, match="gpus: on 5,000,000 GPUs the job makes no progress"):
        llama3(gpus=5_000_000)


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"gpus": 0}, "gpus"),
        ({"gpus": None}, "gpus: give exactly one"),
        ({"days": 10}, "gpus: give exactly one"),
        ({"gpus": None, "days": -1}, "days"),
        ({"mfu": 0}, "mfu"),
        ({"mfu": 1.5}, "mfu"),
        ({"ckpt_write_s": -1}, "ckpt_write_s"),
        ({"restart_s": -1}, "restart_s"),
        ({"failure_rate": -2e-5}, "failure_rate"),
        ({"failure_rate": math.inf}, "failure_rate"),
        ({"pue": 0.8}, "pue"),
    ],
)
def test_bad_inputs_name_the_field(over: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        llama3(**over)
    assert any(p.startswith(field) for p in info.value.problems), info.value.problems


def test_bad_sizes_name_the_field() -> None:
    h100 = catalogue()["h100"]
    for kwargs, field in [
        ({"params": -405e9, "tokens": 1e12}, "params"),
        ({"params": 405e9, "tokens": 0.0}, "tokens"),
        ({"params": math.nan, "tokens": 1e12}, "params"),
    ]:
        with pytest.raises(SpecError, match=field):
            plan_training(gpu=h100, gpus=8, **kwargs)
