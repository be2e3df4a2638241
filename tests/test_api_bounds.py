"""Issue #14, the API's edge: no tenant input reaches the database unbounded.

Each case here was a reproduction first: ids and cursors of 2^63 and more were a 500 on
SQLite and a 503 ("database unavailable", retried by the client, read as an outage) on
PostgreSQL; a NUL in a string, a checkpoint interval of a second, non-finite floats and
loosely typed numbers were all accepted. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from aifactory.service import store
from aifactory.service.errors import db_error_status
from aifactory.service.tables import jobs
from api_support import Env, running_api
from test_service_support import DB_PARAMS, database_url

INT64_MAX = 2**63 - 1
TOO_BIG = [2**63, 2**64, 10**30]


@pytest.fixture(params=DB_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_url(request.param, tmp_path)


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[Env]:
    with running_api(db_url, tmp_path) as running:
        yield running


def fields(resp: Any) -> list[str]:
    assert resp.status_code == 422, (resp.status_code, resp.text)
    detail = resp.json()["detail"]
    assert all(set(p) == {"field", "reason"} and p["reason"] for p in detail), detail
    return [p["field"] for p in detail]


@pytest.mark.parametrize("big", TOO_BIG)
@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/v1/jobs/{}", "job_id"),
        ("DELETE", "/v1/jobs/{}", "job_id"),
        ("GET", "/v1/jobs/{}/forecast", "job_id"),
        ("DELETE", "/v1/tokens/{}", "token_id"),
    ],
)
def test_ids_past_int64_are_a_422_naming_the_field(
    env: Env, method: str, path: str, field: str, big: int
) -> None:
    resp = env.client.request(method, path.format(big), headers=env.h("admin"))
    assert fields(resp) == [f"path.{field}"]


@pytest.mark.parametrize("big", TOO_BIG)
def test_a_cursor_past_int64_is_a_422(env: Env, big: int) -> None:
    resp = env.client.get("/v1/jobs", params={"cursor": big}, headers=env.h("lab"))
    assert fields(resp) == ["query.cursor"]


def test_the_largest_int64_id_is_simply_not_found(env: Env) -> None:
    assert env.client.get(f"/v1/jobs/{INT64_MAX}", headers=env.h("lab")).status_code == 404
    page = env.client.get("/v1/jobs", params={"cursor": INT64_MAX}, headers=env.h("lab"))
    assert page.status_code == 200
    assert env.client.delete(f"/v1/tokens/{INT64_MAX}", headers=env.h("admin")).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"command": "echo a\u0000b"}, "command"),
        ({"name": "a\u0000"}, "name"),
        ({"gpu_class": "h100\u0000"}, "gpu_class"),
        ({"tenant": "lab\u0000"}, "tenant"),
        ({"checkpoint_interval_s": 1}, "checkpoint_interval_s"),
        ({"checkpoint_interval_s": 59.9}, "checkpoint_interval_s"),
        ({"time_limit_s": 0.5}, "time_limit_s"),
        ({"time_limit_s": 31 * 86_400}, "time_limit_s"),
        ({"gpus": True}, "gpus"),
        ({"gpus": "8"}, "gpus"),
        ({"gpus": "8.0"}, "gpus"),
        ({"gpus": 8.5}, "gpus"),
        ({"gpus": False}, "gpus"),
        ({"time_limit_s": "3600"}, "time_limit_s"),
        ({"preemptible": "yes"}, "preemptible"),
        ({"preemptible": 1}, "preemptible"),
        ({"command": 5}, "command"),
    ],
)
def test_bad_submit_fields_are_a_422_naming_the_field(
    env: Env, body: dict[str, Any], field: str
) -> None:
    resp = env.submit("lab", **body)
    assert field in fields(resp)
    assert env.count(jobs) == 0


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize("field", ["time_limit_s", "checkpoint_interval_s"])
def test_non_finite_floats_are_refused(env: Env, field: str, literal: str) -> None:
    raw = f'{{"gpus": 1, "command": "true", "{field}": {literal}}}'
    resp = env.client.post(
        "/v1/jobs", content=raw, headers=env.h("lab") | {"Content-Type": "application/json"}
    )
    assert field in fields(resp)
    assert env.count(jobs) == 0


@pytest.mark.parametrize("raw", [b"\xff\xfe{", b'{"gpus": 1, "command": "\xc3"}', b"{", b""])
def test_a_body_that_cannot_be_parsed_is_a_422(env: Env, raw: bytes) -> None:
    """It was FastAPI's 400 for bytes that are not UTF-8 (undocumented, found by schemathesis)."""
    resp = env.client.post(
        "/v1/jobs", content=raw, headers=env.h("lab") | {"Content-Type": "application/json"}
    )
    assert "body" in fields(resp)


def test_a_405_names_every_method_of_the_path(env: Env) -> None:
    """Found by schemathesis: Allow named only the first route's method."""
    resp = env.client.request("PUT", "/v1/jobs/1", headers=env.h("lab"))
    assert resp.status_code == 405
    assert set(resp.headers["Allow"].split(", ")) >= {"GET", "DELETE"}
    resp = env.client.request("PATCH", "/v1/tokens", headers=env.h("admin"))
    assert set(resp.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_the_edges_of_the_ranges_are_accepted(env: Env) -> None:
    ok = env.submit("lab", time_limit_s=1, checkpoint_interval_s=60, gpus=1)
    assert ok.status_code == 201, ok.text
    integral = env.submit("lab", gpus=2.0)  # an integer to JSON Schema, so accepted
    assert integral.status_code == 201, integral.text
    assert integral.json()["gpus"] == 2
    longest = env.submit("lab", time_limit_s=30 * 86_400, checkpoint_interval_s=None)
    assert longest.status_code == 201, longest.text


def test_a_time_limit_past_the_configured_maximum_is_a_422(db_url: str, tmp_path: Path) -> None:
    with running_api(db_url, tmp_path, max_time_limit_s=7200.0) as env:
        assert env.submit("lab", time_limit_s=7200).status_code == 201
        resp = env.submit("lab", time_limit_s=7201)
        assert fields(resp) == ["time_limit_s"]
        assert "7200" in resp.json()["detail"][0]["reason"]


@pytest.mark.parametrize(
    "params",
    [{"name": "a\u0000b"}, {"tenant": "lab\u0000"}, {"limit": "1e3"}, {"log_lines": "-1"}],
)
def test_bad_query_strings_are_a_422(env: Env, params: dict[str, str]) -> None:
    resp = env.client.get("/v1/jobs", params=params, headers=env.h("lab"))
    if "log_lines" in params:
        env.submit("lab")
        resp = env.client.get("/v1/jobs/1", params=params, headers=env.h("lab"))
    assert fields(resp) == [f"query.{next(iter(params))}"]


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/v1/jobs", {"tenat": "startup"}, "query.tenat"),
        ("/v1/jobs", {"": "false"}, "query."),
        ("/v1/quotas", {"tenant": "startup"}, "query.tenant"),
        ("/v1/jobs/1", {"log": "5"}, "query.log"),
    ],
)
def test_unknown_query_parameters_are_a_422(
    env: Env, path: str, query: dict[str, str], field: str
) -> None:
    """Found by schemathesis: ``GET /v1/jobs?tenat=startup`` listed every job of the
    caller's own tenant as if there were no filter at all; now a misspelt filter is refused."""
    env.submit("lab")
    resp = env.client.get(path, params=query, headers=env.h("lab"))
    assert fields(resp) == [field]


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/v1/metrics/samples", [("start", "1"), ("start", "4")], "query.start"),
        ("/v1/jobs", [("tenant", "lab"), ("tenant", "startup")], "query.tenant"),
    ],
)
def test_a_one_valued_query_parameter_given_twice_is_a_422(
    env: Env, path: str, query: list[tuple[str, str]], field: str
) -> None:
    """Found by schemathesis: ``/v1/metrics/samples?start=&start=4`` answered 200, read as
    its last value; a parameter that takes one value is refused when given twice."""
    resp = env.client.get(path, params=query, headers=env.h("admin"))
    assert fields(resp) == [field]


def test_a_list_query_parameter_takes_several_values(env: Env) -> None:
    env.submit("lab")
    query = [("state", "pending"), ("state", "running")]
    resp = env.client.get("/v1/jobs", params=query, headers=env.h("lab"))
    assert resp.status_code == 200, resp.text
    assert [job["id"] for job in resp.json()["items"]] == [1]


def test_an_unknown_tenant_filter_is_a_422(env: Env) -> None:
    """Found by schemathesis: ``?tenant=AAA`` (not in the schema's enum) listed nothing."""
    resp = env.client.get("/v1/jobs", params={"tenant": "AAA"}, headers=env.h("admin"))
    assert fields(resp) == ["query.tenant"]


@pytest.mark.parametrize("key", ["a\u0000b", "tab\tkey", "x" * 129, ""])
def test_bad_idempotency_keys_are_a_422(env: Env, key: str) -> None:
    resp = env.submit("lab", headers={"Idempotency-Key": key})
    assert fields(resp) == ["header.Idempotency-Key"]
    assert env.count(jobs) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"note": "a\u0000"}, "note"),
        ({"tenant": "lab\u0000"}, "tenant"),
        ({"role": "member\u0000"}, "role"),
        ({"expires_in_s": float("nan")}, "expires_in_s"),
        ({"expires_in_s": 0}, "expires_in_s"),
        ({"expires_in_s": "3600"}, "expires_in_s"),
    ],
)
def test_bad_token_requests_are_a_422(env: Env, body: dict[str, Any], field: str) -> None:
    payload = json.dumps({"tenant": "lab"} | body, allow_nan=True)
    resp = env.client.post(
        "/v1/tokens",
        content=payload,
        headers=env.h("admin") | {"Content-Type": "application/json"},
    )
    assert field in fields(resp)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (sa.exc.OperationalError("SELECT", {}, Exception("connection refused")), 503),
        (sa.exc.InterfaceError("SELECT", {}, Exception("connection closed")), 503),
        (sa.exc.DisconnectionError("gone"), 503),
        (sa.exc.TimeoutError("pool exhausted"), 503),
        (sa.exc.DataError("INSERT", {}, Exception("value out of range")), 422),
        (sa.exc.IntegrityError("INSERT", {}, Exception("NOT NULL")), 422),
        (sa.exc.StatementError("bind", "SELECT", {}, OverflowError("int too big")), 422),
        (sa.exc.ProgrammingError("SELECT", {}, Exception("syntax")), 500),
    ],
)
def test_database_errors_caused_by_input_are_422_and_only_outages_503(
    error: sa.exc.SQLAlchemyError, status: int
) -> None:
    assert db_error_status(error) == status


def test_input_the_bounds_missed_is_a_422_not_an_outage(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    def overflow(*_args: object, **_kwargs: object) -> None:
        raise sa.exc.StatementError("bind", "SELECT", {}, OverflowError("int too big"))

    monkeypatch.setattr(store, "get_job", overflow)
    resp = env.client.get("/v1/jobs/5", headers=env.h("lab"))
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["field"] == "request"


def _walk(schema: dict[str, Any], components: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Every leaf type in a request schema: (type, its schema), through $refs and unions."""
    if "$ref" in schema:
        yield from _walk(components[schema["$ref"].rsplit("/", 1)[1]], components)
        return
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            yield from _walk(sub, components)
    kind = schema.get("type")
    if kind == "object":
        for sub in schema.get("properties", {}).values():
            yield from _walk(sub, components)
    elif kind == "array":
        for sub in schema.get("prefixItems", []):  # a tuple: each place its own type
            yield from _walk(sub, components)
        if "items" in schema:
            yield from _walk(schema["items"], components)
    elif kind is not None:
        yield kind, schema


def test_every_input_in_the_openapi_schema_is_bounded(env: Env) -> None:
    """The guard against the class of bug: a new parameter or field without bounds fails
    here. Integers lie within int64, numbers within a finite range, strings have a length
    limit and a pattern that refuses NUL (or are an enum or a constant)."""
    spec = env.client.get("/openapi.json").json()
    components = spec["components"]["schemas"]
    seen = 0
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            inputs = [(f"{p['in']}.{p['name']}", p["schema"]) for p in op.get("parameters", [])]
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                inputs.append(("body", body["schema"]))
            for where, schema in inputs:
                for kind, leaf in _walk(schema, components):
                    seen += 1
                    what = f"{method.upper()} {path} {where}: {leaf}"
                    if "enum" in leaf or "const" in leaf or kind in ("boolean", "null"):
                        continue
                    if kind == "integer":
                        low = leaf.get("minimum", leaf.get("exclusiveMinimum", -(2**64)))
                        assert low >= -(2**63), what
                        assert leaf.get("maximum", 2**64) <= INT64_MAX, what
                    elif kind == "number":
                        assert "minimum" in leaf or "exclusiveMinimum" in leaf, what
                        assert "maximum" in leaf, what
                    elif kind == "string":
                        assert "maxLength" in leaf, what
                        # the pattern refuses NUL (a character class without it, say)
                        pattern = leaf.get("pattern", "")
                        assert pattern, what
                        assert not any(re.search(pattern, v) for v in ("\x00", "a\x00a")), what
                    else:
                        pytest.fail(f"unbounded kind {kind}: {what}")
    assert seen > 20
    stored = env.count(jobs)
    assert stored == 0
