"""Several API worker processes behind one port (``aifactory serve --workers N``).

One Python process serves HTTP, group-commits submits and runs the scheduler loop under
one GIL; at about a thousand submits/s that GIL, not the CPU, is the limit. With
``--workers N`` Uvicorn's supervisor starts N processes that share the listening socket
(the kernel spreads connections over them), each with its own event loop and submit
writer. Every worker also runs a scheduler loop, but the leader lease
(:mod:`aifactory.service.lease`) lets exactly one of them act; the others wait as
followers and take over if the leader dies.

What to know before using it:

- PostgreSQL only. On SQLite every write takes one file lock; writers in different
  processes then wait in SQLite's busy handler, which sleeps in steps of up to 100 ms
  (the in-process write lock that avoids this cannot span processes).
- A job submitted through a worker that does not lead wakes no scheduler: the leader
  sees it at its next periodic cycle (``--tick``, 1 s by default) instead of at once.
- Migrations run once, in the supervisor, before the workers start.
- ``kill -9`` of the supervisor alone leaves its workers running: stop the process
  group, or use a process manager that does.

Workers are separate processes started by Uvicorn, so the settings reach them through
one environment variable, as JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from aifactory.service.settings import ExecutorKind, LostPolicy, ServiceSettings

SETTINGS_ENV = "AIFACTORY_WORKER_SETTINGS"
FACTORY = "aifactory.service.workers:app_from_env"


def settings_to_env(settings: ServiceSettings) -> str:
    """The settings as the JSON a worker reads back with :func:`settings_from_env`."""
    raw: dict[str, Any] = asdict(settings)
    raw["executor"] = settings.executor.value
    raw["lost_policy"] = settings.lost_policy.value
    raw["data_dir"] = str(settings.data_dir)
    return json.dumps(raw)


def settings_from_env(value: str) -> ServiceSettings:
    """Settings written by :func:`settings_to_env`."""
    raw: dict[str, Any] = json.loads(value)
    raw["executor"] = ExecutorKind(raw["executor"])
    raw["lost_policy"] = LostPolicy(raw["lost_policy"])
    raw["data_dir"] = Path(raw["data_dir"])
    return ServiceSettings(**raw)


def app_from_env() -> FastAPI:
    """Uvicorn's app factory in each worker process: the service from the environment."""
    from aifactory.service.api import Service, create_app  # noqa: PLC0415 (worker-only)
    from aifactory.service.gcpacing import GcPacer  # noqa: PLC0415

    settings = settings_from_env(os.environ[SETTINGS_ENV])
    GcPacer().start()  # a daemon thread; it dies with the worker
    return create_app(Service(settings))
