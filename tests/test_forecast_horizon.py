"""A forecast's horizon and a twin's sampling interval are bounded where they are taken.

A what-if with a horizon of 1e-138 days hung the service's forecast (found by
schemathesis through POST /v1/twin/whatif): the twin sampled once per horizon, and an
interval below a float's step at the run's times never advances the sampler's clock.
"""

from __future__ import annotations

import math

import pytest

from aifactory.twin.simulator import TwinConfig


@pytest.mark.parametrize("interval", [0.0, -5.0, 1e-133, 0.5, math.nan, math.inf])
def test_a_twin_refuses_a_sampling_interval_it_could_not_advance_by(interval: float) -> None:
    with pytest.raises(ValueError, match="sample_interval_s"):
        TwinConfig(sample_interval_s=interval)


def test_a_twin_takes_the_intervals_it_is_given() -> None:
    assert TwinConfig(sample_interval_s=1.0).sample_interval_s == 1.0
    assert TwinConfig().sample_interval_s == 300.0
