"""A small fleet for the interop tests: two sites, three pods, six nodes, one NVLink domain
group of two-node domains, a tenant tree with a parent and a cohort, every kind of limit.
Small enough that a real Slurm runs one slurmd per node on this machine."""

from __future__ import annotations

from typing import Any

from aifactory.fleet import Fleet, parse_fleet


def small_raw() -> dict[str, Any]:
    """The small fleet as a document (fresh each call, so a test may change it)."""
    site = {"region": "Test", "power_mw": 0.1, "pue": 1.2}
    return {
        "name": "small",
        "default_tenant": "lab",
        "sites": [
            {
                "name": "alpha",
                **site,
                "pods": [
                    {
                        "name": "nvl",
                        "groups": [
                            {"model": "gb200", "domains": 2, "nodes_per_domain": 2, "owner": "lab"}
                        ],
                    },
                    {"name": "hgx", "groups": [{"model": "h100", "domains": 1, "owner": "lab"}]},
                ],
            },
            {
                "name": "beta",
                **site,
                "pods": [
                    {"name": "hgx", "groups": [{"model": "b200", "domains": 1, "owner": "team-b"}]}
                ],
            },
        ],
        "tenants": [
            {
                "name": "lab",
                "cohort": "shared",
                "quotas": [
                    {"gpu_class": "gb200", "nominal": 8},
                    {"gpu_class": "h100", "nominal": 8, "lending_limit": 4},
                ],
            },
            {
                "name": "org",
                "cohort": "shared",  # (a tree's top joins the cohort for its children)
                "children": [
                    {
                        "name": "team-b",
                        "quotas": [
                            {"gpu_class": "b200", "nominal": 8, "borrowing_limit": 0},
                            {"gpu_class": "gb200", "nominal": 8, "borrowing_limit": 4},
                        ],
                    }
                ],
            },
        ],
    }


def small_fleet() -> Fleet:
    """The small fleet, validated."""
    return parse_fleet(small_raw(), "small")
