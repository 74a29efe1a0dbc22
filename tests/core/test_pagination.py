import base64
import uuid
from datetime import UTC, datetime

import pytest

from tiketi.core.pagination import InvalidCursor, decode_cursor, encode_cursor

KEY_TYPES = (datetime, uuid.UUID)


def test_round_trip() -> None:
    key = [datetime(2026, 11, 26, 17, 0, tzinfo=UTC), uuid.uuid4()]
    assert decode_cursor(encode_cursor(key), types=KEY_TYPES) == key


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!!",
        base64.urlsafe_b64encode(b"{}").decode(),
        base64.urlsafe_b64encode(b'["x", "y"]').decode(),
        base64.urlsafe_b64encode(b'[{"t": "2026-01-01T00:00:00"}, {"u": "nope"}]').decode(),
        base64.urlsafe_b64encode(b"[1]").decode(),
        encode_cursor([1, 2]),
        "A" * 2000,
        "",
    ],
)
def test_malformed_cursors_are_invalid_input(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, types=KEY_TYPES)


def test_bool_is_not_an_int() -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(encode_cursor([True]), types=(int,))
    assert decode_cursor(encode_cursor([3]), types=(int,)) == [3]
