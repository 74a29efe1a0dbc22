"""Daraja's wire bodies as pydantic models, and what their result codes mean.

Daraja is loose about types: the same field arrives as a number in one body and a string in
another (`ResultCode` is an int in callbacks and a string in query answers; `expires_in` is
"3599" or 3599; `Amount` is 1500 or 1500.00). Every model here accepts all the observed forms
and exposes one Python type, ignores keys it does not know, and reads callback metadata items
by `Name`, never by position.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def _nairobi() -> tzinfo:
    # Slim container images sometimes ship without the tz database. Nairobi has been UTC+3
    # without DST since 1942, so the fixed offset is exact for any date Daraja talks about.
    try:
        return ZoneInfo("Africa/Nairobi")
    except ZoneInfoNotFoundError:  # pragma: no cover - depends on the host
        return timezone(timedelta(hours=3), "EAT")


NAIROBI: Final[tzinfo] = _nairobi()
DARAJA_TIME_FORMAT: Final = "%Y%m%d%H%M%S"

# The acknowledgement Daraja expects from a callback handler.
CALLBACK_ACK: Final[dict[str, int | str]] = {"ResultCode": 0, "ResultDesc": "Accepted"}


class StkStatus(StrEnum):
    """Where a payment stands according to one Daraja answer."""

    succeeded = "succeeded"
    failed = "failed"
    pending = "pending"
    # A code we have no rule for: keep the payment pending, reconcile, then flag it for review.
    unknown = "unknown"


SUCCESS_RESULT_CODE: Final = "0"
PENDING_RESULT_CODE: Final = "4999"
FAILED_RESULT_CODES: Final = frozenset(
    {
        "1",  # insufficient balance
        "2",  # below the minimum transaction amount
        "3",  # above the maximum transaction amount
        "4",  # above the daily transfer limit
        "8",  # above the account balance cap
        "17",  # same amount to the same customer within 2 minutes
        "26",  # system busy
        "1001",  # subscriber locked by another session
        "1019",  # transaction expired
        "1025",  # error sending the push
        "9999",  # error sending the push
        "1032",  # cancelled by the user
        "1036",  # no response from the phone
        "1037",  # no response from the phone ("DS timeout user cannot be reached")
        "2001",  # wrong PIN
        "2028",  # the till/paybill is not allowed this product
        "8006",  # PIN locked
        "SFC_IC0003",  # till/paybill misconfiguration
    }
)
# Failed, but the customer can simply try again a little later.
RETRY_LATER_RESULT_CODES: Final = frozenset({"26", "1001"})
# Failed because our shortcode setup is wrong: nothing the customer can do.
CONFIGURATION_RESULT_CODES: Final = frozenset({"2028", "SFC_IC0003"})


def normalize_result_code(code: str | int) -> str:
    """`0`, `"0"`, `" 0 "` → `"0"`; non-numeric codes such as `SFC_IC0003` are kept as given."""
    if isinstance(code, bool):
        raise TypeError("a result code is a number or a string, not a boolean")
    text = str(code).strip()
    if text.isascii() and text.isdigit():
        return str(int(text))
    return text


def classify_result_code(code: str | int) -> StkStatus:
    """Map an STK `ResultCode` (callback or query; int or string) to a payment outcome."""
    try:
        text = normalize_result_code(code)
    except TypeError:
        return StkStatus.unknown
    if text == SUCCESS_RESULT_CODE:
        return StkStatus.succeeded
    if text in FAILED_RESULT_CODES:
        return StkStatus.failed
    if text == PENDING_RESULT_CODE:
        return StkStatus.pending
    return StkStatus.unknown


def nairobi_timestamp(moment: datetime | None = None) -> str:
    """Daraja's 14-digit `YYYYMMDDHHmmss` in Nairobi local time (now, or an aware `moment`)."""
    if moment is None:
        moment = datetime.now(NAIROBI)
    elif moment.tzinfo is None:
        raise ValueError("an aware datetime is required: Daraja times are Nairobi local time")
    return moment.astimezone(NAIROBI).strftime(DARAJA_TIME_FORMAT)


def parse_nairobi_timestamp(value: str | int) -> datetime:
    """Daraja's 14-digit time (a string or a JSON number) → an aware datetime; ValueError else."""
    if isinstance(value, bool):
        raise ValueError("a Daraja time is 14 digits, not a boolean")
    text = str(value).strip()
    if len(text) != 14 or not (text.isascii() and text.isdigit()):
        raise ValueError("a Daraja time is 14 digits YYYYMMDDHHmmss")
    naive = datetime.strptime(text, DARAJA_TIME_FORMAT)  # noqa: DTZ007 - zone attached below
    return naive.replace(tzinfo=NAIROBI)


def _to_decimal(value: object) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise ValueError("not an amount")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | float | str):
        # str(float) first: Decimal(1500.1) would carry the binary rounding error along.
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise ValueError("not an amount") from exc
    else:
        raise ValueError("not an amount")
    if not result.is_finite():
        raise ValueError("not an amount")
    return result


def _as_integral(value: object) -> object:
    """An integral float/Decimal (`254708374149.0`) as an int; any other value unchanged."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, Decimal):
        return int(value) if value.is_finite() and value == value.to_integral_value() else value
    return value


class _Wire(BaseModel):
    """A Daraja body: keys we do not know are ignored; numbers are accepted where text is."""

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        coerce_numbers_to_str=True,
    )


# ----------------------------------------------------------------------------- callbacks


class CallbackItem(_Wire):
    name: str = Field(alias="Name")
    # Absent for `Balance` in real traffic; a number or a string otherwise.
    value: Any = Field(default=None, alias="Value")


class CallbackMetadata(_Wire):
    items: list[CallbackItem] = Field(default_factory=list, alias="Item")

    @field_validator("items", mode="before")
    @classmethod
    def _single_item_as_list(cls, value: object) -> object:
        # Seen from XML-to-JSON gateways: a one-element list collapsed into the element.
        return [value] if isinstance(value, dict) else value

    def get(self, name: str) -> Any:
        """The `Value` of the item called `name`, or None (absent item or absent value)."""
        for item in self.items:
            if item.name == name:
                return item.value
        folded = name.casefold()
        for item in self.items:
            if item.name.casefold() == folded:
                return item.value
        return None


class StkCallback(_Wire):
    """`Body.stkCallback` of the callback Daraja POSTs to our CallBackURL.

    Branch on `result_code`/`status` only: `ResultDesc` wording changes between Daraja
    versions (older bodies prefix it with `[STK_CB - ]`).
    """

    merchant_request_id: str = Field(alias="MerchantRequestID")
    checkout_request_id: str = Field(alias="CheckoutRequestID", min_length=1)
    # An int on the wire. Non-numeric codes (`SFC_IC0003`) are kept as text rather than
    # refused: refusing the callback would throw away the only news about this payment.
    result_code: int | str = Field(alias="ResultCode")
    result_desc: str = Field(default="", alias="ResultDesc")
    metadata: CallbackMetadata | None = Field(default=None, alias="CallbackMetadata")

    @field_validator("result_code", mode="before")
    @classmethod
    def _result_code(cls, value: object) -> int | str:
        if isinstance(value, bool):
            raise ValueError("ResultCode must be a number")
        value = _as_integral(value)
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip():
            text = normalize_result_code(value)
            return int(text) if text.isdigit() else text
        raise ValueError("ResultCode must be a number")

    @model_validator(mode="after")
    def _metadata_values_are_usable(self) -> StkCallback:
        # A present-but-garbled Amount must make the whole body malformed (400): a success
        # whose amount cannot be checked must never settle a payment.
        if self.metadata is not None and self.metadata.get("Amount") is not None:
            _to_decimal(self.metadata.get("Amount"))
        return self

    def _item(self, name: str) -> Any:
        return None if self.metadata is None else self.metadata.get(name)

    @property
    def result_code_text(self) -> str:
        return str(self.result_code)

    @property
    def status(self) -> StkStatus:
        return classify_result_code(self.result_code)

    @property
    def amount(self) -> Decimal | None:
        """`Amount` as a Decimal (`1500` and `1500.00` compare equal to 1500)."""
        value = self._item("Amount")
        return None if value is None else _to_decimal(value)

    @property
    def receipt(self) -> str | None:
        """`MpesaReceiptNumber`, e.g. `UJ22T8IYOU`."""
        value = self._item("MpesaReceiptNumber")
        if value is None or isinstance(value, bool):
            return None
        text = str(value).strip()
        return text or None

    @property
    def phone(self) -> str | None:
        """`PhoneNumber` as Daraja sent it, digits as text.

        Not normalised or validated: newer Daraja versions mask part of the number.
        """
        value = self._item("PhoneNumber")
        if value is None or isinstance(value, bool):
            return None
        text = str(_as_integral(value)).strip()
        return text or None

    @property
    def transaction_date(self) -> datetime | None:
        """`TransactionDate` (Nairobi time) as an aware datetime; None when absent or garbled.

        Informational only (the settlement time is ours), so a garbled date does not make the
        callback malformed.
        """
        value = self._item("TransactionDate")
        value = _as_integral(value)
        if not isinstance(value, int | str):
            return None
        try:
            return parse_nairobi_timestamp(value)
        except ValueError:
            return None


class StkCallbackBody(_Wire):
    stk_callback: StkCallback = Field(alias="stkCallback")


class StkCallbackEnvelope(_Wire):
    """The whole callback body: `{"Body": {"stkCallback": {...}}}`."""

    body: StkCallbackBody = Field(alias="Body")

    @property
    def callback(self) -> StkCallback:
        return self.body.stk_callback


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load_daraja_json(raw: bytes | str) -> Any:
    """`json.loads`, but fractional numbers become Decimal (exact `1500.00`), NaN is refused."""
    return json.loads(raw, parse_float=Decimal, parse_constant=_refuse_constant)


def parse_stk_callback(raw: bytes | str | Mapping[str, Any]) -> StkCallback:
    """Parse a callback body (raw bytes as received, or already-decoded JSON).

    Raises ValueError (pydantic's ValidationError is one) for anything that is not a
    recognisable STK callback: the route answers 400 and keeps the raw body for review.
    """
    data = load_daraja_json(raw) if isinstance(raw, bytes | str) else raw
    return StkCallbackEnvelope.model_validate(data).callback


# ----------------------------------------------------------------------------- push / query


class StkPushResult(_Wire):
    """Daraja accepted the push: the customer is being prompted. Keep both IDs."""

    merchant_request_id: str = Field(alias="MerchantRequestID", min_length=1)
    checkout_request_id: str = Field(alias="CheckoutRequestID", min_length=1)
    response_code: str = Field(alias="ResponseCode")
    response_description: str = Field(default="", alias="ResponseDescription")
    customer_message: str = Field(default="", alias="CustomerMessage")


class StkQueryResponse(_Wire):
    """An STK query answer as sent (HTTP 200); every field optional, `ResultCode` a string."""

    response_code: str | None = Field(default=None, alias="ResponseCode")
    response_description: str | None = Field(default=None, alias="ResponseDescription")
    merchant_request_id: str | None = Field(default=None, alias="MerchantRequestID")
    checkout_request_id: str | None = Field(default=None, alias="CheckoutRequestID")
    result_code: str | None = Field(default=None, alias="ResultCode")
    result_desc: str | None = Field(default=None, alias="ResultDesc")


class StkQueryResult(BaseModel):
    """What one STK query told us about a push.

    `pending` covers both "still processing" answers (`4999` and the `500.001.1001`
    envelope, in which case `result_code` is `500.001.1001`): neither ever means failed.
    """

    model_config = ConfigDict(frozen=True)

    status: StkStatus
    checkout_request_id: str
    result_code: str
    result_desc: str = ""
    merchant_request_id: str | None = None
    response_code: str | None = None
    response_description: str | None = None


# ----------------------------------------------------------------------------- errors / OAuth


class DarajaErrorEnvelope(_Wire):
    """`{"requestId": ..., "errorCode": ..., "errorMessage": ...}`, Daraja's error body."""

    request_id: str | None = Field(default=None, alias="requestId")
    error_code: str = Field(alias="errorCode", min_length=1)
    error_message: str = Field(default="", alias="errorMessage")


class ApigeeFaultDetail(_Wire):
    errorcode: str = ""


class ApigeeFaultInner(_Wire):
    faultstring: str = ""
    detail: ApigeeFaultDetail = Field(default_factory=ApigeeFaultDetail)


class ApigeeFault(_Wire):
    """The API proxy's own error body, returned before Daraja sees the request.

    `{"fault": {"faultstring": "...", "detail": {"errorcode": "policies.ratelimit..."}}}`
    """

    fault: ApigeeFaultInner

    @property
    def error_code(self) -> str:
        return self.fault.detail.errorcode

    @property
    def message(self) -> str:
        return self.fault.faultstring


class OAuthToken(_Wire):
    """`{"access_token": "<28 chars>", "expires_in": "3599"}` (or `3599`)."""

    model_config = ConfigDict(coerce_numbers_to_str=False)

    access_token: str = Field(min_length=1)
    expires_in: int = Field(ge=0)

    @field_validator("access_token", mode="before")
    @classmethod
    def _token_is_text(cls, value: object) -> object:
        if not isinstance(value, str):
            raise ValueError("access_token must be a string")
        return value.strip()
