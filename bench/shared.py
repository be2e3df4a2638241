"""Where the benchmarks find ``../shared`` (the traces): ``$AIFACTORY_SHARED`` if set (as
the tests read it, tests/conftest.py), else ``shared`` beside the checkout, else, from a
linked git worktree, beside its main checkout."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The shared folder (it may not exist: a benchmark that needs it skips)."""
    override = os.environ.get("AIFACTORY_SHARED")
    if override:
        return Path(override)
    here = REPO.parent / "shared"
    if here.is_dir():
        return here
    common = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=REPO, capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    return Path(common).parent.parent / "shared" if common else here


TRACES = shared_dir() / "traces"
PHILLY = TRACES / "philly" / "philly.csv"
