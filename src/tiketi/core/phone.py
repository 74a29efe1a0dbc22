"""Kenyan mobile numbers in the one form M-Pesa and our database use: `2547…`/`2541…`."""

from __future__ import annotations

import re

ACCEPTED_FORMS = "07XXXXXXXX, 01XXXXXXXX, +2547XXXXXXXX, 2547XXXXXXXX or 7XXXXXXXX"
_SEPARATORS = re.compile(r"[\s\-().]")
_NATIONAL = re.compile(r"^[71]\d{8}$")


def normalize_msisdn(raw: str) -> str:
    """`0712 345 678`, `+254712345678`, `254112345678`, `712345678` → `254712345678`.

    Raises ValueError naming the accepted forms for anything else.
    """
    digits = _SEPARATORS.sub("", raw.strip())
    if digits.startswith("+"):
        digits = digits[1:]
    if digits.startswith("254"):
        national = digits[3:]
    elif digits.startswith("0"):
        national = digits[1:]
    else:
        national = digits
    if not _NATIONAL.match(national):
        raise ValueError(f"phone number must be a Kenyan mobile number: {ACCEPTED_FORMS}")
    return "254" + national
