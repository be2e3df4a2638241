"""Slurm accounts into tenants (aifactory/interop/slurm_accounts.py): a parent's GrpTRES
caps its subtree, as a parent's nominal quota does in the twin; hand-counted cases, and a
property: whatever tree and limits sacctmgr lists, the imported fleet is valid."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from aifactory.fleet.spec import Fleet
from aifactory.interop.slurm_import import import_slurm

NODES = 4  # 8-GPU h100 nodes: 32 GPUs


def _fleet(tmp_path: Path, rows: list[tuple[str, str, str]]) -> Fleet:
    """The fleet imported from 4 h100 nodes and assoc rows (account, parent, GrpTRES)."""
    (tmp_path / "slurm.conf").write_text(f"NodeName=n[0-{NODES - 1}] Gres=gpu:h100:8 CPUs=64\n")
    lines = ["Account|User|Par Name|GrpTRES", "root|||"]
    lines += [f"{a}||{p}|{g}" for a, p, g in rows]
    (tmp_path / "assoc.txt").write_text("\n".join(lines) + "\n")
    return import_slurm(tmp_path / "slurm.conf", assoc=tmp_path / "assoc.txt")


def _nominal(fleet: Fleet) -> dict[str, int]:
    return {t.name: sum(q.nominal for q in t.quotas) for t, _, _ in fleet.iter_tenants()}


def test_a_parents_grptres_is_its_quota_and_its_open_children_split_it(tmp_path: Path) -> None:
    fleet = _fleet(
        tmp_path,
        [("physics", "root", "gres/gpu=16"), ("astro", "physics", ""), ("hep", "physics", ""),
         ("bio", "root", "")],
    )  # fmt: skip
    assert _nominal(fleet) == {"physics": 16, "astro": 8, "hep": 8, "bio": 16}
    physics = next(t for t in fleet.tenants if t.name == "physics")
    assert physics.quotas[0].source == "slurm: GrpTRES"
    assert physics.cohort is None, "a capped account borrows nothing, as in Slurm"
    assert not any("do not nest" in n for n in fleet.notes)


def test_children_over_their_parents_cap_are_scaled_to_fit(tmp_path: Path) -> None:
    fleet = _fleet(
        tmp_path,
        [("lab", "root", "gres/gpu=8"), ("a", "lab", "gres/gpu=8"), ("b", "lab", "gres/gpu=8"),
         ("other", "root", "")],
    )  # fmt: skip
    # 8 + 8 taken by the leaves, scaled by 8/16 to 4 + 4; the 8 freed go to the pool.
    assert _nominal(fleet) == {"lab": 8, "a": 4, "b": 4, "other": 24}
    assert any("scaled down" in n and "lab" in n for n in fleet.notes)


def test_a_parent_above_its_childrens_sum_keeps_the_rest(tmp_path: Path) -> None:
    fleet = _fleet(
        tmp_path,
        [("lab", "root", "gres/gpu=20"), ("a", "lab", "gres/gpu=8"), ("b", "lab", ""),
         ("c", "root", "gres/gpu=4")],
    )  # fmt: skip
    # a holds 8 of lab's 20; b, without a limit, gets the 12 beyond it; 8 GPUs stay free.
    assert _nominal(fleet) == {"lab": 20, "a": 8, "b": 12, "c": 4}


def test_nested_caps_through_an_account_without_one(tmp_path: Path) -> None:
    fleet = _fleet(
        tmp_path,
        [("top", "root", "gres/gpu=24"), ("mid", "top", ""), ("x", "mid", "gres/gpu=30"),
         ("y", "mid", ""), ("z", "top", "")],
    )  # fmt: skip
    # x takes 30 of the 32 GPUs; top caps its subtree (mid's 30) at 24, so x is scaled to
    # 24 (30 * 24/30) and 6 go back; y and z split top's room beyond x's: none.
    got = _nominal(fleet)
    assert got["top"] == 24
    assert got["x"] == 24
    assert got["y"] == got["z"] == 0


# -- every listing imports to a valid fleet -------------------------------------------

NAMES = [f"acct{i}" for i in range(7)]


@st.composite
def listings(draw: st.DrawFn) -> list[tuple[str, str, str]]:
    """A random account tree (each account's parent listed before it) with random limits."""
    n = draw(st.integers(1, len(NAMES)))
    rows = []
    for i in range(n):
        parent = draw(st.sampled_from(["root", *NAMES[:i]]))
        limit = draw(st.one_of(st.just(""), st.integers(0, 40).map(lambda g: f"gres/gpu={g}")))
        rows.append((NAMES[i], parent, limit))
    return rows


@settings(max_examples=150, deadline=None)
@given(rows=listings())
def test_any_listing_imports_to_a_valid_fleet(rows: list[tuple[str, str, str]]) -> None:
    import tempfile  # noqa: PLC0415 (hypothesis reuses no pytest tmp_path)

    with tempfile.TemporaryDirectory() as tmp:
        fleet = _fleet(Path(tmp), rows)  # parse_fleet's checks: nested sums, capacity
    limits = {a: int(g.split("=")[1]) for a, _, g in rows if g}
    for tenant, _, _ in fleet.iter_tenants():
        nominal = sum(q.nominal for q in tenant.quotas)
        if tenant.name in limits:
            assert nominal <= limits[tenant.name], "no account holds more than its GrpTRES"
        children = sum(sum(q.nominal for q in c.quotas) for c in tenant.children)
        if tenant.quotas and tenant.children:
            assert children <= nominal
