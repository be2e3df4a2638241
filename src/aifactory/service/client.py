"""A small HTTP client for the control plane, used by the CLI (and handy in scripts).

Configuration: ``AIFACTORY_URL`` and ``AIFACTORY_TOKEN``, or a TOML file
(``$AIFACTORY_CONFIG``, default ``~/.config/aifactory/client.toml``) with ``url`` and
``token`` keys; the environment wins. Submits carry an ``Idempotency-Key`` (random unless
given) and are retried with the same key on connection errors, 503s (the database is
down) and 429s (a limit; after the ``Retry-After`` the server asks, at most
``MAX_RETRY_AFTER_S``), so a retry never makes a second job. A 422 or any other refusal
is not retried: the same request would be refused again.
"""

from __future__ import annotations

import os
import time
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
SUBMIT_RETRIES = 5
MAX_RETRY_AFTER_S = 10.0


class ClientError(RuntimeError):
    """The service refused a request or could not be reached."""

    def __init__(
        self, message: str, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Where the service is and how to authenticate."""

    url: str
    token: str | None


def config_path() -> Path:
    """The client config file's location."""
    given = os.environ.get("AIFACTORY_CONFIG")
    return Path(given) if given else Path.home() / ".config" / "aifactory" / "client.toml"


def load_config() -> ClientConfig:
    """Environment first, then the config file, then defaults."""
    data: dict[str, Any] = {}
    path = config_path()
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError) as exc:
            msg = f"{path}: cannot read client config ({exc})"
            raise ClientError(msg) from None
    url = os.environ.get("AIFACTORY_URL") or str(data.get("url") or DEFAULT_URL)
    token = os.environ.get("AIFACTORY_TOKEN") or data.get("token")
    return ClientConfig(url=url.rstrip("/"), token=str(token) if token else None)


class ApiClient:
    """Typed-enough wrappers over the /v1 endpoints; errors become :class:`ClientError`."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not config.token:
            msg = "no token: set AIFACTORY_TOKEN or 'token' in " + str(config_path())
            raise ClientError(msg)
        self._http = httpx.Client(
            base_url=config.url,
            headers={"Authorization": f"Bearer {config.token}"},
            timeout=timeout_s,
            transport=transport,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            msg = f"cannot reach {self._http.base_url}: {exc}"
            raise ClientError(msg) from None
        if resp.status_code >= 400:
            raise ClientError(_explain(resp), resp.status_code, _retry_after(resp))
        if resp.status_code == 204:
            return None
        return resp.json()

    def submit(self, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        """Submit a job; connection errors are retried with the same Idempotency-Key."""
        key = idempotency_key or uuid.uuid4().hex
        delay = 0.2
        for attempt in range(SUBMIT_RETRIES):
            try:
                got: dict[str, Any] = self._call(
                    "POST", "/v1/jobs", json=body, headers={"Idempotency-Key": key}
                )
            except ClientError as exc:
                retryable = exc.status in (None, 429, 503)
                if not retryable or attempt == SUBMIT_RETRIES - 1:
                    raise
                asked = min(exc.retry_after_s or 0.0, MAX_RETRY_AFTER_S)
                time.sleep(max(delay, asked))
                delay *= 2
                continue
            return got
        msg = "unreachable"
        raise AssertionError(msg)

    def list_jobs(self, **params: Any) -> dict[str, Any]:
        """One page of jobs."""
        clean = {k: v for k, v in params.items() if v is not None}
        got: dict[str, Any] = self._call("GET", "/v1/jobs", params=clean)
        return got

    def show(self, job_id: int, log_lines: int = 50) -> dict[str, Any]:
        """One job with history and log tail."""
        got: dict[str, Any] = self._call(
            "GET", f"/v1/jobs/{job_id}", params={"log_lines": log_lines}
        )
        return got

    def cancel(self, job_id: int) -> dict[str, Any]:
        """Cancel a job."""
        got: dict[str, Any] = self._call("DELETE", f"/v1/jobs/{job_id}")
        return got

    def forecast(self, job_id: int) -> dict[str, Any]:
        """Estimated start and end of a job."""
        got: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}/forecast")
        return got

    def request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """Any other call (projects, allocations): the decoded JSON answer."""
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        return self._call(method, path, json=body, params=clean or None)

    def whatif(self, body: dict[str, Any], timeout_s: float = 600.0) -> dict[str, Any]:
        """A what-if from the live state (admins): it forecasts the whole queue, at least
        twice, so it may take far longer than other calls."""
        got: dict[str, Any] = self._call("POST", "/v1/twin/whatif", json=body, timeout=timeout_s)
        return got

    def quotas(self) -> list[dict[str, Any]]:
        """Quota rows visible to the caller."""
        got: list[dict[str, Any]] = self._call("GET", "/v1/quotas")
        return got


def _retry_after(resp: httpx.Response) -> float | None:
    """The ``Retry-After`` seconds of a response, if it gives a number."""
    try:
        return float(resp.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def _explain(resp: httpx.Response) -> str:
    try:
        detail = resp.json().get("detail")
    except ValueError:
        detail = resp.text
    if isinstance(detail, list):
        parts = [
            f"{d.get('field', '?')}: {d.get('reason', d)}" for d in detail if isinstance(d, dict)
        ]
        detail = "; ".join(parts) or str(detail)
    return f"{resp.status_code}: {detail}"
