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

from schemathesis import Case
from schemathesis.core.failures import Failure
from schemathesis.core.transport import Response


@dataclass(frozen=True)
class Finding:
    name: str
    reason: str
    matches: Callable[[Failure, Case, Response, dict[str, Any]], bool]


# Nothing is pinned today: every finding so far has been fixed (numbers as date-times and 0/1
# as booleans, the partial `Allow` on 405, the undocumented blank search filter, ...). To pin
# a new one: a Finding here whose `matches` recognises its failures, and a test in
# test_findings.py marked `_pinned(name)`.
FINDINGS: list[Finding] = []


def known_finding(
    failure: Failure, case: Case, response: Response, document: dict[str, Any]
) -> Finding | None:
    for finding in FINDINGS:
        if finding.matches(failure, case, response, document):
            return finding
    return None
