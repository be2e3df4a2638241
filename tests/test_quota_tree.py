"""Nested quotas (issue #17 §2): tenants form a tree (organisation -> consortium -> project,
any depth); a parent's nominal quota caps its subtree; children borrow first from their
siblings, then through their parent from its cohort; limits hold at every level; the fleet
refuses children whose nominal sums exceed their parent's, naming the path.

The worked fleet (one class, 64 H100 in 8 HGX servers; ``org`` has no cohort):

- ``org``: nominal 16, children ``p1`` (nominal 8) and ``p2`` (nominal 8, lending limit 2,
  so 6 of it are never lent to ``p1``);
- ``big``: cohort ``c``, nominal 24 declared over its children ``x`` (8) and ``y`` (8):
  8 GPUs of slack for either; ``solo``: cohort ``c``, nominal 8, borrowing limit 4.

Worked by hand: p1 may hold 16 - 6 = 10 (p2's guaranteed 6 stay p2's); p2 may hold 16;
x and y may each hold 24 + what ``solo`` lends (8) = 32, and ``solo`` 8 + 4 = 12.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aifactory.fleet import Fleet, SpecError, compile_topology
from aifactory.scheduler.quota import QuotaBook
from aifactory.scheduler.scheduler import Scheduler
from builders import check_invariants, hgx, make_fleet, make_job, simulate, tenant


def parent(name: str, children: list[dict[str, Any]], quotas: Any = None, **kw: Any) -> Any:
    out = tenant(name, quotas, **kw)
    out["children"] = children
    return out


def worked() -> Fleet:
    return make_fleet(
        [[[hgx(8, owner="org")]]],
        [
            parent(
                "org",
                [
                    tenant("p1", {"h100": 8}),
                    tenant("p2", {"h100": {"nominal": 8, "lending_limit": 2}}),
                ],
                {"h100": 16},
            ),
            parent(
                "big",
                [tenant("x", {"h100": 8}), tenant("y", {"h100": 8})],
                {"h100": 24},
                cohort="c",
            ),
            tenant("solo", {"h100": {"nominal": 8, "borrowing_limit": 4}}, cohort="c"),
        ],
    )


def book_of(fleet: Fleet) -> tuple[QuotaBook, dict[str, int]]:
    book = QuotaBook(fleet, ("h100",))
    return book, book.index


def test_ceilings_worked_by_hand() -> None:
    book, ix = book_of(worked())
    assert {n: book.ceiling(ix[n], 0) for n in ("p1", "p2", "x", "y", "solo")} == {
        "p1": 10,
        "p2": 16,
        "x": 32,
        "y": 32,
        "solo": 12,
    }


def test_siblings_borrow_from_each_other_up_to_the_parent() -> None:
    book, ix = book_of(worked())
    p1, p2 = ix["p1"], ix["p2"]
    assert book.fits(p1, 0, 10)
    assert not book.fits(p1, 0, 11)  # p2's guaranteed 6 are not lent
    book.add(p1, 0, 10)
    assert book.cells[ix["org"]][0].used == 10  # a parent's usage is its subtree's
    assert book.fits(p2, 0, 6)
    assert not book.fits(p2, 0, 7)  # org's 16 are full
    assert book.shortfall(p2, 0, 8) == 2  # within p2's nominal: reclaim 2 from p1
    assert book.shortfall(p2, 0, 9) == -1  # beyond p2's nominal: reclaim cannot help
    book.add(p1, 0, -10)
    assert book.cells[ix["org"]][0].used == 0
    assert book.fits(p2, 0, 16)


def test_a_tree_borrows_from_its_cohort_through_its_top() -> None:
    book, ix = book_of(worked())
    x, y, solo = ix["x"], ix["y"], ix["solo"]
    book.add(x, 0, 30)  # big's 24 and 6 of solo's lendable 8
    assert book.borrowed(ix["big"], 0) == 6
    assert book.fits(y, 0, 2)
    assert not book.fits(y, 0, 3)
    assert book.fits(solo, 0, 2)
    assert not book.fits(solo, 0, 3)
    assert book.shortfall(solo, 0, 8) == 6  # solo's nominal back from the tree
    book.add(x, 0, -30)
    assert book.cohort_draw == [[0]]


def test_a_parents_nominal_caps_its_children_in_the_scheduler() -> None:
    """p1 fills org (its 10, p2 idle); p2 then asks its nominal 8: 2 must be reclaimed from
    p1, which borrows, so one of p1's jobs is evicted and p2's job starts at once."""
    topo = compile_topology(worked())
    jobs = [make_job(f"p1-{i}", "p1", 0.0, 2, 1000.0) for i in range(5)]
    jobs += [make_job("p1-more", "p1", 0.0, 2, 1000.0), make_job("p2-8", "p2", 10.0, 8, 100.0)]
    got = simulate(topo, jobs)
    assert [got[f"p1-{i}"].first_start_s for i in range(5)] == [0.0] * 5
    assert got["p1-more"].first_start_s != 0.0  # 12 > p1's ceiling of 10
    assert got["p2-8"].first_start_s == 10.0
    assert sum(got[f"p1-{i}"].preemptions for i in range(5)) == 1


def test_jobs_run_in_leaves() -> None:
    sched = Scheduler(compile_topology(worked()))
    reason = sched.submit(make_job("j", "org", 0.0, 1), 0.0)
    assert reason is not None
    assert reason.startswith("not a leaf: tenant 'org'")
    assert sched.rejected == {"not a leaf": 1}


def test_children_above_their_parents_nominal_are_refused_naming_the_path() -> None:
    """The issue's case: a parent with nominal 8 and children with 16 + 8."""
    with pytest.raises(SpecError) as info:
        make_fleet(
            [[[hgx(4, owner="org")]]],
            [parent("org", [tenant("a", {"h100": 16}), tenant("b", {"h100": 8})], {"h100": 8})],
        )
    assert info.value.problems == [
        (
            "tenants[0].quotas[0].nominal: children (a, b) have 24 GPUs of class 'h100' in "
            "all, more than 'org' has (8)"
        )
    ]


def test_a_child_may_not_join_another_cohort() -> None:
    with pytest.raises(SpecError) as info:
        make_fleet(
            [[[hgx(4, owner="org")]]],
            [parent("org", [tenant("a", {"h100": 8}, cohort="elsewhere")], cohort="c")],
        )
    assert info.value.problems == [
        (
            "tenants[0].children[0].cohort: only the top of a tenant tree joins a cohort "
            "('a' shares its parent 'org''s capacity)"
        )
    ]


# ------------------------------------------------------------------ the rules as an oracle
def _effective(t: dict[str, Any]) -> tuple[int, int, float]:
    """(nominal, lendable, borrowing limit) of a node, restated from quota.py's docstring:
    declared, else for a parent its children's sums and no limit."""
    qs = t["quotas"]
    if qs:
        q = qs[0]
        lend = q.get("lending_limit", q["nominal"])
        borrow = q.get("borrowing_limit")
        return q["nominal"], lend, float("inf") if borrow is None else borrow
    if t.get("children"):
        kids = [_effective(c) for c in t["children"]]
        return sum(k[0] for k in kids), sum(k[1] for k in kids), float("inf")
    return 0, 0, 0.0


def admissible(tops: list[dict[str, Any]], used: dict[str, int]) -> bool:
    """Every rule of every level, recomputed from the leaves' usage alone."""

    def claim(t: dict[str, Any], top_without_cohort: bool) -> int | None:
        nominal, lend, borrow = _effective(t)
        if top_without_cohort:
            borrow = 0
        guaranteed = nominal - lend
        if not t.get("children"):
            u = used.get(t["name"], 0)
            return max(u, guaranteed) if u <= nominal + borrow else None
        claims = [claim(c, False) for c in t["children"]]
        if any(k is None for k in claims):
            return None
        total = sum(k for k in claims if k is not None)
        return max(total, guaranteed) if total <= nominal + borrow else None

    draws: dict[str, int] = {}
    pools: dict[str, int] = {}
    for top in tops:
        k = claim(top, top.get("cohort") is None)
        if k is None:
            return False
        if top.get("cohort") is not None:
            nominal, lend, _ = _effective(top)
            draws[top["cohort"]] = draws.get(top["cohort"], 0) + k - (nominal - lend)
            pools[top["cohort"]] = pools.get(top["cohort"], 0) + lend
    return all(draws[c] <= pools[c] for c in draws)


@st.composite
def trees(draw: st.DrawFn) -> list[dict[str, Any]]:
    counter = iter(range(1000))

    def node(depth: int) -> dict[str, Any]:
        name = f"t{next(counter)}"
        kids: list[dict[str, Any]] = []
        if depth < 3 and draw(st.booleans()):
            kids = [node(depth + 1) for _ in range(draw(st.integers(1, 3)))]
            if draw(st.booleans()):
                return parent(name, kids)  # a grouping: its children's sums
            below = sum(_effective(k)[0] for k in kids)
            q: dict[str, Any] = {"nominal": below + draw(st.integers(0, 4))}
        else:
            q = {"nominal": draw(st.integers(0, 8))}
        if draw(st.booleans()):
            q["lending_limit"] = draw(st.integers(0, q["nominal"]))
        if draw(st.booleans()):
            q["borrowing_limit"] = draw(st.integers(0, 6))
        out = tenant(name, {"h100": q})
        if kids:
            out["children"] = kids
        return out

    tops = [node(0) for _ in range(draw(st.integers(1, 3)))]
    for top in tops:
        if draw(st.booleans()):
            top["cohort"] = "c"
    return tops


def _leaves(t: dict[str, Any]) -> list[str]:
    if not t.get("children"):
        return [t["name"]]
    return [leaf for c in t["children"] for leaf in _leaves(c)]


@settings(max_examples=150, deadline=None)
@given(tops=trees(), ops=st.lists(st.tuples(st.integers(0, 50), st.integers(-6, 10)), max_size=40))
def test_the_book_admits_exactly_what_every_level_allows(
    tops: list[dict[str, Any]], ops: list[tuple[int, int]]
) -> None:
    """From empty, random charges and refunds of leaves: the book says a charge fits
    exactly when the oracle's rules all hold after it; the state stays admissible, so no
    node of any tree ever exceeds its nominal plus borrowing limit; each leaf's ceiling
    is the most the oracle admits for it alone."""
    fleet = make_fleet([[[hgx(32, owner=tops[0]["name"])]]], tops)
    book = QuotaBook(fleet, ("h100",))
    leaves = [leaf for top in tops for leaf in _leaves(top)]
    for leaf in leaves:
        alone = max(g for g in range(257) if admissible(tops, {leaf: g}))
        assert book.ceiling(book.index[leaf], 0) == alone, leaf
    used: dict[str, int] = {}
    for pick, gpus in ops:
        leaf = leaves[pick % len(leaves)]
        t = book.index[leaf]
        if gpus <= 0:
            back = min(-gpus, used.get(leaf, 0))
            book.add(t, 0, -back)
            used[leaf] = used.get(leaf, 0) - back
            continue
        want = {**used, leaf: used.get(leaf, 0) + gpus}
        assert book.fits(t, 0, gpus) == admissible(tops, want), (leaf, gpus, used)
        if book.fits(t, 0, gpus):
            book.add(t, 0, gpus)
            used = want
        assert admissible(tops, used)
        for name, n in book.index.items():  # usage is the subtree's, at every node
            cell = book.cells[n][0]
            assert cell.used == sum(used.get(x, 0) for x in leaves if _under(tops, name, x))


def _under(tops: list[dict[str, Any]], name: str, leaf: str) -> bool:
    def find(t: dict[str, Any]) -> dict[str, Any] | None:
        if t["name"] == name:
            return t
        for c in t.get("children", []):
            got = find(c)
            if got is not None:
                return got
        return None

    for top in tops:
        node = find(top)
        if node is not None:
            return leaf in _leaves(node)
    return False


def test_random_nested_workloads_keep_every_invariant() -> None:
    """The scheduler on the worked fleet with a mixed stream of jobs: every pass keeps
    the cluster, the queues and the quota book consistent, and no node of a tree ever
    holds more than its nominal plus borrowing limit."""
    topo = compile_topology(worked())
    sched = Scheduler(topo)
    names = ["p1", "p2", "x", "y", "solo"]
    now = 0.0
    running: list[Any] = []
    for i in range(300):
        now += 5.0
        sched.submit(make_job(f"j{i}", names[i % 5], now, 1 + (i * 7) % 9, 50.0 + i % 40), now)
        if running and i % 3 == 0:
            sched.finish(running.pop(0), now)
        res = sched.schedule(now)
        running.extend(res.started)
        running = [j for j in running if j.state.value == "running"]
        check_invariants(sched)
        book = sched.quota
        for t in range(len(book.tenants)):
            cell = book.cells[t][0]
            cap = cell.nominal + cell.borrow_limit
            assert cell.used <= cap, book.tenants[t]
            if book.children[t]:
                assert cell.claims <= cap, book.tenants[t]
