"""The compiled build of the twin's hot path, and the rule that keeps it honest.

``scripts/build_native.py`` compiles the modules listed here with mypyc into C extension
modules next to their sources (``make`` does it when a compiler is present). Python then
imports the extension instead of the source. Two things must never happen: running a
compiled module older than its source (an edited scheduler would silently run its old
code) and mixing compiled and source modules (compiled modules call each other directly,
so half a build would hold two different ``Job`` classes). So the build is used all or
nothing: if any compiled module is missing or older than its source, or
``AIFACTORY_PURE_PYTHON=1`` is set, every listed module is imported from source.

This module imports nothing from aifactory: the build script loads it by path.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# The modules on the twin's per-event path, relative to src/.
NATIVE = (
    "aifactory/heap.py",
    "aifactory/scheduler/backfill.py",
    "aifactory/scheduler/cluster.py",
    "aifactory/scheduler/config.py",
    "aifactory/scheduler/cycle.py",
    "aifactory/scheduler/grace.py",
    "aifactory/scheduler/owners.py",
    "aifactory/scheduler/pending.py",
    "aifactory/scheduler/power.py",
    "aifactory/scheduler/placement.py",
    "aifactory/scheduler/preemption.py",
    "aifactory/scheduler/queue.py",
    "aifactory/scheduler/quota.py",
    "aifactory/scheduler/records.py",
    "aifactory/scheduler/running.py",
    "aifactory/scheduler/scheduler.py",
    "aifactory/scheduler/seat.py",
    "aifactory/scheduler/shortcuts.py",
    "aifactory/scheduler/snapshot.py",
    "aifactory/scheduler/state.py",
    "aifactory/scheduler/usage.py",
    "aifactory/scheduler/policies/__init__.py",
    "aifactory/scheduler/policies/base.py",
    "aifactory/scheduler/policies/fair.py",
    "aifactory/scheduler/policies/fifo.py",
    "aifactory/scheduler/policies/las.py",
    "aifactory/scheduler/policies/priority.py",
    "aifactory/scheduler/policies/sjf.py",
    "aifactory/twin/fields.py",
    "aifactory/twin/kernel.py",
    "aifactory/twin/observer.py",
    "aifactory/twin/simulator.py",
    "aifactory/workload/job.py",
    "aifactory/workload/progress.py",
)
PURE_ENV = "AIFACTORY_PURE_PYTHON"
SRC = Path(__file__).resolve().parents[1]
EXT_SUFFIX: str = sysconfig.get_config_var("EXT_SUFFIX") or ".so"


def module_name(rel: str) -> str:
    """``aifactory/x/__init__.py`` -> ``aifactory.x``; ``aifactory/x/y.py`` -> ``aifactory.x.y``."""
    name = rel.removesuffix(".py").replace("/", ".")
    return name.removesuffix(".__init__")


def compiled_path(rel: str) -> Path:
    """Where the build puts the extension module of a source file."""
    return SRC / (rel.removesuffix(".py") + EXT_SUFFIX)


def build_state() -> tuple[str, list[str]]:
    """("compiled" | "absent" | "stale" | "partial", details) of the build on disk."""
    present: list[str] = []
    stale: list[str] = []
    for rel in NATIVE:
        so = compiled_path(rel)
        if not so.exists():
            continue
        present.append(rel)
        if so.stat().st_mtime < (SRC / rel).stat().st_mtime:
            stale.append(rel)
    if not present:
        return "absent", []
    if stale:
        return "stale", stale
    if len(present) < len(NATIVE):
        return "partial", sorted(set(NATIVE) - set(present))
    return "compiled", []


class _FromSource(importlib.abc.MetaPathFinder):
    """Finds the listed modules as source files, ahead of their extension modules."""

    def __init__(self, names: dict[str, Path]) -> None:
        self.names = names

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,  # noqa: ARG002 (MetaPathFinder's signature)
        target: ModuleType | None = None,  # noqa: ARG002
    ) -> importlib.machinery.ModuleSpec | None:
        source = self.names.get(fullname)
        if source is None:
            return None
        package = [str(source.parent)] if source.name == "__init__.py" else None
        return importlib.util.spec_from_file_location(
            fullname, source, submodule_search_locations=package
        )


def install() -> str:
    """Decide compiled or source for this process (called once, by aifactory/__init__);
    returns the build state, or "pure" when forced."""
    state, details = build_state()
    if os.environ.get(PURE_ENV, "") not in {"", "0"}:
        state = "pure"
    elif state in {"stale", "partial"}:
        warnings.warn(
            f"aifactory's compiled modules are {state} ({', '.join(details[:3])}...): "
            "running pure Python; `make native` rebuilds them",
            RuntimeWarning,
            stacklevel=2,
        )
    if state not in {"compiled", "absent"}:
        names = {module_name(rel): SRC / rel for rel in NATIVE}
        if not any(isinstance(f, _FromSource) for f in sys.meta_path):
            sys.meta_path.insert(0, _FromSource(names))
    return state


def running_compiled() -> bool:
    """Whether the scheduler core in this process is the compiled build."""
    from aifactory.scheduler import scheduler  # noqa: PLC0415 (import on demand)

    return str(scheduler.__file__).endswith(EXT_SUFFIX)
