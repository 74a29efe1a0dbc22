"""Request bodies take JSON's types as the OpenAPI document states them.

pydantic's default (lax) mode would coerce: a number into a date-time (Unix time: `0` is
1970-01-01), `0`/`1` into booleans, `"2"` into an integer. A client that sends those has a bug
we should tell it about, not guess around. So request bodies validate strictly, and the two
kinds of value JSON can only carry as strings are relaxed field by field: UUIDs and date-times
(ISO 8601 with an offset; numbers and numeric strings are still refused), plus enums, which
arrive as their string value.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Strict

_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def refuse_numbers(value: Any) -> Any:
    """Before a date-time is parsed: Unix times (numbers, numeric strings) are not accepted."""
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("must be an ISO 8601 date-time with a UTC offset, not a number")
    return value


class Input(BaseModel):
    """Base of every request body: unknown fields refused, types strict (see above)."""

    model_config = ConfigDict(extra="forbid", strict=True)


Uuid = Annotated[uuid.UUID, Strict(False)]
"""A UUID in its string form."""

IsoDatetime = Annotated[AwareDatetime, Strict(False), BeforeValidator(refuse_numbers)]
"""An ISO 8601 date-time with a UTC offset."""
