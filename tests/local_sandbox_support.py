"""Helpers for the local executor's tests (no tests here): the users its sandbox needs and a
Python interpreter a non-root service user can run.

As root, the local executor runs jobs as ``aifactory-job`` and refuses to start without it;
``scripts/setup-job-user.sh`` creates it (and ``aifactory-svc``, the non-root service user
of the tests). Tests ask :func:`require_job_user`, which runs the script when the users are
missing, or skips saying why it cannot.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SETUP = REPO / "scripts" / "setup-job-user.sh"
JOB_USER = "aifactory-job"
SVC_USER = "aifactory-svc"


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


@cache
def users_missing() -> str | None:
    """Why the sandbox users cannot be had; None once they exist (made here if need be)."""
    if _exists(JOB_USER) and _exists(SVC_USER):
        return None
    if os.geteuid() != 0:
        return f"users {JOB_USER}/{SVC_USER} missing; run {SETUP} as root"
    done = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"{SETUP} failed ({done.returncode}): {done.stderr.strip()}"
    return None


def require_job_user() -> None:
    """Skip unless jobs can run: as root that needs the job user; otherwise nothing."""
    if os.geteuid() == 0:
        why = users_missing()
        if why is not None:
            pytest.skip(why)


@contextmanager
def reachable_dir() -> Iterator[Path]:
    """A fresh directory the job user can pass through (pytest's tmp_path is root's alone).

    A job reaches its working directory (its HOME) by path, so every directory above the
    jobs root must be searchable by the job's user.
    """
    path = Path(tempfile.mkdtemp(prefix="aif-local-"))
    try:
        path.chmod(0o711)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def expected_job_uid() -> int:
    """The uid jobs of a LocalExecutor made here run as."""
    return pwd.getpwnam(JOB_USER).pw_uid if os.geteuid() == 0 else os.geteuid()


def as_user(user: str) -> list[str]:
    """The command prefix that runs a command as ``user`` with only that user's group."""
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--"]


@contextmanager
def svc_tree() -> Iterator[Path]:
    """A copy of the package and the sandbox driver that any user can read.

    The checkout may live where the service user cannot read it (under /root on CI), so
    the non-root service runs this copy (pure Python: no compiled modules are copied).
    """
    with reachable_dir() as tree:
        tree.chmod(0o755)
        skip = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")
        shutil.copytree(REPO / "src" / "aifactory", tree / "aifactory", ignore=skip)
        shutil.copy(REPO / "tests" / "sandbox_driver.py", tree)
        for path in tree.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield tree


def svc_python(tree: Path) -> tuple[str | None, str]:
    """An interpreter the service user can run with ``tree`` importable, or why none.

    The test's own may live where that user cannot reach (a virtualenv under /root), so a
    system Python 3.11+ is tried as well; the executor and its supervisor need only the
    standard library.
    """
    if os.geteuid() != 0:
        return None, "switching to the service user needs root"
    why = users_missing()
    if why is not None:
        return None, why
    if shutil.which("setpriv") is None:
        return None, "setpriv (util-linux) not found"
    probe = (  # as the executor does: start its own interpreter again, for the supervisor
        "import subprocess, sys; assert sys.version_info >= (3, 11); "
        "import aifactory.service.executors.local; "
        "subprocess.run([sys.executable, '-I', '-S', '-c', ''], check=True)"
    )
    tried = []
    for python in dict.fromkeys([sys.executable, "/usr/bin/python3", shutil.which("python3")]):
        if not python:
            continue
        done = subprocess.run(
            [*as_user(SVC_USER), python, "-c", probe],
            env=svc_env(tree),
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
        if done.returncode == 0:
            return python, ""
        tried.append(f"{python}: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
    return None, f"no Python 3.11+ that {SVC_USER} can run ({'; '.join(tried)})"


def svc_env(tree: Path) -> dict[str, str]:
    """The environment of a driver run as the service user, importing from ``tree``."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(tree),
        "AIFACTORY_PURE_PYTHON": "1",
    }
