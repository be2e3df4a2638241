"""Owners on their own hardware: which scheduling classes a fleet's GPU classes become.

Decides, once per scheduler, how the hardware of a GPU class that several owners paid for
is scheduled; touches nothing after that. Kueue models "whose hardware" with one
ResourceFlavor per owner; so does this module. A GPU class owned by two or more tenants
(``DomainGroup.owner``) becomes one *scheduling class* per owner, named
``"<class>@<owner>"`` (``gb200@samsung``), holding that owner's NVLink domains only:

- a tenant's nominal quota of the class is counted on its *home* hardware: that of the
  nearest tenant on its path up the tree (itself, its parent, ...) that owns hardware of
  the class (a consortium's home is its platform's); on every other owner's hardware its
  nominal is 0, so whatever it runs there is borrowed from that owner, within its cohort's
  rules and the owner's lending limit, and placed on the owner's domains;
- reclaim works per scheduling class, so a lender that takes back its nominal quota evicts
  borrowers from exactly its own hardware;
- a tenant's ``borrowing_limit`` caps what it borrows of the class in all, summed over
  the lenders' hardware (as Kueue's ``borrowingLimit`` caps a ClusterQueue's borrowing
  of a resource): :class:`~aifactory.scheduler.quota.QuotaBook` keeps the sum.

A class is split only when every tenant with a nominal quota of it has a home: a quota
that no owner on the tenant's path backs is guaranteed nowhere in particular, and stays
served from the whole class as before. Classes of one owner are never split (the Philly
and demo fleets schedule exactly as without this module).

The order in which a job tries its classes is the cycle's (:meth:`Cycle._class_order`):
its home hardware first, then lenders' hardware with the most idle GPUs first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

import numpy as np
from librt.vecs import append as vec_append
from librt.vecs import vec
from mypy_extensions import i64

from aifactory.fleet.topology import Topology

if TYPE_CHECKING:
    from aifactory.scheduler.quota import QuotaCell

MIXED = "mixed"  # a job that ran on the hardware of several owners


@dataclass(frozen=True, slots=True)
class SchedClasses:
    """The scheduling classes of one fleet and how they map to its GPU classes.

    Scheduling classes are dense indices into ``topo.classes`` of :attr:`topo` (the fleet's
    topology with each split class replaced by its owners' classes, in the fleet's class
    order, then owner order); the fleet's own classes index ``fleet_classes``.
    """

    topo: Topology  # the view the scheduler's cluster state and quota book are built on
    fleet_classes: tuple[str, ...]
    flavor: tuple[int, ...]  # per scheduling class: its fleet class's index
    owner: tuple[str | None, ...]  # per scheduling class: its one owner (None: several)
    of_flavor: tuple[tuple[int, ...], ...]  # per fleet class: its scheduling classes
    home: dict[tuple[str, int], str]  # (tenant, fleet class) -> home owner, in split classes

    @property
    def split(self) -> bool:
        """Whether any class is split by owner."""
        return len(self.flavor) != len(self.fleet_classes)

    def home_class(self, tenant: str, sched_class: int) -> bool:
        """Whether a scheduling class is the tenant's home hardware (a class that is not
        split is every tenant's home)."""
        owner = self.owner[sched_class]
        f = self.flavor[sched_class]
        if len(self.of_flavor[f]) == 1:
            return True
        return self.home.get((tenant, f)) == owner


def _tenant_paths(topo: Topology) -> dict[str, tuple[str, ...]]:
    """Every tenant's path from itself up to its tree's top."""
    paths: dict[str, tuple[str, ...]] = {}
    for tenant, parent, _cohort in topo.fleet.iter_tenants():
        above = paths[parent.name] if parent is not None else ()
        paths[tenant.name] = (tenant.name, *above)
    return paths


def sched_classes(topo: Topology, *, by_owner: bool = True) -> SchedClasses:
    """The scheduling classes of a fleet: each class of several owners split per owner
    where every tenant guaranteed GPUs of it has home hardware (see the module's docstring);
    with ``by_owner`` False, the fleet's classes unchanged."""
    fleet_classes = topo.classes
    n = len(fleet_classes)
    owners_of: list[list[int]] = []
    for c in range(n):
        present = np.unique(topo.domain_owner[topo.domain_class == c])
        owners_of.append([int(o) for o in present])
    paths = _tenant_paths(topo)
    home: dict[tuple[str, int], str] = {}
    split = [False] * n
    if by_owner:
        for c, name in enumerate(fleet_classes):
            names = {topo.owners[o] for o in owners_of[c]}
            if len(names) < 2:
                continue
            homes: dict[tuple[str, int], str] = {}
            ok = True
            for tenant, _parent, _cohort in topo.fleet.iter_tenants():
                if not any(q.gpu_class == name and q.nominal > 0 for q in tenant.quotas):
                    continue
                found = next((p for p in paths[tenant.name] if p in names), None)
                if found is None:
                    ok = False
                    break
                homes[(tenant.name, c)] = found
            if ok:
                split[c] = True
                # Every tenant on the path below a home owner has that home, declared
                # quota or not (a grouping's cells are its children's sums).
                for tenant_name, path in paths.items():
                    found = next((p for p in path if p in names), None)
                    if found is not None:
                        homes.setdefault((tenant_name, c), found)
                home.update(homes)
    names_out: list[str] = []
    models = []
    flavor: list[int] = []
    owner: list[str | None] = []
    of_flavor: list[tuple[int, ...]] = []
    remap = np.zeros((n, len(topo.owners)), dtype=np.int64)
    for c, name in enumerate(fleet_classes):
        mine: list[int] = []
        if split[c]:
            for o in owners_of[c]:
                remap[c, o] = len(names_out)
                mine.append(len(names_out))
                names_out.append(f"{name}@{topo.owners[o]}")
                models.append(topo.class_model[c])
                flavor.append(c)
                owner.append(topo.owners[o])
        else:
            remap[c, :] = len(names_out)
            mine.append(len(names_out))
            names_out.append(name)
            models.append(topo.class_model[c])
            flavor.append(c)
            owner.append(topo.owners[owners_of[c][0]] if len(owners_of[c]) == 1 else None)
        of_flavor.append(tuple(mine))
    view = topo
    if any(split):
        view = replace(
            topo,
            classes=tuple(names_out),
            class_model=tuple(models),
            domain_class=remap[topo.domain_class, topo.domain_owner],
        )
    return SchedClasses(
        topo=view,
        fleet_classes=fleet_classes,
        flavor=tuple(flavor),
        owner=tuple(owner),
        of_flavor=tuple(of_flavor),
        home=home,
    )


def home_then_most_idle(
    classes: tuple[int, ...], cells: list[QuotaCell], free: vec[i64]
) -> tuple[int, ...]:
    """The order in which a job tries its scheduling classes: those where its tenant has
    nominal quota (its home hardware) first, the most unused nominal first; then other
    owners' hardware (where it would borrow), the most idle GPUs first; ties by index.

    Each class's key is (0 at home else 1, unused nominal or idle GPUs negated, index),
    packed into one int that orders as the tuple does (see ``_CLASS_MASK``), and the keys
    are insertion-sorted in a ``vec[i64]``: a job has a handful of classes, and compiled,
    neither a key tuple nor a boxed int is made per class."""
    keys = vec[i64]()
    for c in classes:
        cell = cells[c]
        away = 0 if cell.nominal > 0 else 1
        value = cell.used - cell.nominal if away == 0 else -free[c]
        if not -_VALUE_OFFSET < value < _VALUE_OFFSET:
            return _by_tuples(classes, cells, free)  # (a quota beyond any real fleet)
        keys = vec_append(keys, (((away << 41) + value + _VALUE_OFFSET) << 8) + c)
    n = len(keys)
    for i in range(1, n):
        key = keys[i]
        j = i - 1
        while j >= 0 and keys[j] > key:
            keys[j + 1] = keys[j]
            j -= 1
        keys[j + 1] = key
    return tuple([int(keys[i] & _CLASS_MASK) for i in range(n)])


# The packed order key of a class (home_then_most_idle): the class index in the low 8 bits
# (at most 256 classes, which the scheduler checks), the value offset by 2**40 above them,
# the away bit above that. It orders as the tuple (away, value, class) does for values
# within +-2**40 (usage and idle GPUs are below 2**26, the most GPUs a fleet may have).
_CLASS_MASK: Final = 255
_VALUE_OFFSET: Final = 1 << 40


def _by_tuples(classes: tuple[int, ...], cells: list[QuotaCell], free: vec[i64]) -> tuple[int, ...]:
    """home_then_most_idle's order from key tuples, for values beyond the packed key's."""
    keyed = [
        (0, cells[c].used - cells[c].nominal, c) if cells[c].nominal > 0 else (1, -free[c], c)
        for c in classes
    ]
    return tuple([k[2] for k in sorted(keyed)])


def fold_by_class(
    flavor: tuple[int, ...], n: int, decayed: tuple[float, ...], running: tuple[int, ...]
) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """A tenant's usage per scheduling class summed per fleet class (``flavor`` maps the
    one to the other): fair shares are of the fleet's classes, whoever owns the GPUs."""
    d = [0.0] * n
    r = [0] * n
    for c, f in enumerate(flavor):
        d[f] += decayed[c]
        r[f] += running[c]
    return tuple(d), tuple(r)
