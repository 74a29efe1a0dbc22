"""The fuzzing's findings, each pinned by one deterministic request (see findings.py).

Each is `xfail(strict=True)` until fixed in src/; then remove the mark here and the entry in
findings.py, so the fuzzing checks that behaviour again.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import make_account, make_event
from tests.schema.findings import FINDINGS
from tiketi.users.models import Role

pytestmark = pytest.mark.schema

REASONS = {finding.name: finding.reason for finding in FINDINGS}


def _pinned(name: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=REASONS[name])


async def test_a_body_that_is_not_utf8_is_refused_like_any_malformed_json(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/auth/refresh", content=b"\xff\xfe[", headers={"content-type": "application/json"}
    )
    documented = (await client.get("/openapi.json")).json()["paths"]["/auth/refresh"]["post"]
    # Either answer it like other malformed JSON (422 invalid_json) or document the 400.
    assert str(response.status_code) in documented["responses"], response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_every_status_of_availability_is_documented(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    organizer = await make_account(app, client, Role.organizer)
    event = await make_event(app, organizer.user)
    response = await client.get(
        f"/events/{event.id}/availability", headers={"Authorization": "Bearer forged"}
    )
    assert response.status_code == 401
    document = (await client.get("/openapi.json")).json()
    responses = document["paths"]["/events/{event_id}/availability"]["get"]["responses"]
    assert "401" in responses, sorted(responses)


@pytest.mark.parametrize(
    ("method", "path", "role", "payload"),
    [
        ("POST", "/auth/token", None, {"data": {"username": "a\x00b@x.co", "password": "x"}}),
        ("GET", "/events", None, {"params": {"city": "Nai\x00robi"}}),
        ("GET", "/events", None, {"params": {"category": "mu\x00sic"}}),
        ("GET", "/users", Role.admin, {"params": {"q": "wan\x00jiru"}}),
        ("PATCH", "/users/me", Role.customer, {"json": {"first_name": "Wan\x00jiru"}}),
    ],
)
async def test_a_nul_character_is_refused_not_a_server_error(
    app: FastAPI,
    client: httpx.AsyncClient,
    method: str,
    path: str,
    role: Role | None,
    payload: dict[str, Any],
) -> None:
    headers = (await make_account(app, client, role)).headers if role else {}
    response = await client.request(method, path, headers=headers, **payload)
    assert 400 <= response.status_code < 500, response.text


async def test_a_blank_search_filter_matches_the_document(client: httpx.AsyncClient) -> None:
    import re

    document = (await client.get("/openapi.json")).json()
    if "/search" not in document["paths"]:
        pytest.skip("no /search route in this build")
    response = await client.get("/search", params={"category": ""})
    parameters = document["paths"]["/search"]["get"]["parameters"]
    category = next(p for p in parameters if p["name"] == "category")["schema"]
    patterns = [s["pattern"] for s in category.get("anyOf", [category]) if "pattern" in s]
    documented_ok = not patterns or any(re.search(p, "") for p in patterns)
    assert documented_ok == (response.status_code == 200), (response.status_code, patterns)


async def test_a_405_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.options("/users/me")
    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "PATCH"} <= allowed, response.headers["allow"]
    # A literal path that also fits a template lists only its own documented methods.
    mine = await client.put("/events/mine")
    assert (mine.status_code, mine.headers["allow"]) == (405, "GET")


async def test_a_number_is_not_a_date_time(app: FastAPI, client: httpx.AsyncClient) -> None:
    organizer = await make_account(app, client, Role.organizer)
    body = {
        "title": "Epoch Party",
        "category": "music",
        "venue": "Carnivore Grounds",
        "city": "Nairobi",
        "starts_at": 0,
        "ends_at": "2030-01-01T20:00:00+03:00",
    }
    response = await client.post("/events", json=body, headers=organizer.headers)
    assert response.status_code == 422, response.text


async def test_zero_is_not_false(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await make_account(app, client, Role.admin)
    customer = await make_account(app, client)
    response = await client.patch(
        f"/users/{customer.user.id}", json={"is_active": 0}, headers=admin.headers
    )
    assert response.status_code == 422, response.text


async def test_strings_are_not_integers_and_numbers_are_not_dates(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_account(app, client)
    order = {
        "event_id": str(uuid.uuid4()),
        "items": [{"ticket_type_id": str(uuid.uuid4()), "quantity": "2"}],
    }
    response = await client.post("/orders", json=order, headers=buyer.headers)
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")
    for value in ("0.5", "1767225600"):
        response = await client.get("/search", params={"date_to": value})
        assert response.status_code == 422, (value, response.text)
    # What JSON can only carry as strings still works: UUIDs, offsets, dates, enum values.
    assert (await client.get("/search", params={"date_to": "2030-01-01"})).status_code == 200
