"""What exists: GPU models, sites, pods, NVLink domains, nodes, and the tenants that own them.

The names below are imported on first use (PEP 562): the topology pulls in numpy, and a
caller that needs only :class:`SpecError` (every CLI command) must not pay for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aifactory.fleet.errors import SpecError
    from aifactory.fleet.loader import bundled_fleets, catalogue, load_fleet, parse_fleet
    from aifactory.fleet.spec import (
        DomainGroup,
        Fleet,
        GpuModel,
        Link,
        Pod,
        Quota,
        Site,
        Tenant,
    )
    from aifactory.fleet.summary import fleet_summary
    from aifactory.fleet.topology import Topology, compile_topology

# public name -> the submodule that defines it
_WHERE = {
    "SpecError": "errors",
    "bundled_fleets": "loader",
    "catalogue": "loader",
    "load_fleet": "loader",
    "parse_fleet": "loader",
    "DomainGroup": "spec",
    "Fleet": "spec",
    "GpuModel": "spec",
    "Link": "spec",
    "Pod": "spec",
    "Quota": "spec",
    "Site": "spec",
    "Tenant": "spec",
    "fleet_summary": "summary",
    "Topology": "topology",
    "compile_topology": "topology",
}


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` (once) and return the name."""
    where = _WHERE.get(name)
    if where is None:
        msg = f"module 'aifactory.fleet' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f"aifactory.fleet.{where}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DomainGroup",
    "Fleet",
    "GpuModel",
    "Link",
    "Pod",
    "Quota",
    "Site",
    "SpecError",
    "Tenant",
    "Topology",
    "bundled_fleets",
    "catalogue",
    "compile_topology",
    "fleet_summary",
    "load_fleet",
    "parse_fleet",
]
