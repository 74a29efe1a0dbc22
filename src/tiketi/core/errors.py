"""Domain errors and the one handler that renders every error as RFC 9457 problem+json."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("tiketi.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"


class TiketiError(Exception):
    """Base of every domain error: it carries its HTTP status and a stable machine `code`."""

    status_code: int = 400
    code: str = "bad_request"
    title: str | None = None
    # An error that is itself evidence to keep (a failed sign-in, a replayed refresh token):
    # the request's transaction commits what it wrote before the error is answered.
    keeps_changes: bool = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        status_code: int | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.detail = detail or self.default_detail()
        self.extra = extra or {}
        self.headers = headers
        super().__init__(self.detail)

    def default_detail(self) -> str:
        return HTTPStatus(self.status_code).phrase


class BadRequest(TiketiError):
    status_code = 400
    code = "bad_request"


class Unauthorized(TiketiError):
    status_code = 401
    code = "not_authenticated"

    def __init__(self, detail: str | None = None, *, code: str | None = None) -> None:
        super().__init__(detail, code=code, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(TiketiError):
    status_code = 403
    code = "forbidden"


class NotFound(TiketiError):
    status_code = 404
    code = "not_found"


class Conflict(TiketiError):
    status_code = 409
    code = "conflict"


class InvalidInput(TiketiError):
    """A semantic validation failure found by a service (shape errors come from pydantic)."""

    status_code = 422
    code = "validation_error"


class TooManyRequests(TiketiError):
    status_code = 429
    code = "too_many_requests"

    def __init__(self, detail: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(
            detail,
            code=code,
            headers={"Retry-After": str(max(1, retry_after))},
            extra={"retry_after": max(1, retry_after)},
        )


class ServiceUnavailable(TiketiError):
    status_code = 503
    code = "service_unavailable"


class ValidationErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of this API is rendered."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(default="about:blank", examples=["about:blank"])
    title: str = Field(examples=["Conflict"])
    status: int = Field(examples=[409])
    detail: str = Field(examples=["Early Bird is sold out"])
    code: str = Field(examples=["sold_out"])
    errors: list[ValidationErrorItem] | None = None
    request_id: str | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the error statuses a route can answer."""
    return {
        status: {
            "model": Problem,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def problem_response(
    request: Request | None,
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    request_id = getattr(request.state, "request_id", None) if request is not None else None
    if request_id:
        body["request_id"] = request_id
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


_HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def _loc(loc: Any) -> list[str | int]:
    return [part if isinstance(part, int) else str(part) for part in loc]


async def _tiketi_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TiketiError)
    return problem_response(
        request,
        exc.status_code,
        exc.code,
        exc.detail,
        title=exc.title,
        headers=exc.headers,
        **exc.extra,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _HTTP_CODES.get(status, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    if status == 404 and detail == "Not Found":
        detail = f"No route matches {request.method} {request.url.path}"
    headers = getattr(exc, "headers", None)
    if status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
        if allowed := _allowed_methods(request):
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
    return problem_response(request, status, code, detail, headers=headers)


_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _allowed_methods(request: Request) -> list[str]:
    """Every documented method of this path: Starlette's 405 lists only those of the first
    route that matched the path (`OPTIONS /users/me` said `GET`, not `GET, PATCH`). Read from
    the OpenAPI document (built once) so the header and the document agree."""
    table: list[tuple[re.Pattern[str], list[str]]] | None = getattr(
        request.app.state, "allowed_methods", None
    )
    if table is None:
        table = [
            (
                re.compile(
                    "".join(
                        "[^/]+" if part.startswith("{") else re.escape(part)
                        for part in re.split(r"(\{[^/}]+\})", path)
                    )
                ),
                [method.upper() for method in operations if method in _METHODS],
            )
            for path, operations in request.app.openapi()["paths"].items()
        ]
        request.app.state.allowed_methods = table
    # `/events/mine` also fits `/events/{event_id}`: the document describes the most literal
    # template that fits (fewest parameters), so that one's methods are the answer.
    path = request.url.path
    fitting = [(pattern, methods) for pattern, methods in table if pattern.fullmatch(path)]
    if not fitting:
        return []
    fewest = min(pattern.pattern.count("[^/]+") for pattern, _ in fitting)
    return sorted(
        {
            m
            for pattern, methods in fitting
            if pattern.pattern.count("[^/]+") == fewest
            for m in methods
        }
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": _loc(err.get("loc", ())),
            "msg": str(err.get("msg", "")),
            "type": err.get("type", ""),
        }
        for err in exc.errors()
    ]
    if any(err["type"] == "json_invalid" for err in errors):
        return problem_response(
            request, 422, "invalid_json", "The request body is not valid JSON", errors=errors
        )
    first = errors[0] if errors else None
    detail = "The request is invalid"
    if first:
        where = ".".join(str(p) for p in first["loc"])
        detail = f"{where}: {first['msg']}" if where else first["msg"]
    return problem_response(request, 422, "validation_error", detail, errors=errors)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("database unavailable: %s", exc.__class__.__name__)
    return problem_response(
        request,
        503,
        "database_unavailable",
        "The database is unavailable; retry shortly",
        headers={"Retry-After": "2"},
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception(
        "unhandled error on %s %s",
        request.method,
        request.url.path,
        extra={"request_id": getattr(request.state, "request_id", None)},
    )
    return problem_response(
        request, 500, "internal_error", "An unexpected error occurred; it has been logged"
    )


# SQLSTATE classes meaning "the database is not there right now": connection exceptions (08)
# and operator intervention (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect
# now: starting up or shutting down).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE behind a database error, wherever the driver and SQLAlchemy put it."""
    for candidate in (
        exc,
        getattr(exc, "orig", None),
        getattr(exc, "__cause__", None),
        getattr(getattr(exc, "orig", None), "__cause__", None),
    ):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def _is_connection_failure(exc: Exception) -> bool:
    if isinstance(exc, PoolTimeoutError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    code = sqlstate(exc)
    if code is not None and code.startswith(_UNAVAILABLE_SQLSTATES):
        return True
    return isinstance(exc, OperationalError)


async def _os_error(request: Request, exc: Exception) -> JSONResponse:
    """Socket-level failures reach us unwrapped from asyncpg: a refused or reset connection,
    a connect timeout, or a unix socket that is gone because the server is down."""
    if isinstance(exc, ConnectionError | TimeoutError | FileNotFoundError):
        return await _database_unavailable(request, exc)
    return await _unexpected_error(request, exc)


# Text PostgreSQL cannot store (a NUL character, U+0000) is bad input, wherever it came from.
_UNSTORABLE_TEXT_SQLSTATES = ("22021", "22P05")
# The database did not answer in time: a statement cancelled by `statement_timeout` (57014
# query_canceled) or a lock not granted within `lock_timeout` (55P03 lock_not_available).
# The transaction was rolled back; the same request may well succeed a moment later.
_BUSY_SQLSTATES = ("57014", "55P03")


async def _dbapi_error(request: Request, exc: Exception) -> JSONResponse:
    if _is_connection_failure(exc):
        return await _database_unavailable(request, exc)
    code = sqlstate(exc)
    if code in _BUSY_SQLSTATES:
        logger.warning(
            "database busy: SQLSTATE %s on %s %s", code, request.method, request.url.path
        )
        return problem_response(
            request,
            503,
            "database_busy",
            "The database did not answer in time; retry shortly",
            headers={"Retry-After": "2"},
        )
    if code in _UNSTORABLE_TEXT_SQLSTATES:
        return problem_response(
            request,
            422,
            "invalid_text",
            "Text input contains a NUL character, which is not allowed",
        )
    return await _unexpected_error(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TiketiError, _tiketi_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(PoolTimeoutError, _database_unavailable)
    app.add_exception_handler(DBAPIError, _dbapi_error)
    # asyncpg re-raises socket-level failures (refused, reset, connect timeout) unwrapped.
    app.add_exception_handler(OSError, _os_error)
    app.add_exception_handler(Exception, _unexpected_error)
