"""The API against its own OpenAPI document, fuzzed with schemathesis over real HTTP.

Every operation of `/openapi.json` (the live SSE stream excepted: it never ends) gets generated
requests, valid and invalid, sent to a live `tiketi serve` on a real database:

- anonymously: a non-public route must answer 401 problem+json, never 2xx (nor 5xx);
- with the access token of each role (customer, organizer, admin).

Every answer must be no 5xx and must conform to the document: a documented status code, the
documented content type, a body matching the documented schema; invalid input must be
refused with a 4xx. Generated ids are often swapped for real ones (an event with tiers, an
order, a ticket, a payment...) so that requests also reach the code behind the 404s.

Bounded for CI: a fixed number of examples per operation, no shrinking, derandomized (the
same requests every run), so a failure reproduces by running the test again.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import Case, GenerationMode, checks

from tests.conftest import make_settings
from tests.factories import PASSWORD
from tests.schema.conftest import Known, LiveApi
from tests.schema.findings import known_finding
from tiketi.main import create_app

pytestmark = [pytest.mark.schema, pytest.mark.process]

MAX_EXAMPLES = 20
# Where a generated id is replaced by a real one (decided per request, deterministically).
AIM = 0.6

# Routes anyone may call (the rest must answer 401 without a token).
PUBLIC = frozenset(
    {
        ("GET", "/health/live"),
        ("GET", "/health/ready"),
        ("GET", "/metrics"),
        ("POST", "/auth/token"),
        ("POST", "/auth/refresh"),
        ("POST", "/auth/logout"),
        ("POST", "/users"),
        ("GET", "/categories"),
        ("GET", "/events"),
        ("GET", "/events/{event_id}"),
        ("GET", "/events/{event_id}/availability"),
        ("GET", "/events/{event_id}/availability/stream"),
        ("GET", "/search"),
        ("POST", "/payments/callbacks/stk/{token}"),
    }
)
FORGED_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJub2JvZHkifQ.c2lnbmF0dXJl"
EXCLUDED = [
    # Valid-by-schema input refused with a 4xx: mostly business rules no schema states
    # (an opaque cursor that is not ours, a callback body that is no STK callback, ends
    # before it starts...).
    checks.positive_data_acceptance,
]


def _document() -> dict[str, Any]:
    # The document needs no database: build it from the app, as `/openapi.json` serves it
    # (test_the_live_document_is_the_one_fuzzed checks they are the same).
    app = create_app(make_settings("postgresql://schema@127.0.0.1:1/unused"))
    return app.openapi()


DOCUMENT = _document()
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 2026,
        # Unknown query parameters are ignored, as most HTTP APIs do; the contract's "unknown
        # input fields are rejected" is about bodies, which the fuzzing does send.
        "generation": {"allow-extra-parameters": False},
    }
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG).exclude(
    path_regex=r"/availability/stream$", method="GET"
)


@schema.hook
def filter_failure(context: Any, failure: Any, case: Case, response: Any) -> bool:
    """Known findings (pinned by test_findings.py) are not reported again here."""
    return known_finding(failure, case, response, DOCUMENT) is None


def _key(case: Case) -> tuple[str, str]:
    return case.method.upper(), case.operation.path


def _secured(case: Case) -> bool:
    operation = DOCUMENT["paths"][case.operation.path][case.method.lower()]
    return bool(operation.get("security"))


def _aim(case: Case, known: Known) -> None:
    """Swap some generated ids for real ones; which ones is decided by the request itself, so
    a run always sends the same requests. Only in valid requests: an invalid one stays as
    generated (schemathesis knows what it broke in it)."""
    if case.meta is not None and case.meta.generation.mode is not GenerationMode.POSITIVE:
        return
    rng = random.Random(repr((_key(case), case.path_parameters, case.query, case.body)))
    method, path = _key(case)
    params = case.path_parameters
    if params:
        if "event_id" in params and rng.random() < AIM:
            if method == "DELETE" or path.endswith(("/cancel", "/ticket-types/{type_id}")):
                params["event_id"] = known.doomed_event
            elif path.endswith("/publish"):
                params["event_id"] = known.draft_event
            else:
                params["event_id"] = rng.choice([known.event, known.event, known.draft_event])
        if "type_id" in params and rng.random() < AIM:
            doomed = params.get("event_id") == known.doomed_event
            params["type_id"] = rng.choice(known.doomed_tiers if doomed else known.tiers)
        if "order_id" in params and rng.random() < AIM:
            params["order_id"] = rng.choice([known.order, known.paid_order])
        if "ticket_id" in params and rng.random() < AIM:
            params["ticket_id"] = known.ticket
        if "payment_id" in params and rng.random() < AIM:
            params["payment_id"] = known.payment
        if "user_id" in params and rng.random() < AIM:
            params["user_id"] = known.user
        if "token" in params and rng.random() < 0.5:
            params["token"] = known.callback_token
    body = case.body
    if isinstance(body, dict):
        if "event_id" in body and rng.random() < AIM:
            body["event_id"] = known.event
        if isinstance(body.get("items"), list):
            for item in body["items"]:
                if isinstance(item, dict) and "ticket_type_id" in item and rng.random() < AIM:
                    item["ticket_type_id"] = rng.choice(known.tiers)
        if "order_id" in body and rng.random() < AIM:
            body["order_id"] = rng.choice([known.order, known.paid_order])
        if "code" in body and rng.random() < AIM:
            body["code"] = known.ticket_code
        if path == "/auth/token" and "username" in body and rng.random() < 0.3:
            body["username"], body["password"] = known.email, PASSWORD


def _without_credentials(case: Case) -> None:
    if case.headers:
        for name in [n for n in case.headers if n.lower() == "authorization"]:
            del case.headers[name]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_operation_conforms(case: Case, live_api: LiveApi) -> None:
    _aim(case, live_api.known)
    _without_credentials(case)
    call: dict[str, Any] = {"base_url": live_api.base_url, "session": live_api.session}

    valid = case.meta is None or case.meta.generation.mode is GenerationMode.POSITIVE
    public = _key(case) in PUBLIC
    if case.method.upper() != case.operation.method.upper():
        # A method the route does not have (schemathesis probes those): 405 for everyone.
        case.validate_response(case.call(**call), excluded_checks=EXCLUDED)
        return
    if public or valid:
        anonymous = case.call(**call)
        case.validate_response(anonymous, excluded_checks=EXCLUDED)
        if not public:
            assert anonymous.status_code == 401, (
                f"{case.method} {case.formatted_path} without a token: "
                f"{anonymous.status_code} {anonymous.text[:300]}"
            )
    if _secured(case):
        if valid:
            # A token that is not ours: 401 everywhere, also where anonymous is welcome.
            forged = case.call(**call, headers={"Authorization": f"Bearer {FORGED_TOKEN}"})
            case.validate_response(forged, excluded_checks=EXCLUDED)
            assert forged.status_code == 401, f"forged token: {forged.status_code}"
        # Invalid input is refused the same way whoever sends it: one role is enough.
        roles = list(live_api.headers) if valid else ["admin"]
        for role in roles:
            case.call_and_validate(**call, headers=live_api.headers[role], excluded_checks=EXCLUDED)


def test_the_live_document_is_the_one_fuzzed(live_api: LiveApi) -> None:
    import httpx

    served = httpx.get(live_api.base_url + "/openapi.json").json()
    assert served == DOCUMENT


def test_every_non_public_route_declares_its_security() -> None:
    """What the document says matches what the fuzzing enforces (401 without a token)."""
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if (method.upper(), path) not in PUBLIC:
                assert operation.get("security"), f"{method.upper()} {path} declares no security"
                assert "401" in operation["responses"], f"{method.upper()} {path}: 401 undocumented"
