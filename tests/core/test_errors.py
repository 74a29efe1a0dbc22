"""Every error is problem+json with a stable code; bad input never gets a 500."""

import json

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, ConfigDict

from tiketi.core.errors import Conflict

PROBLEM = "application/problem+json"


class Thing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    count: int


probe = APIRouter(tags=["probe"])


@probe.post("/_probe/things", response_model=Thing)
async def create_thing(thing: Thing) -> Thing:
    return thing


@probe.get("/_probe/conflict", response_model=Thing)
async def conflict() -> Thing:
    raise Conflict("Early Bird is sold out", code="sold_out")


@probe.get("/_probe/boom", response_model=Thing)
async def boom() -> Thing:
    raise RuntimeError("secret internals: password=hunter2")


@pytest.fixture
async def probe_client(app: FastAPI) -> httpx.AsyncClient:
    app.include_router(probe)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert {"type", "title", "detail"} <= body.keys()
    return body


async def test_unknown_route(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/nope"), 404, "not_found")


async def test_wrong_method(client: httpx.AsyncClient) -> None:
    assert_problem(await client.delete("/health/live"), 405, "method_not_allowed")


async def test_domain_error(probe_client: httpx.AsyncClient) -> None:
    body = assert_problem(await probe_client.get("/_probe/conflict"), 409, "sold_out")
    assert body["detail"] == "Early Bird is sold out"


async def test_malformed_json(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.post(
        "/_probe/things", content=b'{"name": "x", ', headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "invalid_json")


async def test_wrong_types_and_unknown_fields(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.post(
        "/_probe/things", json={"name": "x", "count": "many", "extra": 1}
    )
    body = assert_problem(response, 422, "validation_error")
    errors = body["errors"]
    assert isinstance(errors, list)
    locs = {tuple(e["loc"]) for e in errors}
    assert ("body", "count") in locs
    assert ("body", "extra") in locs


async def test_oversized_body_with_content_length(probe_client: httpx.AsyncClient) -> None:
    big = json.dumps({"name": "x" * 2_000_000, "count": 1})
    response = await probe_client.post(
        "/_probe/things", content=big, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")


async def test_oversized_streamed_body(probe_client: httpx.AsyncClient) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"name": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'", "count": 1}'

    response = await probe_client.post(
        "/_probe/things", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")


async def test_unexpected_exception_is_a_bare_500(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.get("/_probe/boom", headers={"x-request-id": "req-42"})
    body = assert_problem(response, 500, "internal_error")
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    assert body["request_id"] == "req-42"


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/health/live", headers={"x-request-id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = await client.get("/health/live", headers={"x-request-id": "bad id\n"})
    assert len(generated.headers["x-request-id"]) == 32


async def test_text_the_database_cannot_store_is_a_422(client: httpx.AsyncClient) -> None:
    """A NUL character reaching PostgreSQL (SQLSTATE 22021) is bad input, never a 500."""
    response = await client.get("/events", params={"city": "Nai\x00robi"})
    assert_problem(response, 422, "invalid_text")
