"""A sweep run whose worker process dies the first time (for the Ray engine's retry test).

A module of its own so that Ray workers import it by name (the test puts this folder on
their PYTHONPATH) instead of pickling a test function.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aifactory.whatif.runner import RunTask


def die_once(task: RunTask) -> dict[str, Any]:
    """Kill this worker on the first attempt (a marker file under ``keep_dir`` says which)."""
    assert task.keep_dir is not None
    marker = Path(task.keep_dir) / f"{task.variation}-{task.seed_index}.tried"
    if not marker.exists():
        marker.write_text("1", encoding="utf-8")
        os._exit(1)  # the worker process dies, as on a lost node
    return {
        "variation": task.variation,
        "seed_index": task.seed_index,
        "seed": task.seed,
        "status": "ok",
        "error": "",
    }
