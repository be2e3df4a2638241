"""Error answers of the API: which status each failure gets, and how the OpenAPI says so.

The rules (issue #14: no tenant input may read as an outage):

- invalid input is a 422 whose body is ``{"detail": [{"field": ..., "reason": ...}]}``,
  whether pydantic found it, FastAPI could not parse the body at all (its 400), a handler
  did (:class:`FieldError`), or, past every bound,
  the database did: a value it could not hold or bind (``DataError``, ``IntegrityError``,
  a bind-time ``StatementError``, a bare ``OverflowError`` from the SQLite driver) is the
  request's fault, so it is a 422 on the field ``request``, logged as a missed bound;
- only a failing database (down, unreachable, locked, a dropped connection, an exhausted
  pool: :data:`OUTAGE_ERRORS`) is a 503, which clients retry and monitoring pages on;
- any other database error (a bad query: ``ProgrammingError`` and the like) is our bug,
  a 500, never a 503;
- every other refusal is ``{"detail": "..."}`` (FastAPI's HTTPException), documented on
  each operation with :func:`responses` as :class:`~.schemas.ErrorBody`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from aifactory.service.schemas import KEY_PATTERN, NO_NUL, ErrorBody, ValidationErrorBody

log = logging.getLogger(__name__)

# The database itself is failing: no request is to blame, and a retry later may succeed.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    PoolTimeoutError,
)
# What a pattern means, said in words in a 422 instead of the regular expression.
_PATTERN_REASONS = {
    NO_NUL: "must not contain NUL characters",
    KEY_PATTERN: "must be visible ASCII characters (no spaces or control characters)",
}


class FieldError(ValueError):
    """Bad input that pydantic cannot see (e.g. an unknown GPU class): a 422 on ``field``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def db_error_status(exc: Exception) -> int:
    """The HTTP status for a database error (503 outage, 422 bad input, 500 our bug).

    The order matters: the outage classes are DBAPIErrors, which are StatementErrors.
    """
    if isinstance(exc, OUTAGE_ERRORS):
        return 503
    if isinstance(exc, DataError | IntegrityError | OverflowError):
        return 422
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        return 422  # raised while binding a parameter: the value could not be sent at all
    return 500


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def _reason(error: Any) -> str:
    pattern = (error.get("ctx") or {}).get("pattern")
    if error.get("type") == "string_pattern_mismatch" and pattern in _PATTERN_REASONS:
        return _PATTERN_REASONS[pattern]
    return str(error["msg"])


def problems(exc: RequestValidationError) -> list[dict[str, str]]:
    """The 422 body's items for a request pydantic refused."""
    out: list[dict[str, str]] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        if error.get("type") == "json_invalid":
            loc = ("body",)  # the location is a character offset, not a field
        out.append({"field": _field_name(loc), "reason": _reason(error)})
    return out


def install_handlers(app: FastAPI) -> None:
    """Answer validation, field and database errors by the rules of this module."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": problems(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(req: Request, exc: StarletteHTTPException) -> Response:
        # The API itself never raises a 400: one comes from FastAPI when a body cannot even
        # be parsed (not UTF-8, say). That is invalid input like any other: a 422.
        if exc.status_code == 400:
            reason = f"cannot be parsed ({exc.detail})"
            return JSONResponse({"detail": [{"field": "body", "reason": reason}]}, 422)
        if exc.status_code == 405:
            # Starlette's Allow names the methods of the first route of the path only (one
            # route per method here): name them all, as RFC 9110 asks.
            allowed: set[str] = set()
            for route in req.app.router.routes:
                if route.matches(req.scope)[0] is not Match.NONE:
                    allowed |= set(getattr(route, "methods", None) or ())
            headers = {"Allow": ", ".join(sorted(allowed))}
            return JSONResponse({"detail": "method not allowed"}, 405, headers=headers)
        return await http_exception_handler(req, exc)

    @app.exception_handler(FieldError)
    async def _field(_req: Request, exc: FieldError) -> JSONResponse:
        return JSONResponse(
            {"detail": [{"field": exc.field, "reason": exc.reason}]}, status_code=422
        )

    async def _database(req: Request, exc: Exception) -> JSONResponse:
        status = db_error_status(exc)
        if status == 503:
            log.error("database unavailable: %s", exc)
            return JSONResponse({"detail": "database unavailable, retry"}, status_code=503)
        if status == 422:
            # A bound is missing at the edge: the request is refused, but say so loudly.
            log.warning("%s %s: input the database refused: %s", req.method, req.url.path, exc)
            reason = "a value the database cannot store (out of range or malformed)"
            return JSONResponse({"detail": [{"field": "request", "reason": reason}]}, 422)
        log.error("%s %s: database error: %s", req.method, req.url.path, exc, exc_info=exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    app.add_exception_handler(SQLAlchemyError, _database)
    app.add_exception_handler(OverflowError, _database)  # sqlite3 raises it unwrapped


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer"},
    }
}
ERROR_RESPONSES: dict[int, dict[str, Any]] = {
    401: {
        "model": ErrorBody,
        "description": "No bearer token, or an unknown, revoked or expired one.",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    },
    403: {"model": ErrorBody, "description": "The token's role or tenant may not do this."},
    404: {"model": ErrorBody, "description": "No such object visible to this token."},
    409: {"model": ErrorBody, "description": "Conflicts with the object's state or a key."},
    413: {"model": ErrorBody, "description": "The request body is larger than the limit."},
    422: {"model": ValidationErrorBody, "description": "Invalid input, field by field."},
    429: {
        "model": ErrorBody,
        "description": "A limit was reached (submit rate, pending jobs, bad-token attempts).",
        "headers": _RETRY_AFTER,
    },
    503: {"model": ErrorBody, "description": "The database is unavailable; retry later."},
}
AUTHENTICATED = (401, 429, 503)  # what any operation behind a token may answer


def responses(
    *codes: int, also: dict[int | str, dict[str, Any]] | None = None, by_ref: bool = False
) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of an operation: these error statuses with their bodies, and
    ``also`` (its other successful answers).

    ``by_ref``: for an operation whose own answer is not JSON (``/metrics``): FastAPI
    would document a ``model`` under the operation's media type, so the error bodies are
    named by reference instead (the models are in the schema through the other operations).
    """
    out: dict[int | str, dict[str, Any]] = dict(also or {})
    for code in sorted(set(codes)):
        entry = dict(ERROR_RESPONSES[code])
        if by_ref:
            model = entry.pop("model")
            ref = {"$ref": f"#/components/schemas/{model.__name__}"}
            entry["content"] = {"application/json": {"schema": ref}}
        out[code] = entry
    return out
