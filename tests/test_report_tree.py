"""A parent tenant's subtree in the summary (``per_subtree``, twin/subtrees.py) and the
report's tenant table drawn as the fleet's tree (issue #17's nested quotas).

Worked fleet: 2 HGX servers (16 H100); ``org`` (nominal 16) over ``p1`` (8) and ``p2`` (8).
FIFO, no backfill slack: p1's j0 (8 GPUs, 0-100), p2's j1 (8 GPUs, 0-50) and p2's j2 (8 GPUs,
submitted at 10, starts at 50 when j1 ends, 50-80). JCTs 100, 50, 70: org's mean 73.3 s;
queues 0, 0, 40: mean 13.3 s; GPU-hours 8 x (100 + 50 + 30) / 3600 = 0.4.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from aifactory.reports.report import build_report, tenant_rows
from aifactory.twin.run import TwinSpec, run_twin
from builders import hgx, make_fleet, tenant
from test_twin import trace


def _fleet() -> Any:
    org = tenant("org", {"h100": 16})
    org["children"] = [tenant("p1", {"h100": 8}), tenant("p2", {"h100": 8})]
    return make_fleet([[[hgx(2, owner="org")]]], [org])


JOBS = [
    {"tenant": "p1", "submit_s": 0, "gpus": 8, "duration_s": 100},
    {"tenant": "p2", "submit_s": 0, "gpus": 8, "duration_s": 50},
    {"tenant": "p2", "submit_s": 10, "gpus": 8, "duration_s": 30},
]


@pytest.fixture(scope="module")
def summary_and_jobs() -> tuple[dict[str, Any], pl.DataFrame]:
    run = run_twin(TwinSpec(fleet="tree", trace="t.parquet"), table=trace(JOBS), fleet=_fleet())
    return run.summary, pl.from_arrow(run.jobs_table())  # type: ignore[return-value]


def test_a_parents_subtree_figures_worked_by_hand(
    summary_and_jobs: tuple[dict[str, Any], pl.DataFrame],
) -> None:
    s, _ = summary_and_jobs
    assert s["tenant_parents"] == {"p1": "org", "p2": "org"}
    assert set(s["per_tenant"]) == {"p1", "p2"}, "per_tenant stays the leaves (no job twice)"
    org = s["per_subtree"]["org"]
    assert org["children"] == ["p1", "p2"]
    assert org["jobs"] == 3
    assert org["avg_jct_s"] == pytest.approx((100 + 50 + 70) / 3)
    assert org["avg_queue_s"] == pytest.approx((0 + 0 + 40) / 3)
    assert org["gpu_hours"] == pytest.approx(8 * (100 + 50 + 30) / 3600)
    assert org["quota_gpus"] == 16
    assert org["utilization_of_quota"] == pytest.approx(8 * 180 / (16 * 100))


def test_the_report_lists_tenants_as_the_tree(
    summary_and_jobs: tuple[dict[str, Any], pl.DataFrame],
) -> None:
    s, jobs = summary_and_jobs
    rows = tenant_rows(s, jobs)
    assert [(r.name, r.depth, r.subtotal) for r in rows] == [
        ("org", 0, True),
        ("p1", 1, False),  # 0.222 GPU-hours before p2's 0.178
        ("p2", 1, False),
    ]
    assert rows[0].jobs == 3
    assert rows[0].quota_gpus == 16
    html, _png = build_report(s, jobs, pl.DataFrame())
    table = html[html.index("org (subtree)") :]
    assert table.index("p1") < table.index("p2"), "children follow their parent"


def test_without_a_tree_the_table_is_by_gpu_hours(
    summary_and_jobs: tuple[dict[str, Any], pl.DataFrame],
) -> None:
    s, jobs = summary_and_jobs
    flat = {k: v for k, v in s.items() if k not in ("tenant_parents", "per_subtree")}
    rows = tenant_rows(flat, jobs)
    assert [r.name for r in rows][:2] == ["p1", "p2"]
    assert not any(r.subtotal for r in rows)
