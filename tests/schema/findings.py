"""What the fuzzing found that is not fixed yet, and how to recognise it.

Each finding is pinned by a small deterministic test in `test_findings.py`, marked
`xfail(strict=True)`; the fuzzing drops exactly these failures so that it keeps reporting
anything new. When a finding is fixed: its pinned test passes (XPASS, which fails the run),
so remove the xfail there AND the finding here, and the fuzzing checks it again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
from schemathesis import Case, GenerationMode
from schemathesis.core.failures import Failure
from schemathesis.core.transport import Response


@dataclass(frozen=True)
class Finding:
    name: str
    reason: str
    matches: Callable[[Failure, Case, Response, dict[str, Any]], bool]


def _problem(response: Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _undecodable_body(failure: Failure, case: Case, response: Response, _: dict[str, Any]) -> bool:
    return (
        failure.code == "ST103"
        and response.status_code == 400
        and _problem(response).get("detail") == "There was an error parsing the body"
    )


def _undocumented_401_on_availability(
    failure: Failure, case: Case, response: Response, _: dict[str, Any]
) -> bool:
    return (
        failure.code == "ST103"
        and response.status_code == 401
        and case.method.upper() == "GET"
        and case.operation.path == "/events/{event_id}/availability"
    )


def _blank_search_filter(
    failure: Failure, case: Case, response: Response, _: dict[str, Any]
) -> bool:
    return (
        failure.code == "ST201"
        and case.operation.path == "/search"
        and any(isinstance(v, str) and not v.strip() for v in (case.query or {}).values())
    )


def _negated(case: Case) -> set[str]:
    meta = case.meta
    if meta is None:
        return set()
    return {
        location.value
        for location, info in meta.components.items()
        if info.mode is not GenerationMode.POSITIVE
    }


def _body_errors(case: Case, document: dict[str, Any]) -> list[Any] | None:
    operation = document["paths"][case.operation.path][case.method.lower()]
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    if schema is None:
        return None
    validator = jsonschema_rs.validator_for({**schema, "components": document["components"]})
    return list(validator.iter_errors(case.body))


FINDINGS = [
    Finding(
        "search-blank-filter-undocumented",
        "search/schemas.py SearchParams: a blank filter counts as absent (`/search?category=` "
        "is 200), but the document gives `category` a slug pattern that refuses the empty "
        "string; document it (e.g. allow '' in the pattern) or refuse it",
        _blank_search_filter,
    ),
]


def known_finding(
    failure: Failure, case: Case, response: Response, document: dict[str, Any]
) -> Finding | None:
    for finding in FINDINGS:
        if finding.matches(failure, case, response, document):
            return finding
    return None
