"""A live control plane (Uvicorn in a thread) for the command-line client's tests (no tests
here): the CLI talks to it over HTTP exactly as a user's does."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner, Result

from aifactory.cli import app
from aifactory.service.api import Service, create_app
from aifactory.service.settings import ExecutorKind, ServiceSettings

runner = CliRunner()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_service(db_url: str, tmp_path: Path, **settings: Any) -> Iterator[tuple[str, Service]]:
    """A started service on a free port (noop executor unless told): (its URL, it)."""
    config = ServiceSettings(
        **(
            {
                "database_url": db_url,
                "data_dir": tmp_path,
                "executor": ExecutorKind.NOOP,
                "tick_s": 0.05,
            }
            | settings
        )
    )
    service = Service(config)
    with serving(service) as url:
        yield url, service


@contextmanager
def serving(service: Service) -> Iterator[str]:
    """Serve ``service`` with Uvicorn on a free port in a thread; yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def make_token(db_url: str, tenant: str | None, role: str) -> str:
    """A fresh token made with `aifactory admin create-token`."""
    args = ["admin", "create-token", "--role", role, "--database-url", db_url, "--json"]
    if tenant:
        args += ["--tenant", tenant]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["token"])


def as_user(monkeypatch: pytest.MonkeyPatch, url: str, token: str) -> None:
    """Point the CLI's client at ``url`` with ``token`` (as AIFACTORY_URL/TOKEN do)."""
    monkeypatch.setenv("AIFACTORY_URL", url)
    monkeypatch.setenv("AIFACTORY_TOKEN", token)
    monkeypatch.setenv("AIFACTORY_CONFIG", "/nonexistent/client.toml")


def cli(*args: str) -> Result:
    """``aifactory ARGS`` through Typer's runner (stdout and stderr apart)."""
    return runner.invoke(app, list(args))
