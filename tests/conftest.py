"""Shared fixtures.

``shared_dir`` is the project's shared context folder (``../shared`` beside the repository:
docs and the real Philly/ITP traces). The traces are never copied into the repository, so a
test that needs them asks for this fixture and is skipped, with the reason, where the folder
is absent. ``AIFACTORY_SHARED`` points elsewhere when the checkout is laid out differently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where pyproject.toml is)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (or ``$AIFACTORY_SHARED``); skips the test when it is not there."""
    override = os.environ.get("AIFACTORY_SHARED")
    path = Path(override) if override else REPO_ROOT.parent / "shared"
    if not (path / "traces").is_dir():
        pytest.skip(
            f"shared context folder not found at {path} (expected ../shared/traces beside the "
            "repository, or set AIFACTORY_SHARED)"
        )
    return path
