from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


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


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: uuid.UUID
    code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class CheckInResult(BaseModel):
    result: Literal["admitted"] = "admitted"
    ticket: TicketRead


class QrFormat(BaseModel):
    format: Annotated[Literal["svg", "png"], Field(default="svg")]
