from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from tiketi.core.schemas import Input, Uuid


class TicketRead(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID
    order_id: uuid.UUID
    ticket_type_id: uuid.UUID
    ticket_type_name: str
    code: str
    status: str
    checked_in_at: datetime | None
    holder_name: str


class CheckIn(Input):
    event_id: Uuid
    code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class CheckInResult(BaseModel):
    result: Literal["admitted"] = "admitted"
    ticket: TicketRead


class QrFormat(BaseModel):
    format: Annotated[Literal["svg", "png"], Field(default="svg")]
