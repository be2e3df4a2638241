"""Issue #14, checked in CI: schemathesis against the live OpenAPI schema of a real server.

A real Uvicorn server on a free port of 127.0.0.1 runs the whole service (SQLite, the
scheduler loop on, the ``noop`` executor). Every operation of its ``/openapi.json`` gets
``EXAMPLES`` generated requests per generation mode (positive: valid per the schema;
negative: invalid) and per token (a member and an admin), derandomized so that CI runs
the same requests each time. Each response must not be a server error (5xx), must have
a documented status, content type and headers, must match its documented body schema,
and invalid requests must be refused. The figures (operations, requests, 5xx, schema
violations, time) are printed to the terminal.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aifactory.service.api import Service, create_app
from aifactory.service.auth import Role, create_token
from aifactory.service.settings import ExecutorKind, ServiceSettings

EXAMPLES = 40  # per operation, generation mode and token
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Live:
    base: str
    service: Service
    tokens: dict[str, str]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    settings_ = ServiceSettings(
        database_url=f"sqlite:///{tmp_path}/schemathesis.db",
        fleet="demo",
        data_dir=tmp_path,
        executor=ExecutorKind.NOOP,
        tick_s=0.05,
        lock_retry_s=0.05,
    )
    service = Service(settings_)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    toks = {
        "member": create_token(service.db, tenant="lab", role=Role.MEMBER, now=time.time())[1],
        "admin": create_token(service.db, tenant=None, role=Role.ADMIN, now=time.time())[1],
    }
    yield Live(f"http://127.0.0.1:{port}", service, toks)
    server.should_exit = True
    thread.join(10)


@dataclass
class Tally:
    operations: set[str] = field(default_factory=set)
    requests: int = 0
    server_errors: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def exercise(
    live: Live,
    operation: schemathesis.APIOperation,
    who: str,
    mode: GenerationMode,
    session: requests.Session,
    tally: Tally,
) -> None:
    """EXAMPLES requests to one operation as ``who``; every failed check is recorded."""
    auth = {"Authorization": f"Bearer {live.tokens[who]}"}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        resp = case.call(base_url=live.base, session=session, headers=auth)
        tally.requests += 1
        tally.by_status[resp.status_code] = tally.by_status.get(resp.status_code, 0) + 1
        if resp.status_code >= 500:
            tally.server_errors += 1
        try:
            case.validate_response(resp, checks=CHECKS, headers=auth)
        except (Exception, FailureGroup) as exc:  # noqa: BLE001 (collected: all reported)
            tally.failures.append(
                f"{operation.label} as {who}, {mode.value}: {resp.status_code} "
                f"{str(exc)[:800]}\n    {case.as_curl_command()[:800]}"
            )

    try:
        run()
    except Unsatisfiable:
        # nothing to make invalid (no parameters, no body): no negative cases to send
        assert mode is GenerationMode.NEGATIVE, operation.label


def test_the_live_api_conforms_to_its_openapi_schema(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    schema = schemathesis.openapi.from_url(f"{live.base}/openapi.json")
    tally = Tally()
    session = requests.Session()
    # Revoking tokens last: a generated DELETE /v1/tokens/{id} may hit the test's own.
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()),
        key=lambda op: op.label == "DELETE /v1/tokens/{token_id}",
    )
    for operation in operations:
        tally.operations.add(operation.label)
        for who in live.tokens:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                exercise(live, operation, who, mode, session, tally)
    took = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\nschemathesis {schemathesis.__version__}: {len(tally.operations)} operations, "
            f"{tally.requests} requests, {tally.server_errors} server errors (5xx), "
            f"{len(tally.failures)} failed checks (schema violations among them), {took:.1f} s; "
            f"statuses {dict(sorted(tally.by_status.items()))}"
        )
        for failure in tally.failures[:40]:
            print(" -", failure)
    assert tally.server_errors == 0
    assert tally.failures == []
    # 13, 14 of projects and allocations (#19), fleet status and share (#21), the
    # dashboard's metrics samples and queue (#21 §1), a project's recent charges (#19) and
    # the Twin page's reports, report tickets and what-if (#21 §1)
    assert len(tally.operations) == 35
