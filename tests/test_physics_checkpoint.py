"""Young's and Daly's checkpoint intervals and the lost-time model, against hand values."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aifactory.physics import (
    daly_interval_s,
    expected_ettr,
    lost_fraction,
    optimal_ettr,
    young_interval_s,
)


def test_young_by_hand() -> None:
    # sqrt(2 * 60 * 10,000) = sqrt(1.2e6) = 1,095.445
    assert young_interval_s(60, 10_000) == pytest.approx(1095.445, abs=1e-3)
    assert young_interval_s(0, 10_000) == 0.0


def test_daly_by_hand() -> None:
    # d/2M = 0.003; sqrt(0.003)/3 = 0.018257; 0.003/9 = 0.000333;
    # 1,095.445 * 1.018591 - 60 = 1,055.810
    assert daly_interval_s(60, 10_000) == pytest.approx(1055.810, abs=1e-2)


def test_daly_when_the_write_costs_two_mttfs_or_more() -> None:
    assert daly_interval_s(100, 50) == 50
    assert daly_interval_s(300, 50) == 50
    just_below = daly_interval_s(99.99, 50)
    assert just_below > 0
    assert math.isfinite(just_below)


def test_lost_fraction_by_hand() -> None:
    # 60/1000 + 1000/20000 + 600/10000 = 0.06 + 0.05 + 0.06
    assert lost_fraction(1000, 60, 10_000, 600) == pytest.approx(0.17)
    assert expected_ettr(1000, 60, 10_000, 600) == pytest.approx(0.83)


def test_ettr_clips_at_zero_when_the_job_cannot_progress() -> None:
    assert lost_fraction(100, 60, 100, 600) > 1
    assert expected_ettr(100, 60, 100, 600) == 0.0


def test_no_failures() -> None:
    assert math.isinf(young_interval_s(60, math.inf))
    assert math.isinf(daly_interval_s(60, math.inf))
    assert lost_fraction(math.inf, 60, math.inf, 600) == 0.0
    assert lost_fraction(1000, 60, math.inf, 600) == pytest.approx(0.06)
    assert optimal_ettr(60, math.inf, 600) == 1.0


def test_free_checkpoints_lose_only_restarts() -> None:
    assert optimal_ettr(0, 10_000, 600) == pytest.approx(0.94)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        pytest.param(lambda: young_interval_s(-1, 100), "write_s", id="neg-write"),
        pytest.param(lambda: young_interval_s(60, 0), "mttf_s", id="zero-mttf"),
        pytest.param(lambda: daly_interval_s(math.nan, 100), "write_s", id="nan"),
        pytest.param(lambda: lost_fraction(0, 60, 100, 10), "interval_s", id="zero-interval"),
        pytest.param(lambda: lost_fraction(10, 60, 100, -1), "restart_s", id="neg-restart"),
    ],
)
def test_bad_inputs_name_the_argument(call: Callable[[], float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        call()


@given(
    write=st.floats(1, 1_000),
    mttf=st.floats(1_000, 1e7),
    restart=st.floats(0, 1_000),
    factor=st.floats(0.05, 20),
)
def test_young_minimises_the_first_order_loss(
    write: float, mttf: float, restart: float, factor: float
) -> None:
    """d/t + t/2M is minimised at t = sqrt(2dM); Daly's interval is within a hair of it."""
    young = young_interval_s(write, mttf)
    best = lost_fraction(young, write, mttf, restart)
    assert lost_fraction(young * factor, write, mttf, restart) >= best - 1e-12
    daly = daly_interval_s(write, mttf)
    if write < mttf / 10:  # Daly's first-order regime
        assert lost_fraction(daly, write, mttf, restart) <= best + 0.01
