"""The compiled build rule (aifactory/native.py): all or nothing, never stale.

A compiled module older than its source, or a build with modules missing, must not run:
every listed module is then imported from source. ``AIFACTORY_PURE_PYTHON=1`` forces
pure Python. The build state is checked on a fake source tree; the import behaviour in
subprocesses against the real one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aifactory import native

RELS = ("pkg/__init__.py", "pkg/a.py", "pkg/b.py")


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for rel in RELS:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    monkeypatch.setattr(native, "SRC", tmp_path)
    monkeypatch.setattr(native, "NATIVE", RELS)
    return tmp_path


def _build(tree: Path, rels: tuple[str, ...] = RELS, age_s: float = 0.0) -> None:
    for rel in rels:
        so = native.compiled_path(rel)
        so.write_bytes(b"")
        source_time = (tree / rel).stat().st_mtime
        os.utime(so, (source_time + 10 - age_s, source_time + 10 - age_s))


def test_no_build_is_absent(tree: Path) -> None:
    assert native.build_state() == ("absent", [])


def test_a_complete_fresh_build_is_used(tree: Path) -> None:
    _build(tree)
    assert native.build_state() == ("compiled", [])


def test_a_module_older_than_its_source_makes_the_build_stale(tree: Path) -> None:
    _build(tree)
    _build(tree, ("pkg/a.py",), age_s=20.0)  # compiled 10 s before its source changed
    assert native.build_state() == ("stale", ["pkg/a.py"])


def test_a_build_with_a_module_missing_is_partial(tree: Path) -> None:
    _build(tree, ("pkg/__init__.py", "pkg/a.py"))
    assert native.build_state() == ("partial", ["pkg/b.py"])


def test_module_names() -> None:
    assert native.module_name("aifactory/scheduler/policies/__init__.py") == (
        "aifactory.scheduler.policies"
    )
    assert native.module_name("aifactory/twin/kernel.py") == "aifactory.twin.kernel"
    assert all((native.SRC / rel).exists() for rel in native.NATIVE)


def _probe(env: dict[str, str]) -> list[str]:
    code = (
        "import aifactory, aifactory.native as n, aifactory.scheduler.scheduler as c, "
        "aifactory.scheduler.policies as p, aifactory.heap as h;"
        "print(aifactory.BUILD, n.running_compiled(), c.__file__.endswith('.py'),"
        " p.__file__.endswith('.py'), h.COMPILED)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def test_pure_python_can_be_forced() -> None:
    build, compiled, core_py, policies_py, heap = _probe({native.PURE_ENV: "1"})
    assert build == "pure"
    assert (compiled, core_py, policies_py) == ("False", "True", "True")
    assert heap == "False"  # the heap knows it runs as plain Python (and uses heapq)


def test_the_process_runs_what_the_build_state_says() -> None:
    state, _ = native.build_state()
    build, compiled, core_py, _policies_py, heap = _probe({native.PURE_ENV: "0"})
    assert build == state
    assert compiled == str(state == "compiled")
    assert core_py == str(state != "compiled")
    assert heap == compiled
