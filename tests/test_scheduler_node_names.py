"""Node names in a stored placement (the service's rows) map back to the fleet's nodes, and a
name that is not one of them is a ValueError naming it, which the service's forks isolate
(service/jobrows.py: a row the core refuses is left out), never an IndexError."""

from __future__ import annotations

import pytest

from aifactory.scheduler.scheduler import Scheduler
from builders import hgx_topo, make_job


def test_a_placement_goes_to_names_and_back() -> None:
    sched = Scheduler(hgx_topo(2))
    job = make_job("j", "a", gpus=16)
    sched.submit(job, 0.0)
    sched.schedule(0.0)
    named = sched.placement_of(job)
    assert sched.placement_from(named) == list(job.placement)


@pytest.mark.parametrize("name", ["seoul/hgx", "n3", "seoul/hgx/n", "seoul/hgx/nx", "/n1"])
def test_a_name_that_is_no_node_is_refused_naming_it(name: str) -> None:
    with pytest.raises(ValueError, match="placement: node") as info:
        Scheduler(hgx_topo(2)).placement_from([(name, (0,))])
    assert repr(name) in str(info.value)
