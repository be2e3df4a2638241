"""The allocation model and ledger (issue #19): the state machine's table, charges that
split at period boundaries and record overrun, idempotent keys, and properties
(Hypothesis): balances never below zero but by recorded overrun; draws sum to charges."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aifactory.allocations import (
    TRANSITIONS,
    Allocation,
    AllocState,
    Cover,
    IllegalTransitionError,
    Ledger,
    b200_rates,
)

H = 3600.0


def grant(
    alloc_id: str = "a1",
    *,
    hours: float = 10.0,
    start: float = 0.0,
    end: float = 100 * H,
    gpu_class: str | None = "h100",
    overdraft: bool = False,
    project: str = "p",
) -> Allocation:
    """An approved allocation (through the table: requested -> endorsed -> approved)."""
    a = Allocation(
        id=alloc_id,
        project=project,
        gpu_class=gpu_class,
        gpu_hours=hours,
        start_s=start,
        end_s=end,
        overdraft=overdraft,
    )
    a = a.move(AllocState.ENDORSED, who="lab-admin", at=0.0)
    return a.move(AllocState.APPROVED, who="admin", at=0.0)


def test_every_edge_has_a_reason_and_illegal_moves_raise() -> None:
    assert all(reason.strip() for reason in TRANSITIONS.values())
    a = Allocation(id="x", project="p", gpu_hours=1, start_s=0, end_s=10)
    with pytest.raises(IllegalTransitionError, match="cannot go from requested to approved"):
        a.move(AllocState.APPROVED, who="admin", at=1.0)
    rejected = a.move(AllocState.REJECTED, who="lab-admin", at=1.0)
    for to in AllocState:
        if to is not AllocState.REJECTED:
            with pytest.raises(IllegalTransitionError):
                rejected.move(to, who="admin", at=2.0)
    with pytest.raises(IllegalTransitionError, match="top-up"):
        a.topup(1.0, who="admin", at=1.0)


def test_history_records_who_and_when_and_the_clock_moves() -> None:
    a = grant(hours=1.0, start=10.0, end=20.0)
    assert a.settle(5.0, a.granted_units).state is AllocState.APPROVED
    active = a.settle(10.0, a.granted_units)
    assert active.state is AllocState.ACTIVE
    assert active.history[-1].who == "clock"
    assert active.history[-1].at == 10.0
    exhausted = active.settle(11.0, 0.0)
    assert exhausted.state is AllocState.EXHAUSTED
    topped = exhausted.topup(2.0, who="admin", at=12.0).settle(12.0, 2 * H)
    assert topped.state is AllocState.ACTIVE
    assert topped.gpu_hours == 3.0
    assert [c.who for c in topped.history][-2:] == ["admin", "clock"]
    expired = topped.settle(20.0, 2 * H)
    assert expired.state is AllocState.EXPIRED
    back = expired.extend(30.0, who="admin", at=21.0).settle(21.0, 2 * H)
    assert back.state is AllocState.ACTIVE
    assert back.end_s == 30.0
    assert [(c.from_state, c.to_state) for c in back.history[:2]] == [
        (AllocState.REQUESTED, AllocState.ENDORSED),
        (AllocState.ENDORSED, AllocState.APPROVED),
    ]


@pytest.mark.parametrize(
    ("name", "hours", "need_h", "overdraft", "now", "expected"),
    [
        ("inside the balance", 10.0, 10.0, False, 1.0, Cover.COVERED),
        ("past the balance", 10.0, 10.5, False, 1.0, Cover.DENIED),
        ("past it, overdraft allowed", 10.0, 10.5, True, 1.0, Cover.OVERDRAFT),
        ("before the start", 10.0, 1.0, False, -1.0, Cover.DENIED),
        ("at the end", 10.0, 1.0, False, 100 * H, Cover.DENIED),
    ],
)
def test_cover(
    name: str, hours: float, need_h: float, overdraft: bool, now: float, expected: Cover
) -> None:
    ledger = Ledger([grant(hours=hours, overdraft=overdraft)])
    assert ledger.cover("p", "h100", need_h * H, now) is expected, name
    assert ledger.cover("other", "h100", 1.0, 1.0) is Cover.DENIED
    assert ledger.cover("p", "b200", 1.0, 1.0) is Cover.DENIED  # a class-bound grant


def test_normalised_grant_charges_at_the_rate() -> None:
    rates = b200_rates({"b200": 2250.0, "h100": 989.0})
    ledger = Ledger([grant(gpu_class=None, hours=10.0)], rates)
    c = ledger.charge("p", "h100", 8 * H, 0.0, H, key="j1:1")  # 8 GPUs for an hour
    assert c.draws[0].units == pytest.approx(8 * H * 989 / 2250)
    assert ledger.balance("a1") == pytest.approx(10 * H - 8 * H * 989 / 2250)
    assert ledger.cover("p", "gb200", 1.0, 1.0) is Cover.DENIED  # no rate: cannot draw


def test_charge_is_never_refused_overrun_is_recorded_and_keys_are_idempotent() -> None:
    ledger = Ledger([grant(hours=1.0)])
    c = ledger.charge("p", "h100", 3 * H, 0.0, 1.5 * H, key="j1:1")
    assert c.overrun_gpu_seconds == pytest.approx(2 * H)
    assert c.overrun_allocation == "a1"
    assert ledger.balance("a1") == pytest.approx(-2 * H)
    assert ledger.state("a1", 2 * H) is AllocState.EXHAUSTED
    again = ledger.charge("p", "h100", 3 * H, 0.0, 1.5 * H, key="j1:1")
    assert again is c
    assert ledger.used("a1") == pytest.approx(3 * H)


def test_no_draw_outside_a_period() -> None:
    # Two grants back to back; a run across the boundary draws half from each; a run past
    # every period is overrun on no allocation.
    ledger = Ledger([grant("a1", end=10 * H), grant("a2", start=10 * H, end=20 * H)])
    c = ledger.charge("p", "h100", 4 * H, 8 * H, 12 * H)
    assert {d.allocation: d.gpu_seconds for d in c.draws} == pytest.approx(
        {"a1": 2 * H, "a2": 2 * H}
    )
    late = ledger.charge("p", "h100", H, 30 * H, 31 * H)
    assert late.draws == ()
    assert late.overrun_gpu_seconds == H
    assert late.overrun_allocation is None
    assert late.unallocated_gpu_seconds == H


intervals = st.lists(
    st.tuples(
        st.integers(1, 64),  # gpus
        st.floats(0, 200 * H, allow_nan=False),  # start
        st.floats(0, 50 * H, allow_nan=False),  # length
        st.sampled_from(["h100", "b200"]),
    ),
    max_size=30,
)
grants = st.lists(
    st.tuples(
        st.floats(0, 500, allow_nan=False),  # hours
        st.floats(0, 150 * H, allow_nan=False),  # start
        st.floats(1, 100 * H, allow_nan=False),  # length
        st.sampled_from(["h100", "b200", None]),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(grants, intervals)
def test_balances_and_sums(
    gs: list[tuple[float, float, float, str | None]], runs: list[tuple[int, float, float, str]]
) -> None:
    rates = b200_rates({"b200": 2250.0, "h100": 989.0})
    allocs = [
        grant(f"a{i}", hours=h, start=s, end=s + n, gpu_class=c)
        for i, (h, s, n, c) in enumerate(gs)
    ]
    ledger = Ledger(allocs, rates)
    total = 0.0
    for i, (gpus, start, length, cls) in enumerate(runs):
        gpu_s = gpus * length
        c = ledger.charge("p", cls, gpu_s, start, start + length, key=f"j{i}:1")
        total += gpu_s
        # every GPU-second of the charge is drawn from a balance or recorded as overrun
        drawn = math.fsum(d.gpu_seconds for d in c.draws)
        assert drawn + c.unallocated_gpu_seconds == pytest.approx(gpu_s, rel=1e-9, abs=1e-6)
        assert c.unallocated_gpu_seconds <= c.overrun_gpu_seconds + 1e-9
    for a in allocs:
        # below zero only by the recorded overrun, never more
        assert ledger.balance(a.id) + ledger.overrun(a.id) >= -1e-6 * max(1.0, a.granted_units)
    charged = math.fsum(c.gpu_seconds for c in ledger.charges())
    assert charged == math.fsum(g * n for g, _, n, _ in runs)
    assert charged == pytest.approx(total)


def test_a_copy_is_independent() -> None:
    ledger = Ledger([grant(hours=2.0)])
    ledger.charge("p", "h100", H, 0.0, H, key="j1:1")
    what_if = ledger.copy()
    what_if.charge("p", "h100", H, H, 2 * H, key="j2:1")
    assert what_if.balance("a1") == pytest.approx(0.0)
    assert ledger.balance("a1") == pytest.approx(H)
    assert len(ledger.charges()) == 1


ops = st.lists(
    st.tuples(
        st.sampled_from(["charge", "topup", "extend", "settle"]),
        st.floats(0, 10, allow_nan=False),  # amount (hours) or time step (hours)
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_every_recorded_move_is_in_the_table(steps: list[tuple[str, float]]) -> None:
    """Whatever top-ups, extensions, charges and clock steps happen, every move in the
    history is an edge of the table, its entries are in time order, and the state is the
    fixed point of the clock and the balance."""
    ledger = Ledger([grant(hours=5.0, start=H, end=20 * H)])
    now = 0.0
    for op, x in steps:
        a = ledger.allocation("a1").settle(now, ledger.balance("a1"))
        if op == "charge":
            ledger.charge("p", "h100", x * H, now, now + H)
        elif op == "topup" and x >= 1e-6 and a.state.value in ("approved", "active", "exhausted"):
            a = a.topup(x, who="admin", at=now)
        elif op == "extend" and x * H >= 1.0:
            a = a.extend(a.end_s + x * H, who="admin", at=now)
        now += x * H if op == "settle" else 0.0
        # As the service does (alloc_store.change_allocation): the changed allocation
        # first, then the moves its new balance makes.
        ledger.replace(a)
        ledger.replace(a.settle(now, ledger.balance("a1")))
    final = ledger.allocation("a1")
    moves = [c for c in final.history if c.kind.value == "move"]
    assert all((c.from_state, c.to_state) in TRANSITIONS for c in moves)
    assert [c.at for c in final.history] == sorted(c.at for c in final.history)
    assert final.due(now, ledger.balance("a1")) is None


def test_a_ledger_that_keeps_no_charges_draws_and_tallies_the_same() -> None:
    """Without records (``keep_charges=False``) the balances, the count of charges and
    each project's unallocated GPU-seconds are those of a ledger that keeps every charge."""
    allocs = [grant("a1", hours=3.0, end=10 * H), grant("b1", hours=1.0, project="q")]
    kept = Ledger(allocs)
    bare = Ledger(allocs, keep_charges=False)
    runs = [("p", 2 * H, 0.0, 2 * H), ("p", 3 * H, 8 * H, 11 * H), ("q", 2 * H, H, 3 * H)]
    for i, (project, gpu_s, start, end) in enumerate(runs):
        a = kept.charge(project, "h100", gpu_s, start, end, key=f"j{i}:1")
        b = bare.charge(project, "h100", gpu_s, start, end, key=f"j{i}:1")
        assert a == b
    assert bare.charges() == []
    count, unallocated = kept.tally()
    assert count == len(kept.charges()) == 3
    assert bare.tally() == (count, unallocated)
    # p's run past its grant's end and q's run past its balance: both are overrun, but
    # only the part outside every period is unallocated.
    assert unallocated == {"p": pytest.approx(H), "q": 0.0}
    for a in ("a1", "b1"):
        assert bare.balance(a) == kept.balance(a)
        assert bare.overrun(a) == kept.overrun(a)
    copy = bare.copy()
    assert copy.tally() == bare.tally()
    assert not copy.keep_charges
