"""Kenyan mobile numbers (MSISDNs) in the one form Daraja accepts: `2547…`/`2541…`.

Pure functions, no I/O: the users domain stores phone numbers in this form too, so a number
that passed sign-up always passes the STK push.
"""

from __future__ import annotations

import re

ACCEPTED_FORMS = "07XXXXXXXX, 01XXXXXXXX, +2547XXXXXXXX, 2547XXXXXXXX, 7XXXXXXXX or 1XXXXXXXX"

# Spaces and dashes are how people write numbers ("0712 345 678", "0712-345-678"); anything
# else (letters, dots, brackets) more likely means a typo than formatting, so it is refused.
_SEPARATORS = re.compile(r"[ \-]")
# [0-9], not \d: \d also matches Arabic-Indic and other Unicode digits.
_SUBSCRIBER = r"([17][0-9]{8})"
_FORMS = (
    re.compile(rf"\+254{_SUBSCRIBER}"),
    re.compile(rf"254{_SUBSCRIBER}"),
    re.compile(rf"0{_SUBSCRIBER}"),
    re.compile(_SUBSCRIBER),
)
_NORMALIZED = re.compile(r"254[17][0-9]{8}")


def normalize_msisdn(raw: str) -> str:
    """Return `raw` as `2547XXXXXXXX` or `2541XXXXXXXX`, or raise ValueError.

    The message names the accepted forms but not the input: it ends up in API answers and
    logs, and a phone number is personal data.
    """
    if not isinstance(raw, str):
        raise TypeError("a phone number must be given as a string")
    compact = _SEPARATORS.sub("", raw.strip())
    for form in _FORMS:
        match = form.fullmatch(compact)
        if match is not None:
            return "254" + match.group(1)
    raise ValueError(f"not a Kenyan mobile number: use one of {ACCEPTED_FORMS}")


def is_normalized_msisdn(value: str) -> bool:
    """Whether `value` is already in Daraja's form (what `normalize_msisdn` returns)."""
    return _NORMALIZED.fullmatch(value) is not None


def mask_msisdn(value: str) -> str:
    """`254708374149` → `2547*****149`: enough to tell numbers apart in logs, not to dial."""
    if len(value) <= 7:
        return "*" * len(value)
    return value[:4] + "*" * (len(value) - 7) + value[-3:]
