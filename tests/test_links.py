"""The inter-site network model: paths and max-min fair sharing, with hand-computed times."""

from __future__ import annotations

import pytest

from aifactory.fleet import load_fleet
from aifactory.physics.links import BYTES_PER_GBIT, INF, Network, Transfers, max_min_rates

TB = 1e12


def line() -> Network:
    """a -100- b -10- c, and a -40- c directly (Gbit/s; latency 1 ms each)."""
    return Network(
        ["a", "b", "c", "d"],
        [("a", "b", 100.0, 1.0), ("b", "c", 10.0, 1.0), ("a", "c", 40.0, 1.0)],
    )


def test_path_fewest_hops_then_widest() -> None:
    net = line()
    assert net.path(0, 0) == ()
    assert net.path(0, 2) == (2,)  # one hop a-c beats two hops a-b-c
    assert net.path(1, 2) == (1,)
    assert net.path(0, 3) is None  # d has no link
    # Two 2-hop paths from b to ... : add e joined to a (100) and c (10): b->e is
    # b-a-e (widest 100) rather than b-c-e (10).
    net = Network(
        ["a", "b", "c", "e"],
        [
            ("a", "b", 100.0, 0.0),
            ("b", "c", 10.0, 0.0),
            ("a", "e", 100.0, 0.0),
            ("c", "e", 100.0, 0.0),
        ],
    )
    assert net.path(1, 3) == (0, 2)
    assert net.bottleneck((0, 2)) == 100.0 * BYTES_PER_GBIT


def test_alone_time_is_size_over_bottleneck_plus_latency() -> None:
    net = line()
    # 1 TB over the 10 Gbit/s b-c link: 1e12 / 1.25e9 = 800 s, plus 1 ms.
    assert net.alone_s(TB, (1,)) == pytest.approx(800.001)


def test_two_transfers_on_one_link_get_half_each() -> None:
    assert max_min_rates([(0,), (0,)], [10.0]) == [5.0, 5.0]


def test_a_transfer_bottlenecked_elsewhere_frees_share() -> None:
    # Link 0 (10) is shared by x (only on 0) and y (on 0 and on link 1 of 2): y is held
    # to 2 by link 1, so x gets the 8 left on link 0, not 5.
    assert max_min_rates([(0,), (0, 1)], [10.0, 2.0]) == [8.0, 2.0]
    # Three on one link, one of them also on a narrow one: 1, then (9 - 1) / 2 each.
    assert max_min_rates([(0, 1), (0,), (0,)], [9.0, 1.0]) == [1.0, 4.0, 4.0]
    assert max_min_rates([()], []) == [float("inf")]


def test_transfers_recompute_when_one_starts_and_ends() -> None:
    # One 10 Gbit/s link (1.25e9 B/s). x: 2.5e12 B at t=0; y: 1.25e12 B at t=1000.
    # x alone 0..1000: moves 1.25e12, 1.25e12 left. Then both at 6.25e8 B/s:
    # y needs 2000 s -> done at 3000; x moved 1.25e12 more meanwhile -> done at 3000 too.
    # Make y smaller to separate them: y = 0.625e12 -> done at 1000 + 1000 = 2000;
    # x then has 1.25e12 - 0.625e12 = 0.625e12 left at full rate: 500 s -> 2500.
    net = Network(["a", "b"], [("a", "b", 10.0, 0.0)])
    tr = Transfers(net)
    tr.start("x", 2.5e12, (0,), 0.0)
    assert tr.next_done_s() == pytest.approx(2000.0)
    tr.start("y", 0.625e12, (0,), 1000.0)
    assert tr.rate("x") == tr.rate("y") == pytest.approx(6.25e8)
    assert tr.next_done_s() == pytest.approx(2000.0)
    assert tr.done(2000.0) == ["y"]
    assert tr.next_done_s() == pytest.approx(2500.0)
    assert tr.done(2500.0) == ["x"]
    assert len(tr) == 0
    assert tr.link_bytes[0] == pytest.approx(3.125e12)
    assert tr.done(2600.0) == []


def test_epoch_marks_stale_predictions() -> None:
    net = Network(["a", "b"], [("a", "b", 10.0, 0.0)])
    tr = Transfers(net)
    tr.start(1, 1e9, (0,), 0.0)
    e = tr.epoch
    tr.start(2, 1e9, (0,), 0.1)
    assert tr.epoch != e
    with pytest.raises(ValueError, match="already in flight"):
        tr.start(2, 1.0, (0,), 0.1)
    with pytest.raises(ValueError, match="at least one link"):
        tr.start(3, 1.0, (), 0.1)


def test_korea_paths_take_the_widest_of_the_shortest() -> None:
    # Pyeongtaek to Jeonnam: two 4-hop routes, via Gwangju (every link 3,200 Gbit/s) and
    # via Ulsan (Ulsan-Jeonnam 1,600): the Gwangju route.
    net = Network.of_fleet(load_fleet("korea-2025"))
    idx = net.site_index
    path = net.path(idx["pyeongtaek"], idx["jeonnam"])
    assert path is not None
    names = [f"{net.names[net.hops[k].a]}-{net.names[net.hops[k].b]}" for k in path]
    assert names == ["pyeongtaek-sejong", "sejong-daejeon", "daejeon-gwangju", "gwangju-jeonnam"]
    # 100 TB alone on it: 1e14 / 4e11 B/s = 250 s, plus 0.5 + 0.2 + 1.1 + 0.6 ms.
    assert net.alone_s(1e14, path) == pytest.approx(250.0024)


def test_steady_flows_stop_at_their_demand() -> None:
    # One link of 10: a flow wanting 2 and two transfers. The level reaches 2 first
    # (10 / 3 > 2): the flow is frozen at 2, the transfers share the 8 left, 4 each.
    assert max_min_rates([[0], [0], [0]], [10.0], [INF, INF, 2.0]) == [4.0, 4.0, 2.0]
    # Wanting 5, more than the fair share of 10 / 3: it gets the share.
    rates = max_min_rates([[0], [0], [0]], [10.0], [INF, INF, 5.0])
    assert rates == pytest.approx([10 / 3] * 3)
    # Without demands, as before.
    assert max_min_rates([[0], [0]], [10.0]) == [5.0, 5.0]
