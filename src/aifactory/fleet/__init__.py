"""What exists: GPU models, sites, pods, NVLink domains, nodes, and the tenants that own them."""

from aifactory.fleet.errors import SpecError
from aifactory.fleet.loader import bundled_fleets, catalogue, load_fleet, parse_fleet
from aifactory.fleet.spec import DomainGroup, Fleet, GpuModel, Link, Pod, Quota, Site, Tenant
from aifactory.fleet.summary import fleet_summary
from aifactory.fleet.topology import Topology, compile_topology

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
