"""A local Daraja: OAuth, STK push and STK query on Daraja's wire protocol, then the callback.

For development and tests only (`simulator_allowed` refuses production). It is deliberately
strict where Daraja is strict (validation order, error envelopes, the Password check, the
CallBackURL word ban) and deliberately loose where Daraja is loose (numbers or digit
strings), so that an adapter tested here already meets the rules the sandbox enforces. The
outcome of a push is chosen by the last four digits of `PhoneNumber` (see
`SIMULATOR_OUTCOMES`), and the awkward parts of the real service are reproducible on
purpose: callbacks that never come or come twice, queries that say "still processing",
answers that never arrive.

Nothing here is persistent: the state lives in the app (`app.simulator`, also reachable as
`app.state.simulator`, `app.state.recorder` and `app.state.behaviour`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import itertools
import json
import logging
import secrets
import socket
import string
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tiketi.payments.mpesa.client import (
    OAUTH_PATH,
    STK_PUSH_PATH,
    STK_QUERY_PATH,
    DarajaConfig,
    DarajaTimeouts,
)
from tiketi.payments.mpesa.schemas import NAIROBI, nairobi_timestamp, parse_nairobi_timestamp

logger = logging.getLogger("tiketi.payments.mpesa.simulator")

PendingStyle = Literal["4999", "500.001.1001"]

# Daraja's public sandbox values, so a client configured for the simulator looks like one
# configured for the sandbox. The key/secret are ours: the simulator is never reachable by
# anything that matters (and refuses to start in production).
SANDBOX_SHORTCODE: Final = "174379"
SANDBOX_PASSKEY: Final = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
SIMULATOR_CONSUMER_KEY: Final = "tiketi-simulator-consumer-key"
SIMULATOR_CONSUMER_SECRET: Final = "tiketi-simulator-consumer-secret"  # noqa: S105 - not a secret

TOKEN_LENGTH: Final = 28
DEFAULT_EXPIRES_IN: Final = "3599"
RECEIPT_LENGTH: Final = 10
SUCCESS_DESC: Final = "The service request is processed successfully."
ACCEPTED_DESC: Final = "Success. Request accepted for processing"
# Sic: Daraja's own spelling.
QUERY_ACCEPTED_DESC: Final = "The service request has been accepted successsfully"
PROCESSING_MESSAGE: Final = "The transaction is being processed"
STILL_PROCESSING_DESC: Final = "The transaction is still under processing"
LOCKED_MESSAGE: Final = (
    "Unable to lock subscriber, a transaction is already in process for the current subscriber"
)
CALLBACK_CONTENT_TYPE: Final = "application/json;charset=UTF-8"


@dataclass(frozen=True, slots=True)
class SimulatedOutcome:
    result_code: int
    result_desc: str
    # How many times the callback is POSTed: 0 (lost), 1, or 2 (duplicated).
    callbacks: int = 1


SIMULATOR_OUTCOMES: Final[dict[str, SimulatedOutcome]] = {
    "1032": SimulatedOutcome(1032, "Request cancelled by user"),
    "0001": SimulatedOutcome(1, "The balance is insufficient for the transaction."),
    "2001": SimulatedOutcome(2001, "The initiator information is invalid."),
    "1037": SimulatedOutcome(1037, "DS timeout user cannot be reached"),
    "0000": SimulatedOutcome(0, SUCCESS_DESC, callbacks=0),
    "0002": SimulatedOutcome(0, SUCCESS_DESC, callbacks=2),
}
DEFAULT_OUTCOME: Final = SimulatedOutcome(0, SUCCESS_DESC)
# The push itself is refused with the "Unable to lock subscriber" envelope.
LOCKED_PHONE_SUFFIX: Final = "1001"

_REQUIRED_PUSH_FIELDS: Final = (
    "BusinessShortCode",
    "Password",
    "Timestamp",
    "TransactionType",
    "Amount",
    "PartyA",
    "PartyB",
    "PhoneNumber",
    "CallBackURL",
    "AccountReference",
    "TransactionDesc",
)
_REQUIRED_QUERY_FIELDS: Final = ("BusinessShortCode", "Password", "Timestamp", "CheckoutRequestID")
# Daraja names TransactionDesc "Remarks" in its error messages.
_FIELD_LABELS: Final = {"TransactionDesc": "Remarks"}
_TRANSACTION_TYPES: Final = frozenset({"CustomerPayBillOnline", "CustomerBuyGoodsOnline"})
_ALNUM_UPPER: Final = string.ascii_uppercase + string.digits
_TOKEN_ALPHABET: Final = string.ascii_letters + string.digits


def simulator_allowed(env: str) -> bool:
    """The simulator runs anywhere but production (`TIKETI_ENV`)."""
    return env.strip().lower() != "production"


def simulator_client_config(
    base_url: str,
    *,
    consumer_key: str = SIMULATOR_CONSUMER_KEY,
    consumer_secret: str = SIMULATOR_CONSUMER_SECRET,
    shortcode: str = SANDBOX_SHORTCODE,
    passkey: str = SANDBOX_PASSKEY,
    timeouts: DarajaTimeouts | None = None,
) -> DarajaConfig:
    """A `DarajaConfig` that talks to a simulator started with the same (default) values."""
    return DarajaConfig(
        base_url=base_url,
        consumer_key=consumer_key,
        consumer_secret=consumer_secret,
        shortcode=shortcode,
        passkey=passkey,
        timeouts=timeouts or DarajaTimeouts(),
        simulator=True,
    )


# ----------------------------------------------------------------------------- recording


@dataclass(slots=True)
class RecordedRequest:
    """One request the simulator received (the `/__sim/*` endpoints excluded)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: str
    json: Any
    received_at: float
    status_code: int | None = None
    response: Any = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class RecordedCallback:
    """One callback POST the simulator made (or tried to make) to a CallBackURL."""

    url: str
    checkout_request_id: str
    body: dict[str, Any]
    raw: str
    sent_at: float
    status_code: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SimulatorRecorder:
    """Everything the simulator saw and did, in order, for tests to assert on."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.callbacks: list[RecordedCallback] = []
        self._callback_sent = asyncio.Event()

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    @property
    def oauth_calls(self) -> list[RecordedRequest]:
        return self.requests_to(OAUTH_PATH)

    @property
    def pushes(self) -> list[RecordedRequest]:
        return self.requests_to(STK_PUSH_PATH)

    @property
    def queries(self) -> list[RecordedRequest]:
        return self.requests_to(STK_QUERY_PATH)

    def add_callback(self, callback: RecordedCallback) -> None:
        self.callbacks.append(callback)
        self._callback_sent.set()

    def clear(self) -> None:
        self.requests.clear()
        self.callbacks.clear()

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": [r.to_dict() for r in self.requests],
            "callbacks": [c.to_dict() for c in self.callbacks],
        }

    async def wait_for_callbacks(
        self, count: int, *, within_seconds: float = 5.0
    ) -> list[RecordedCallback]:
        """Wait until `count` callbacks were delivered (or failed), at most `within_seconds`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_seconds):
                while len(self.callbacks) < count:
                    self._callback_sent.clear()
                    await self._callback_sent.wait()
        return list(self.callbacks)


@dataclass(slots=True)
class SimulatorBehaviour:
    """Switches for fault tests. The one-shot ones reset themselves once used."""

    callback_delay: float
    query_pending_style: PendingStyle
    timestamp_window_seconds: float = 3600.0
    # OAuth answers 503 with an empty body.
    oauth_down: bool = False
    # OAuth answers this late (to pile up concurrent token requests).
    oauth_delay_seconds: float = 0.0
    # `expires_in` as sent (Daraja sends "3599"; newer docs a number); tokens live this long.
    token_expires_in: str | int = DEFAULT_EXPIRES_IN
    # The next N authenticated calls get 404.001.03 "Invalid Access Token", whatever the token.
    invalid_token_answers: int = 0
    # One-shot: the next push is processed (the prompt goes out, the callback follows) but
    # the answer only comes after this many seconds.
    fail_next_push_with_timeout_seconds: float | None = None
    # One-shot: the next push is processed, then the connection is closed mid-answer.
    drop_connection: bool = False
    # One-shot: the next push is answered with this (status, JSON body or None for an empty
    # body) without being processed, e.g. (500, {"errorCode": "500.003.02", ...}).
    next_push_error: tuple[int, Any] | None = None

    def clear_faults(self) -> None:
        self.oauth_down = False
        self.oauth_delay_seconds = 0.0
        self.token_expires_in = DEFAULT_EXPIRES_IN
        self.invalid_token_answers = 0
        self.fail_next_push_with_timeout_seconds = None
        self.drop_connection = False
        self.next_push_error = None


@dataclass(slots=True)
class SimulatedTransaction:
    checkout_request_id: str
    merchant_request_id: str
    amount: int
    phone: str
    callback_url: str
    outcome: SimulatedOutcome
    # Monotonic time when the customer "answers" the prompt: before it, queries say pending.
    decided_at: float
    receipt: str | None = None


class _DroppedConnection(Response):
    """Starts an answer and never finishes it: uvicorn then closes the connection."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"512")],
            }
        )


# ----------------------------------------------------------------------------- the simulator


class _Refusal(Exception):
    """A Daraja error answer, raised by the validators and rendered by the handlers."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _envelope(status: int, code: str, message: str) -> _Refusal:
    request_id = f"{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(6)}"
    return _Refusal(status, {"requestId": request_id, "errorCode": code, "errorMessage": message})


def _invalid(field_name: str) -> _Refusal:
    label = _FIELD_LABELS.get(field_name, field_name)
    return _envelope(400, "400.002.02", f"Bad Request - Invalid {label}")


def _digits(value: Any) -> str | None:
    """Digits as text from a JSON integer or a digit string (Daraja accepts both)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return value
    return None


def _msisdn(value: Any) -> str | None:
    text = _digits(value)
    if text is None or len(text) != 12 or not text.startswith(("2547", "2541")):
        return None
    return text


class DarajaSimulator:
    """The simulator's state and request handlers (one instance per app)."""

    def __init__(
        self,
        *,
        consumer_key: str,
        consumer_secret: str,
        shortcode: str,
        passkey: str,
        callback_delay: float,
        query_pending_style: PendingStyle,
        http_client_factory: Callable[[], httpx.AsyncClient] | None = None,
        timestamp_window_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if query_pending_style not in ("4999", "500.001.1001"):
            raise ValueError("query_pending_style must be '4999' or '500.001.1001'")
        if callback_delay < 0:
            raise ValueError("callback_delay must be >= 0")
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.shortcode = shortcode
        self.passkey = passkey
        self.recorder = SimulatorRecorder()
        self.behaviour = SimulatorBehaviour(
            callback_delay=callback_delay,
            query_pending_style=query_pending_style,
            timestamp_window_seconds=timestamp_window_seconds,
        )
        self.transactions: dict[str, SimulatedTransaction] = {}
        self._tokens: dict[str, float] = {}
        self._receipts: set[str] = set()
        self._sequence = itertools.count(1)
        self._clock = clock
        self._http_client_factory = http_client_factory
        self._http: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Cancel pending callbacks and close the callback client (app shutdown)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def revoke_tokens(self) -> None:
        """Forget every issued token, as if they had all expired."""
        self._tokens.clear()

    def reset(self, *, full: bool = False) -> None:
        """Clear the recordings and fault switches.

        Issued tokens and transactions stay, so connected clients keep working; `full` also
        forgets them and cancels the callbacks not sent yet (a clean slate between tests).
        """
        self.recorder.clear()
        self.behaviour.clear_faults()
        if full:
            for task in self._tasks:
                task.cancel()
            self.transactions.clear()
            self._tokens.clear()

    # ------------------------------------------------------------------ recording helpers

    async def _record(self, request: Request) -> tuple[RecordedRequest, bytes]:
        raw = await request.body()
        try:
            decoded: Any = json.loads(raw) if raw.strip() else None
        except ValueError:
            decoded = None
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers=dict(request.headers),
            body=raw.decode("utf-8", errors="replace"),
            json=decoded,
            received_at=time.time(),
        )
        self.recorder.requests.append(record)
        return record, raw

    @staticmethod
    def _answer(record: RecordedRequest, status: int, body: Any) -> Response:
        record.status_code = status
        record.response = body
        if body is None:
            return Response(status_code=status, content=b"")
        return JSONResponse(body, status_code=status)

    # ------------------------------------------------------------------ OAuth

    async def oauth(self, request: Request) -> Response:
        record, _ = await self._record(request)
        behaviour = self.behaviour
        if behaviour.oauth_down:
            return self._answer(record, 503, None)
        if behaviour.oauth_delay_seconds > 0:
            await asyncio.sleep(behaviour.oauth_delay_seconds)
        if request.query_params.get("grant_type") != "client_credentials":
            refusal = _envelope(400, "400.008.02", "Invalid grant type passed")
            return self._answer(record, refusal.status, refusal.body)
        if not self._valid_basic_auth(request.headers.get("authorization", "")):
            # Daraja's answer to a wrong key/secret really is an empty 400.
            return self._answer(record, 400, None)
        token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))
        expires_in = behaviour.token_expires_in
        self._tokens[token] = self._clock() + float(expires_in)
        return self._answer(record, 200, {"access_token": token, "expires_in": expires_in})

    def _valid_basic_auth(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        key, sep, secret = decoded.partition(":")
        key_ok = hmac.compare_digest(key.encode(), self.consumer_key.encode())
        secret_ok = hmac.compare_digest(secret.encode(), self.consumer_secret.encode())
        return bool(sep) and key_ok and secret_ok

    def _check_token(self, request: Request) -> None:
        behaviour = self.behaviour
        if behaviour.invalid_token_answers > 0:
            behaviour.invalid_token_answers -= 1
            raise _envelope(404, "404.001.03", "Invalid Access Token")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expires_at = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expires_at is None or self._clock() >= expires_at:
            raise _envelope(404, "404.001.03", "Invalid Access Token")

    # ------------------------------------------------------------------ shared validation

    @staticmethod
    def _payload(raw: bytes) -> dict[str, Any]:
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise _envelope(400, "400.002.05", "Invalid Request Payload")
        return data

    @staticmethod
    def _check_required(data: dict[str, Any], fields: tuple[str, ...]) -> None:
        for name in fields:
            value = data.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise _invalid(name)

    def _check_credentials(self, data: dict[str, Any]) -> str:
        """BusinessShortCode, Timestamp, Password, in Daraja's order; returns the shortcode."""
        shortcode = _digits(data["BusinessShortCode"])
        if shortcode is None or not 5 <= len(shortcode) <= 8:
            raise _invalid("BusinessShortCode")
        if shortcode != self.shortcode:
            raise _envelope(500, "500.001.1001", "Merchant does not exist")
        timestamp = _digits(data["Timestamp"])
        try:
            sent_at = parse_nairobi_timestamp(timestamp or "")
        except ValueError:
            raise _invalid("Timestamp") from None
        skew = abs(sent_at - datetime.now(NAIROBI))
        if skew > timedelta(seconds=self.behaviour.timestamp_window_seconds):
            raise _invalid("Timestamp")
        password = data["Password"]
        if not isinstance(password, str):
            raise _invalid("Password")
        try:
            base64.b64decode(password, validate=True)
        except binascii.Error:
            raise _invalid("Password") from None
        expected = base64.b64encode(f"{shortcode}{self.passkey}{timestamp}".encode()).decode()
        if not hmac.compare_digest(password.encode(), expected.encode()):
            raise _envelope(500, "500.001.1001", "Wrong credentials")
        return shortcode

    # ------------------------------------------------------------------ STK push

    async def stk_push(self, request: Request) -> Response:
        record, raw = await self._record(request)
        try:
            self._check_token(request)
            injected = self.behaviour.next_push_error
            if injected is not None:
                self.behaviour.next_push_error = None
                return self._answer(record, injected[0], injected[1])
            transaction = self._accept_push(self._payload(raw))
        except _Refusal as refusal:
            return self._answer(record, refusal.status, refusal.body)
        self._schedule_callbacks(transaction)
        body = {
            "MerchantRequestID": transaction.merchant_request_id,
            "CheckoutRequestID": transaction.checkout_request_id,
            "ResponseCode": "0",
            "ResponseDescription": ACCEPTED_DESC,
            "CustomerMessage": ACCEPTED_DESC,
        }
        behaviour = self.behaviour
        if behaviour.drop_connection:
            behaviour.drop_connection = False
            record.status_code = None
            record.response = "dropped"
            return _DroppedConnection()
        delay = behaviour.fail_next_push_with_timeout_seconds
        if delay is not None:
            behaviour.fail_next_push_with_timeout_seconds = None
            await asyncio.sleep(delay)
        return self._answer(record, 200, body)

    def _accept_push(self, data: dict[str, Any]) -> SimulatedTransaction:
        """Validate like Daraja (first failure wins) and create the transaction."""
        self._check_required(data, _REQUIRED_PUSH_FIELDS)
        shortcode = self._check_credentials(data)
        transaction_type = data["TransactionType"]
        if transaction_type not in _TRANSACTION_TYPES:
            raise _invalid("TransactionType")
        amount_text = _digits(data["Amount"])
        if amount_text is None or not 1 <= int(amount_text) <= 250_000:
            raise _invalid("Amount")
        if _msisdn(data["PartyA"]) is None:
            raise _invalid("PartyA")
        party_b = _digits(data["PartyB"])
        if party_b is None or not 5 <= len(party_b) <= 8:
            raise _invalid("PartyB")
        if transaction_type == "CustomerPayBillOnline" and party_b != shortcode:
            raise _invalid("PartyB")
        phone = _msisdn(data["PhoneNumber"])
        if phone is None:
            raise _invalid("PhoneNumber")
        callback_url = data["CallBackURL"]
        if not self._acceptable_callback_url(callback_url):
            raise _invalid("CallBackURL")
        reference = data["AccountReference"]
        if not isinstance(reference, str | int) or isinstance(reference, bool):
            raise _invalid("AccountReference")
        if len(str(reference)) > 12:
            raise _invalid("AccountReference")
        description = data["TransactionDesc"]
        if not isinstance(description, str) or len(description) > 13:
            raise _invalid("TransactionDesc")
        if phone.endswith(LOCKED_PHONE_SUFFIX):
            raise _envelope(500, "500.001.1001", LOCKED_MESSAGE)

        sequence = next(self._sequence)
        outcome = SIMULATOR_OUTCOMES.get(phone[-4:], DEFAULT_OUTCOME)
        now = datetime.now(NAIROBI)
        transaction = SimulatedTransaction(
            checkout_request_id=f"ws_CO_{now:%d%m%Y%H%M%S}{sequence:04d}{phone[3:]}",
            merchant_request_id=(
                f"{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}-"
                f"{secrets.token_hex(6)}{sequence}"
            ),
            amount=int(amount_text),
            phone=phone,
            callback_url=callback_url,
            outcome=outcome,
            decided_at=self._clock() + self.behaviour.callback_delay,
            receipt=self._new_receipt() if outcome.result_code == 0 else None,
        )
        self.transactions[transaction.checkout_request_id] = transaction
        return transaction

    @staticmethod
    def _acceptable_callback_url(url: Any) -> bool:
        if not isinstance(url, str) or any(c.isspace() for c in url):
            return False
        lowered = url.lower()
        if "mpesa" in lowered or "safaricom" in lowered:
            return False
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)

    def _new_receipt(self) -> str:
        while True:
            receipt = secrets.choice(string.ascii_uppercase) + "".join(
                secrets.choice(_ALNUM_UPPER) for _ in range(RECEIPT_LENGTH - 1)
            )
            if receipt not in self._receipts:
                self._receipts.add(receipt)
                return receipt

    # ------------------------------------------------------------------ callbacks

    def _schedule_callbacks(self, transaction: SimulatedTransaction) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(transaction))
        # Keep a reference: the loop only holds tasks weakly.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, transaction: SimulatedTransaction) -> None:
        await asyncio.sleep(self.behaviour.callback_delay)
        outcome = transaction.outcome
        if outcome.callbacks == 0:
            logger.info("callback suppressed for %s", transaction.checkout_request_id)
            return
        body, raw = self.callback_body(transaction)
        for attempt in range(outcome.callbacks):
            if attempt:
                # Duplicates arrive shortly after the original in real traffic.
                await asyncio.sleep(min(0.05, self.behaviour.callback_delay))
            await self._post_callback(transaction, body, raw)

    def callback_body(self, transaction: SimulatedTransaction) -> tuple[dict[str, Any], bytes]:
        """The callback as Daraja shapes it: the dict, and the exact bytes sent."""
        outcome = transaction.outcome
        callback: dict[str, Any] = {
            "MerchantRequestID": transaction.merchant_request_id,
            "CheckoutRequestID": transaction.checkout_request_id,
            "ResultCode": outcome.result_code,
            "ResultDesc": outcome.result_desc,
        }
        if outcome.result_code == 0:
            callback["CallbackMetadata"] = {
                "Item": [
                    {"Name": "Amount", "Value": float(transaction.amount)},
                    {"Name": "MpesaReceiptNumber", "Value": transaction.receipt},
                    {"Name": "Balance"},
                    {"Name": "TransactionDate", "Value": int(nairobi_timestamp())},
                    {"Name": "PhoneNumber", "Value": int(transaction.phone)},
                ]
            }
        body = {"Body": {"stkCallback": callback}}
        text = json.dumps(body)
        if outcome.result_code == 0:
            # Daraja writes the amount with two decimals (`1500.00`), which json.dumps cannot.
            text = text.replace(
                f'"Value": {float(transaction.amount)!r}', f'"Value": {transaction.amount}.00', 1
            )
        return body, text.encode()

    async def _post_callback(
        self, transaction: SimulatedTransaction, body: dict[str, Any], raw: bytes
    ) -> None:
        record = RecordedCallback(
            url=transaction.callback_url,
            checkout_request_id=transaction.checkout_request_id,
            body=body,
            raw=raw.decode(),
            sent_at=time.time(),
        )
        try:
            response = await self._callback_client().post(
                transaction.callback_url,
                content=raw,
                headers={"Content-Type": CALLBACK_CONTENT_TYPE},
            )
        except httpx.HTTPError as exc:
            # Safaricom does not retry a failed callback; neither do we.
            record.error = f"{type(exc).__name__}: {exc}"
            logger.warning("callback to %s failed: %s", transaction.callback_url, record.error)
        else:
            record.status_code = response.status_code
        # Recorded once finished, so a test that waited for it can look at the receiver.
        self.recorder.add_callback(record)

    def _callback_client(self) -> httpx.AsyncClient:
        if self._http is None:
            factory = self._http_client_factory
            self._http = factory() if factory is not None else httpx.AsyncClient(timeout=10.0)
        return self._http

    # ------------------------------------------------------------------ STK query

    async def stk_query(self, request: Request) -> Response:
        record, raw = await self._record(request)
        try:
            self._check_token(request)
            data = self._payload(raw)
            self._check_required(data, _REQUIRED_QUERY_FIELDS)
            self._check_credentials(data)
            checkout_request_id = data["CheckoutRequestID"]
            transaction = (
                self.transactions.get(checkout_request_id)
                if isinstance(checkout_request_id, str)
                else None
            )
            if transaction is None:
                # Daraja's catch-all, as for a transaction it has not finished.
                raise _envelope(500, "500.001.1001", PROCESSING_MESSAGE)
            if self._clock() < transaction.decided_at:
                if self.behaviour.query_pending_style == "500.001.1001":
                    raise _envelope(500, "500.001.1001", PROCESSING_MESSAGE)
                result_code, result_desc = "4999", STILL_PROCESSING_DESC
            else:
                result_code = str(transaction.outcome.result_code)
                result_desc = transaction.outcome.result_desc
        except _Refusal as refusal:
            return self._answer(record, refusal.status, refusal.body)
        body = {
            "ResponseCode": "0",
            "ResponseDescription": QUERY_ACCEPTED_DESC,
            "MerchantRequestID": transaction.merchant_request_id,
            "CheckoutRequestID": transaction.checkout_request_id,
            "ResultCode": result_code,
            "ResultDesc": result_desc,
        }
        return self._answer(record, 200, body)

    # ------------------------------------------------------------------ test endpoints

    async def sim_requests(self, request: Request) -> Response:
        return JSONResponse(self.recorder.snapshot())

    async def sim_reset(self, request: Request) -> Response:
        full = request.query_params.get("full", "").lower() in ("1", "true", "yes")
        self.reset(full=full)
        return JSONResponse({"reset": True, "full": full})


class SimulatorApp(Starlette):
    """The simulator's ASGI app; `simulator` (also on `state`) holds everything."""

    simulator: DarajaSimulator

    @property
    def recorder(self) -> SimulatorRecorder:
        return self.simulator.recorder

    @property
    def behaviour(self) -> SimulatorBehaviour:
        return self.simulator.behaviour


def create_simulator_app(
    *,
    consumer_key: str = SIMULATOR_CONSUMER_KEY,
    consumer_secret: str = SIMULATOR_CONSUMER_SECRET,
    shortcode: str = SANDBOX_SHORTCODE,
    passkey: str = SANDBOX_PASSKEY,
    callback_delay: float = 3.0,
    query_pending_style: PendingStyle = "4999",
    http_client_factory: Callable[[], httpx.AsyncClient] | None = None,
    timestamp_window_seconds: float = 3600.0,
) -> SimulatorApp:
    """Build the simulator app. `http_client_factory` makes the client that POSTs callbacks."""
    simulator = DarajaSimulator(
        consumer_key=consumer_key,
        consumer_secret=consumer_secret,
        shortcode=shortcode,
        passkey=passkey,
        callback_delay=callback_delay,
        query_pending_style=query_pending_style,
        http_client_factory=http_client_factory,
        timestamp_window_seconds=timestamp_window_seconds,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await simulator.aclose()

    app = SimulatorApp(
        routes=[
            Route(OAUTH_PATH, simulator.oauth, methods=["GET"]),
            Route(STK_PUSH_PATH, simulator.stk_push, methods=["POST"]),
            Route(STK_QUERY_PATH, simulator.stk_query, methods=["POST"]),
            Route("/__sim/requests", simulator.sim_requests, methods=["GET"]),
            Route("/__sim/reset", simulator.sim_reset, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.simulator = simulator
    app.state.simulator = simulator
    app.state.recorder = simulator.recorder
    app.state.behaviour = simulator.behaviour
    return app


# ----------------------------------------------------------------------------- serving


class _EmbeddedServer(uvicorn.Server):
    # Inside another program (tests, `tiketi dev`), Ctrl-C belongs to that program.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_in_background(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 10.0,
    shutdown_timeout: float = 5.0,
) -> AsyncIterator[str]:
    """Serve `app` with uvicorn in the running event loop; yield its base URL.

    `port=0` picks a free port. Used by the tests (simulator and callback receiver) and by
    anything that wants the simulator in-process next to the API.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio only sets TCP_NODELAY on sockets that say they are TCP,
    # and without it every keep-alive answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="on",
        # Leave the host program's logging setup alone; only quieten uvicorn's loggers.
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = _EmbeddedServer(config)
    task = asyncio.get_running_loop().create_task(_serve(server, sock))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + startup_timeout
        while not server.started:
            if task.done() or loop.time() > deadline:
                raise RuntimeError(f"the server on {host}:{bound_port} did not start")
            await asyncio.sleep(0.005)
        url_host = f"[{host}]" if family == socket.AF_INET6 else host
        yield f"http://{url_host}:{bound_port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(_quietly(task), timeout=shutdown_timeout)
        sock.close()


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:
        # uvicorn exits the process when the app's startup fails; in a task, SystemExit would
        # tear down the whole event loop instead.
        raise RuntimeError(f"uvicorn stopped with exit code {exc.code}") from None


async def _quietly(awaitable: Awaitable[None]) -> None:
    with contextlib.suppress(Exception):
        await awaitable


def run_simulator(
    host: str,
    port: int,
    callback_delay: float,
    *,
    consumer_key: str = SIMULATOR_CONSUMER_KEY,
    consumer_secret: str = SIMULATOR_CONSUMER_SECRET,
    shortcode: str = SANDBOX_SHORTCODE,
    passkey: str = SANDBOX_PASSKEY,
    query_pending_style: PendingStyle = "4999",
    log_level: str = "info",
) -> None:
    """Run the simulator in the foreground until interrupted (`tiketi daraja-sim`)."""
    app = create_simulator_app(
        consumer_key=consumer_key,
        consumer_secret=consumer_secret,
        shortcode=shortcode,
        passkey=passkey,
        callback_delay=callback_delay,
        query_pending_style=query_pending_style,
    )
    logger.info(
        "Daraja simulator on http://%s:%s (shortcode %s, callbacks after %ss)",
        host,
        port,
        shortcode,
        callback_delay,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)
