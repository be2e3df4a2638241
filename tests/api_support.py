"""A running API over a fresh database, for the API-edge tests (no tests here).

``running_api`` starts a :class:`Service` (scheduler loop on, fake executor) behind a
``TestClient`` and makes one token per role; settings can be overridden per test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from aifactory.fleet import Fleet
from aifactory.service.api import Service, create_app
from aifactory.service.auth import Role, create_token
from aifactory.service.settings import ServiceSettings
from test_service_support import FakeExecutor

ROLES = {
    "admin": (None, Role.ADMIN),
    "lab-admin": ("lab", Role.TENANT_ADMIN),
    "lab": ("lab", Role.MEMBER),
    "startup": ("startup", Role.MEMBER),
}


@dataclass
class Env:
    """The client, the service behind it, its executor and a token per role."""

    client: TestClient
    service: Service
    executor: FakeExecutor
    tokens: dict[str, str]

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def submit(self, who: str, headers: dict[str, str] | None = None, **body: Any) -> Any:
        payload = {"gpus": 1, "command": "true"} | body
        return self.client.post("/v1/jobs", json=payload, headers=self.h(who) | (headers or {}))

    def count(self, table: sa.Table) -> int:
        with self.service.db.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


@contextmanager
def running_api(
    db_url: str,
    tmp_path: Path,
    *,
    clock: Callable[[], float] = time.time,
    fleet: Fleet | None = None,
    **settings: Any,
) -> Iterator[Env]:
    """A started service and a token per role; stopped on exit."""
    executor = FakeExecutor()
    config = ServiceSettings(
        **(
            {
                "database_url": db_url,
                "fleet": "demo",
                "data_dir": tmp_path,
                "tick_s": 0.05,
                "lock_retry_s": 0.05,
            }
            | settings
        )
    )
    service = Service(config, executor=executor, clock=clock, fleet=fleet)
    with TestClient(create_app(service)) as client:
        toks = {
            name: create_token(service.db, tenant=t, role=r, now=clock())[1]
            for name, (t, r) in ROLES.items()
        }
        yield Env(client, service, executor, toks)
