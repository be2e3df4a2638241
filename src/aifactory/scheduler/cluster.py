"""Cluster state: which GPUs are free, indexed so that no decision scans the fleet.

Free GPUs are counted per node, NVLink domain, pod, site and GPU class, and nodes and
domains are also kept in *buckets* keyed by (class, free count). Best-fit search for a
job that fits in one node or one domain is then a walk over at most one bucket list
per candidate free count (8 for HGX, 72 for NVL72), independent of fleet size, and
allocate/release touch O(levels) counters and O(1) bucket entries. Domain buckets are
kept only for classes whose domains span several nodes (NVL72 racks): an HGX domain
is one node, and the node buckets answer for it.

A bucket is a list with swap-remove (each member's position is kept), not a set:
picking any member of a set that has seen many removals walks its emptied slots
(``next(iter(s))`` was a tenth of a busy korea-2025 run), while a list's last member
is one read. Its members are :class:`Slot` objects (a node's or domain's index and
position) rather than ints: compiled, an int read from a list is unboxed and boxed
again when written back, so moving a member between buckets of a large fleet cost four
int allocations; a slot moves as it is and keeps its position unboxed.

GPU identities inside a node are a bitmask, so the control plane can hand out
concrete device indices (``CUDA_VISIBLE_DEVICES``) from the same state.
"""

from __future__ import annotations

from typing import final

from librt.vecs import vec
from mypy_extensions import i64

from aifactory.fleet.topology import Topology

Placement = list[tuple[int, int]]  # (node index, bitmask of the node's GPUs used)


@final
class Slot:
    """A node or NVLink domain as a bucket member: its index, and its position in the
    bucket it is in now."""

    __slots__ = ("index", "pos")

    def __init__(self, index: int) -> None:
        self.index = index
        self.pos = 0


class ClusterState:
    """Free-GPU bookkeeping over a compiled :class:`Topology`."""

    __slots__ = (
        "class_free",
        "class_pods",
        "cpod_doms",
        "cpod_free",
        "cpod_full",
        "csite_free",
        "dom_bucket",
        "dom_buckets_kept",
        "dom_cap",
        "dom_class",
        "dom_first",
        "dom_free",
        "dom_nodes",
        "dom_pod",
        "dom_size",
        "dom_slot",
        "gpn_max",
        "node_bucket",
        "node_cap",
        "node_class",
        "node_dom",
        "node_free",
        "node_mask",
        "node_slot",
        "pod_site",
        "stranded",
        "topo",
    )

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.node_cap: list[int] = topo.node_gpus.tolist()
        self.node_free = vec[i64](self.node_cap)
        self.node_mask = vec[i64]([(1 << c) - 1 for c in self.node_cap])
        self.node_dom: list[int] = topo.node_domain.tolist()
        self.node_class: list[int] = topo.domain_class[topo.node_domain].tolist()
        self.dom_cap: list[int] = topo.domain_gpus.tolist()
        self.dom_free = vec[i64](self.dom_cap)
        self.dom_pod: list[int] = topo.domain_pod.tolist()
        self.dom_class: list[int] = topo.domain_class.tolist()
        self.dom_first: list[int] = topo.domain_first_node.tolist()
        self.dom_nodes: list[int] = topo.domain_nodes.tolist()
        self.pod_site: list[int] = topo.pod_site.tolist()
        n_classes = len(topo.classes)
        self.class_free = vec[i64]([0] * n_classes)
        # Per class: free GPUs per pod and per site, the fully free domains of each pod,
        # and each pod's domains of that class (dicts: a class lives in few pods).
        self.cpod_free: list[dict[int, int]] = [{} for _ in range(n_classes)]
        self.csite_free: list[dict[int, int]] = [{} for _ in range(n_classes)]
        self.cpod_full: list[dict[int, set[int]]] = [{} for _ in range(n_classes)]
        self.cpod_doms: list[dict[int, list[int]]] = [{} for _ in range(n_classes)]
        self.class_pods: list[list[int]] = [[] for _ in range(n_classes)]
        self.gpn_max = [0] * n_classes
        self.dom_size = [0] * n_classes  # largest NVLink domain of each class
        max_dom = max(self.dom_cap) if self.dom_cap else 0
        max_node = max(self.node_cap) if self.node_cap else 0
        self.dom_bucket: list[list[list[Slot]]] = [
            [[] for _ in range(max_dom + 1)] for _ in range(n_classes)
        ]
        self.node_bucket: list[list[list[Slot]]] = [
            [[] for _ in range(max_node + 1)] for _ in range(n_classes)
        ]
        # Each domain's (node's) bucket membership.
        self.dom_slot = [Slot(d) for d in range(len(self.dom_cap))]
        self.node_slot = [Slot(n) for n in range(len(self.node_cap))]
        # Whether a class's domain buckets are kept at all: where every NVLink domain is
        # one node (HGX), a domain with enough free GPUs is a node with enough, which the
        # node buckets already answer, so the domain buckets would be upkeep on every
        # allocation and release without a reader.
        self.dom_buckets_kept = [False] * n_classes
        for d, nodes in enumerate(self.dom_nodes):
            if nodes > 1:
                self.dom_buckets_kept[self.dom_class[d]] = True
        for d, cap in enumerate(self.dom_cap):
            p = self.dom_pod[d]
            c = self.dom_class[d]
            s = self.pod_site[p]
            if p not in self.cpod_free[c]:
                self.class_pods[c].append(p)
                self.cpod_free[c][p] = 0
                self.cpod_full[c][p] = set()
                self.cpod_doms[c][p] = []
            self.cpod_free[c][p] += cap
            self.csite_free[c][s] = self.csite_free[c].get(s, 0) + cap
            self.class_free[c] += cap
            self.cpod_full[c][p].add(d)
            self.cpod_doms[c][p].append(d)
            if self.dom_buckets_kept[c]:
                _bag_add(self.dom_bucket[c][cap], self.dom_slot[d])
            self.dom_size[c] = max(self.dom_size[c], cap)
            first = self.dom_first[d]
            for n in range(first, first + self.dom_nodes[d]):
                _bag_add(self.node_bucket[c][self.node_cap[n]], self.node_slot[n])
                self.gpn_max[c] = max(self.gpn_max[c], self.node_cap[n])
        self.stranded = 0  # free GPUs in partly used domains

    # ------------------------------------------------------------------ updates
    def take(self, node: int, count: int) -> int:
        """Take ``count`` free GPUs of ``node`` (lowest indices first); return their mask."""
        mask = self._lowest_free(node, count)
        self._node_change(node, -count, mask)
        self._dom_change(self.node_dom[node], -count)
        return mask

    def give(self, node: int, mask: int) -> None:
        """Return the GPUs of ``mask`` on ``node``."""
        n = mask.bit_count()
        self._node_change(node, n, mask)
        self._dom_change(self.node_dom[node], n)

    def allocate(self, plan: list[tuple[int, int]]) -> Placement:
        """Take GPUs for a plan of (node, count); returns the placement (node, mask)."""
        if len(plan) == 1:  # one node (most jobs start on one): no batching
            node, count = plan[0]
            return [(node, self.take(node, count))]
        placement: Placement = []
        for node, count in plan:
            mask = self._lowest_free(node, count)
            self._node_change(node, -count, mask)
            placement.append((node, mask))
        self._dom_changes(placement, -1)
        return placement

    def reserve_exact(self, placement: Placement) -> None:
        """Take exactly the GPUs of a placement (used to restore state after a restart).
        Every GPU is checked before any is taken: a refused placement changes nothing."""
        seen: dict[int, int] = {}
        for node, mask in placement:
            earlier = seen.get(node, 0)
            if self.node_mask[node] & mask != mask or earlier & mask:
                msg = f"node {node}: GPUs {mask:#x} are not all free"
                raise ValueError(msg)
            seen[node] = earlier | mask
        for node, mask in placement:
            self._node_change(node, -mask.bit_count(), mask)
        self._dom_changes(placement, -1)

    def release(self, placement: Placement) -> None:
        """Free every GPU of a placement."""
        if len(placement) == 1:  # one node (most jobs): no batching
            node, mask = placement[0]
            self.give(node, mask)
            return
        for node, mask in placement:
            self._node_change(node, mask.bit_count(), mask)
        self._dom_changes(placement, 1)

    def _lowest_free(self, node: int, count: int) -> int:
        """Mask of the node's ``count`` lowest-indexed free GPUs."""
        free_mask = self.node_mask[node]
        if count == self.node_free[node]:
            return free_mask  # the whole node's free GPUs: no bit walk
        mask = 0
        for _ in range(count):
            low = free_mask & -free_mask
            mask |= low
            free_mask ^= low
        return mask

    def _node_change(self, node: int, delta: int, mask: int) -> None:
        """A node's free count, GPU mask and bucket (its domain's counts are the caller's)."""
        c = self.node_class[node]
        old = self.node_free[node]
        new = old + delta
        nb = self.node_bucket[c]
        _bag_move(nb[old], nb[new], self.node_slot[node])
        self.node_free[node] = new
        self.node_mask[node] ^= mask

    def _dom_changes(self, placement: Placement, sign: int) -> None:
        """Domain counts for a placement whose nodes changed by their masks' GPUs: once
        per run of nodes of one domain (a plan lists a domain's nodes together), not once
        per node. The domain moves straight to its final bucket; the buckets end up as
        node-by-node moves leave them (a domain passing through a bucket was appended
        last and removed again, which moves no other member)."""
        d_run = -1
        delta = 0
        for node, mask in placement:
            d = self.node_dom[node]
            if d != d_run:
                if delta:
                    self._dom_change(d_run, delta)
                d_run = d
                delta = 0
            delta += mask.bit_count() if sign > 0 else -mask.bit_count()
        if delta:
            self._dom_change(d_run, delta)

    def _dom_change(self, d: int, delta: int) -> None:
        """Domain ``d`` gained ``delta`` free GPUs (lost, if negative): its bucket, and the
        pod, site and class counts above it."""
        c = self.dom_class[d]
        dold = self.dom_free[d]
        dnew = dold + delta
        cap = self.dom_cap[d]
        if self.dom_buckets_kept[c]:
            db = self.dom_bucket[c]
            _bag_move(db[dold], db[dnew], self.dom_slot[d])
        self.dom_free[d] = dnew
        p = self.dom_pod[d]
        if dold == cap:
            self.cpod_full[c][p].discard(d)
        elif dnew == cap:
            self.cpod_full[c][p].add(d)
        self.stranded += (dnew if 0 < dnew < cap else 0) - (dold if 0 < dold < cap else 0)
        # (x[i] = x[i] + d, not x[i] += d: compiled, an augmented item assignment is a generic
        # PyNumber_InPlaceAdd on boxed objects; spelled out, the add is typed)
        pods = self.cpod_free[c]
        pods[p] = pods[p] + delta
        sites = self.csite_free[c]
        s = self.pod_site[p]
        sites[s] = sites[s] + delta
        self.class_free[c] = self.class_free[c] + delta

    # ------------------------------------------------------------------ queries
    def buckets(self) -> tuple[list[list[list[int]]], list[list[list[int]]]]:
        """The node and domain buckets as indices, in bucket order (for tests, which
        compare states)."""
        return (
            [[[s.index for s in bag] for bag in per] for per in self.node_bucket],
            [[[s.index for s in bag] for bag in per] for per in self.dom_bucket],
        )

    def node_name(self, node: int) -> str:
        """Stable human-readable node name: ``site/pod/d<domain>/n<node>``."""
        d = self.node_dom[node]
        return f"{self.topo.pods[self.dom_pod[d]]}/d{d}/n{node}"

    def gpus_of(self, placement: Placement) -> int:
        """Number of GPUs in a placement."""
        return sum(mask.bit_count() for _, mask in placement)

    def check(self) -> None:
        """Recount everything from the node level and compare (for tests; O(fleet))."""
        dom = [0] * len(self.dom_cap)
        for n, f in enumerate(self.node_free):
            assert 0 <= f <= self.node_cap[n], f"node {n} free {f}"
            assert int(self.node_mask[n]).bit_count() == f, f"node {n} mask"
            dom[self.node_dom[n]] += f
        assert dom == list(self.dom_free), "domain free counts drifted"
        for c, pods in enumerate(self.cpod_free):
            for p, free in pods.items():
                got = sum(dom[d] for d in self.cpod_doms[c][p])
                assert got == free, f"class {c} pod {p} free count drifted"
        assert sum(dom) == sum(self.class_free), "class free counts drifted"
        _check_buckets(self.node_bucket, self.node_slot, list(self.node_free))
        kept = [d for d, c in enumerate(self.dom_class) if self.dom_buckets_kept[c]]
        _check_buckets(self.dom_bucket, self.dom_slot, dom, kept)
        for c, buckets in enumerate(self.dom_bucket):
            if not self.dom_buckets_kept[c]:
                assert not any(buckets), f"class {c}: domain buckets kept although unread"
        stranded = sum(f for d, f in enumerate(dom) if 0 < f < self.dom_cap[d])
        assert stranded == self.stranded, "stranded count drifted"


def _check_buckets(
    buckets: list[list[list[Slot]]],
    slots: list[Slot],
    free: list[int],
    items: list[int] | None = None,
) -> None:
    """Every item (of ``items``; default all) sits once, at its recorded position, in the
    bucket of its free count."""
    members = 0
    for per_free in buckets:
        for count, bag in enumerate(per_free):
            for i, slot in enumerate(bag):
                item = slot.index
                assert slots[item] is slot, f"bucket {count} holds a stranger as {item}"
                assert free[item] == count, f"bucket {count} holds {item} with {free[item]} free"
                assert slot.pos == i, f"position of {item} drifted"
            members += len(bag)
    expected = len(free) if items is None else len(items)
    assert members == expected, "a bucket lost or repeated a member"


def _bag_add(bag: list[Slot], slot: Slot) -> None:
    slot.pos = len(bag)
    bag.append(slot)


def _bag_move(source: list[Slot], target: list[Slot], slot: Slot) -> None:
    """Move ``slot`` between buckets in O(1): out of ``source`` (whose last member takes
    its place), onto the end of ``target``."""
    last = source.pop()
    if last is not slot:
        i = slot.pos
        source[i] = last
        last.pos = i
    slot.pos = len(target)
    target.append(slot)
