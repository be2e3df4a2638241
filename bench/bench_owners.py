"""Owners on their own hardware, and what lending buys (issue #17 §1).

One simulated day of the main job's settings (korea-2025 at load 0.85, Llama 3 failures,
checkpoints, seed 2025). Target: each private owner runs at least 99% of its GPU-hours
that it did not borrow on its own hardware. Also reported: what the consortia borrowed
from the private owners, and their average queue with lending against the same day with
the private owners out of the cohort (the counterfactual: no lending).
"""

from __future__ import annotations

from typing import Any

PRIVATE = ("samsung", "sk", "hyundai", "naver")
TARGET = 0.99


def _day(*, lending: bool) -> dict[str, Any]:
    from aifactory.fleet import load_fleet  # noqa: PLC0415
    from aifactory.twin.inputs import CheckpointPolicy  # noqa: PLC0415
    from aifactory.twin.run import TwinSpec, run_twin  # noqa: PLC0415
    from aifactory.workload.synth import synthesize  # noqa: PLC0415

    base = load_fleet("korea-2025")
    fleet = base
    if not lending:
        tenants = [
            t.model_copy(update={"cohort": None}) if t.name in ("samsung", "sk", "hyundai") else t
            for t in base.tenants
        ]
        fleet = base.model_copy(update={"tenants": tenants})
    spec = TwinSpec(
        fleet="korea-2025",
        trace="synth-korea-2025-1d-load0.85",
        seed=2025,
        failures="llama3",
        checkpoint=CheckpointPolicy.TRACE,
        checkpoint_write_s=60.0,
        until_s=86400.0,
        backfill_interval_s=30.0,
    )
    return run_twin(spec, table=synthesize(base, 1.0, 0.85, 2025), fleet=fleet).summary


def run() -> list[dict[str, Any]]:
    """The rows of this benchmark."""
    lend = _day(lending=True)
    alone = _day(lending=False)
    rows: list[dict[str, Any]] = []
    for owner in PRIVATE:
        v = lend["per_tenant"][owner]
        # Its GPU-hours not borrowed from a lender, and the part on its own hardware.
        not_borrowed = v["gpu_hours_own"] + 0.0
        for owner_of, hours in v["gpu_hours_borrowed_by_lender"].items():
            if owner_of == "mixed":  # (a class of several owners that is not split)
                not_borrowed += hours
        share = v["gpu_hours_own"] / not_borrowed if not_borrowed else 0.0
        rows.append(
            {
                "name": f"{owner}: own-hardware share of non-borrowed GPU-hours",
                "value": share,
                "unit": "",
                "target": f">= {TARGET:.0%}",
                "ok": share >= TARGET,
            }
        )
    # The consortia's leaves (a consortium with projects runs its jobs in them).
    from aifactory.fleet import load_fleet  # noqa: PLC0415

    platform = {"government"}
    for t, parent, _cohort in load_fleet("korea-2025").iter_tenants():
        if parent is not None and parent.name in platform:
            platform.add(t.name)
    consortia = [t for t in lend["per_tenant"] if t in platform]
    borrowed = sum(lend["per_tenant"][t]["gpu_hours_borrowed"] for t in consortia)
    rows.append(
        {"name": "consortia: GPU-hours borrowed from lenders", "value": borrowed, "unit": "GPU-h"}
    )
    for t in consortia:
        q_lend = lend["per_tenant"][t]["avg_queue_s"] or 0.0
        q_alone = alone["per_tenant"][t]["avg_queue_s"] or 0.0
        rows.append(
            {
                "name": f"{t}: avg queue, lending / not",
                "value": f"{q_lend:,.0f} / {q_alone:,.0f}",
                "unit": "s",
            }
        )
    return rows
