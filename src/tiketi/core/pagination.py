"""Keyset pagination: `?limit=&cursor=` in, `{"items": [...], "next_cursor": ...}` out.

A cursor is the sort key of the last item of a page, serialised as URL-safe base64 JSON. It is
opaque to clients; it stays valid while rows are added, because the next page is "everything
after this key" rather than an offset.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from tiketi.core.errors import InvalidInput

T = TypeVar("T")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class InvalidCursor(InvalidInput):
    code = "invalid_cursor"


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"u": str(value)}
    if value is None or isinstance(value, int | float | str | bool):
        return value
    raise TypeError(f"cannot put {type(value).__name__} in a cursor")


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        ((tag, raw),) = value.items()
        if tag == "t" and isinstance(raw, str):
            parsed = datetime.fromisoformat(raw)
            if parsed.tzinfo is None:
                raise ValueError("naive time")
            return parsed
        if tag == "u" and isinstance(raw, str):
            return uuid.UUID(raw)
        raise ValueError("unknown tag")
    if value is None or isinstance(value, int | float | str | bool):
        return value
    raise ValueError("unsupported value")


def encode_cursor(key: Sequence[Any]) -> str:
    raw = json.dumps([_encode_value(v) for v in key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, types: Sequence[type | tuple[type, ...]]) -> list[Any]:
    """The sort key a cursor carries, checked against the expected `types` of its parts.

    422 `invalid_cursor` for anything we did not issue, so a forged cursor never reaches SQL.
    """
    try:
        if len(cursor) > 1024:
            raise ValueError("too long")
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(data, list) or len(data) != len(types):
            raise ValueError("wrong shape")
        values = [_decode_value(v) for v in data]
        for value, expected in zip(values, types, strict=True):
            if value is not None and (
                not isinstance(value, expected) or isinstance(value, bool) is not (expected is bool)
            ):
                raise ValueError("wrong type")
        return values
    except (ValueError, TypeError, binascii.Error, UnicodeError, json.JSONDecodeError) as exc:
        raise InvalidCursor(
            "The cursor is malformed; use next_cursor from a previous page"
        ) from exc


LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size (1..100)")]
CursorQuery = Annotated[
    str | None,
    Query(max_length=1024, description="Opaque cursor: `next_cursor` of the previous page"),
]
