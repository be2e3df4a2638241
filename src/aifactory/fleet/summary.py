"""The fleet summary: the stable JSON contract of ``aifactory fleet show --json``.

Keys: ``name, gpus_total, gpus_by_tenant, gpus_by_site, gpus_by_model, nvlink_domains,
power_mw``; ``gpus_by_tenant`` counts hardware by its top-level owner (the root of the
tenant tree), ``power_mw`` is the peak facility power (all GPUs busy, times site PUE).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from aifactory.fleet.loader import group_gpus, models_of
from aifactory.fleet.spec import Fleet


def root_owner_map(fleet: Fleet) -> dict[str, str]:
    """Map every tenant name to the name of the root of its tree."""
    out: dict[str, str] = {}
    for root in fleet.tenants:
        stack = [root]
        while stack:
            t = stack.pop()
            out[t.name] = root.name
            stack.extend(t.children)
    return out


def fleet_summary(fleet: Fleet) -> dict[str, Any]:
    """Totals by owner, site and model, domain count and peak power (MW, with PUE)."""
    models = models_of(fleet)
    roots = root_owner_map(fleet)
    by_tenant: dict[str, int] = defaultdict(int)
    by_site: dict[str, int] = defaultdict(int)
    by_model: dict[str, int] = defaultdict(int)
    by_cell: dict[tuple[str, str, str], int] = defaultdict(int)
    power_w = 0.0
    site_power: dict[str, float] = defaultdict(float)
    domains = 0
    for site, _pod, group in fleet.iter_groups():
        model = models[group.model]
        n = group_gpus(group, model)
        owner = roots[group.owner]
        by_tenant[owner] += n
        by_site[site.name] += n
        by_model[group.model] += n
        by_cell[(owner, site.name, group.model)] += n
        domains += group.domains
        watts = n * model.busy_watts * site.pue
        power_w += watts
        site_power[site.name] += watts
    return {
        "name": fleet.name,
        "gpus_total": sum(by_site.values()),
        "gpus_by_tenant": dict(by_tenant),
        "gpus_by_site": dict(by_site),
        "gpus_by_model": dict(by_model),
        "nvlink_domains": domains,
        "power_mw": round(power_w / 1e6, 3),
        "power_mw_by_site": {k: round(v / 1e6, 3) for k, v in site_power.items()},
        "site_capacity_mw": {s.name: s.power_mw for s in fleet.sites},
        "gpus_by_owner_site_model": [
            {"owner": o, "site": s, "model": m, "gpus": n} for (o, s, m), n in by_cell.items()
        ],
    }
