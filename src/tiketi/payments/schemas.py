from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from tiketi.core.phone import normalize_msisdn
from tiketi.core.schemas import Input, Uuid


class PaymentCreate(Input):
    order_id: Uuid
    phone_number: Annotated[
        str | None,
        Field(max_length=32, description="M-Pesa number to prompt; defaults to your profile's"),
        AfterValidator(lambda v: normalize_msisdn(v) if v is not None else None),
    ] = None


class PaymentRead(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    status: str
    amount: int
    phone_number: str
    provider: Literal["mpesa"] = "mpesa"
    mpesa_receipt: str | None
    result_code: str | None
    result_desc: str | None
    customer_message: str | None = Field(
        description="What to tell the customer (e.g. to check their phone for the PIN prompt)"
    )
    created_at: datetime
    completed_at: datetime | None


class CallbackAck(BaseModel):
    ResultCode: int = 0
    ResultDesc: str = "Accepted"
