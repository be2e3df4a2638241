"""The compiled heap pops what the pure-Python heap pops (aifactory/heap.py).

The event kernel and the tenant queues take their order from these heaps, so the two
builds agree on a run's results only if the heaps agree pop for pop, ties included.
``push``/``pop`` even run different code in the two builds (their own sift functions when
compiled, ``heapq`` over :class:`Keyed` as plain Python). One seeded sequence of pushes,
pops and a heapify, with many equal keys and whole rows that tie, runs in two
subprocesses, one per build (``AIFACTORY_PURE_PYTHON``); the pop orders must be equal.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from typing import Any

import pytest

from aifactory import native

# Reads the operations (JSON on stdin), prints the build and what each heap popped.
CHILD = r"""
import json, sys
from aifactory import heap
ops = json.load(sys.stdin)
rows = heap.RowHeap()
popped_rows = []
def top():
    return [rows.k0[0], rows.k1[0], int(rows.seq[0]), int(rows.ref[0])]
for op in ops["rows"]:
    if op[0] == "push":
        rows.push(op[1], op[2], op[3], op[4])
    elif op[0] == "extend":
        rows.extend(op[1], op[2], op[3], op[4])
    elif op[0] == "heapify":
        rows.heapify()
    elif len(rows):
        popped_rows.append(top())
        rows.pop()
while len(rows):
    popped_rows.append(top())
    rows.pop()
items = []
names = {}  # id(item) -> its name (Keyed has slots only)
popped_items = []
for op in ops["keyed"]:
    if op[0] == "push":
        item = heap.Keyed(op[1], op[2], tuple(op[3]), op[4])
        names[id(item)] = op[5]
        heap.push(items, item)
    elif items:
        popped_items.append(names.pop(id(heap.pop(items))))
while items:
    popped_items.append(names.pop(id(heap.pop(items))))
print(json.dumps({"compiled": heap.COMPILED, "rows": popped_rows, "keyed": popped_items}))
"""


def operations(seed: int, n: int = 4000) -> dict[str, list[list[Any]]]:
    """Pushes and pops (more pushes than pops, so the heaps grow to hundreds), then a
    batch of extends and a heapify; keys from small sets, so ties are everywhere, and
    some rows equal in every key (they differ only in ``ref``, or the item's name)."""
    rng = random.Random(seed)
    k0s = [0.0, 1.0, 2.5, -1.0, 1e9, float("inf")]
    k1s = [0.0, 3.0, -2.0]
    rows: list[list[Any]] = []
    for ref in range(n):
        if rng.random() < 0.6:
            rows.append(["push", rng.choice(k0s), rng.choice(k1s), rng.randrange(8), ref])
        else:
            rows.append(["pop"])
        if ref == n // 2:
            rows += [
                ["extend", rng.choice(k0s), rng.choice(k1s), rng.randrange(8), n + i]
                for i in range(300)
            ]
            rows.append(["heapify"])
    keyed: list[list[Any]] = []
    for name in range(n):
        if rng.random() < 0.6:
            rest = [rng.choice([0.0, 1.0])] if rng.random() < 0.5 else []
            seq = rng.randrange(8)
            keyed.append(["push", rng.choice(k0s), rng.choice(k1s), rest, seq, name])
        else:
            keyed.append(["pop"])
    return {"rows": rows, "keyed": keyed}


def popped(ops: dict[str, list[list[Any]]], *, pure: bool) -> dict[str, Any]:
    env = {**os.environ, native.PURE_ENV: "1" if pure else "0"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=json.dumps(ops),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    got: dict[str, Any] = json.loads(out.stdout)
    return got


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_compiled_and_pure_heaps_pop_in_the_same_order(seed: int) -> None:
    state, details = native.build_state()
    if state != "compiled":
        pytest.skip(f"no compiled build to compare with ({state} {details[:3]}; `make native`)")
    ops = operations(seed)
    compiled = popped(ops, pure=False)
    pure = popped(ops, pure=True)
    assert (compiled["compiled"], pure["compiled"]) == (True, False)
    rows = [tuple(r[:3]) for r in pure["rows"]]
    assert len(set(rows)) < len(rows)  # whole rows tie: the order among them is compared too
    assert compiled["rows"] == pure["rows"]
    assert compiled["keyed"] == pure["keyed"]
