"""Power and energy from the GPU catalogue and PUE, against hand values."""

from __future__ import annotations

import pytest

from aifactory.fleet import catalogue
from aifactory.physics import energy_mwh, energy_mwh_by_model, power_w


def test_power_by_hand() -> None:
    h100 = catalogue()["h100"]  # 700 W busy, 150 W idle
    # (10 * 700 + 5 * 150) * 1.2 = 9,300 W
    assert power_w(10, 5, h100, 1.2) == pytest.approx(9_300.0)
    assert power_w(0, 0, h100, 1.5) == 0.0


def test_energy_by_hand() -> None:
    h100 = catalogue()["h100"]
    # 1,000 GPUs busy for an hour: 1,000 * 3,600 s * 700 W = 2.52e9 J = 0.7 MWh
    assert energy_mwh(1_000 * 3_600, 0, h100, 1.0) == pytest.approx(0.7)
    # the same hour idle, at PUE 1.2: 1,000 * 3,600 * 150 * 1.2 = 6.48e8 J = 0.18 MWh
    assert energy_mwh(0, 1_000 * 3_600, h100, 1.2) == pytest.approx(0.18)


def test_energy_by_model_sums_the_models() -> None:
    models = catalogue()
    busy = {"h100": 3_600.0, "gb200": 7_200.0}
    idle = {"h100": 3_600.0}
    total = energy_mwh_by_model(busy, idle, models, 1.3)
    expected = energy_mwh(3_600, 3_600, models["h100"], 1.3) + energy_mwh(
        7_200, 0, models["gb200"], 1.3
    )
    assert total == pytest.approx(expected)
    with pytest.raises(KeyError, match="tpu"):
        energy_mwh_by_model({"tpu": 1.0}, {}, models, 1.3)


def test_bad_inputs() -> None:
    h100 = catalogue()["h100"]
    with pytest.raises(ValueError, match="pue"):
        power_w(1, 0, h100, 0.9)
    with pytest.raises(ValueError, match=">= 0"):
        energy_mwh(-1, 0, h100, 1.2)
