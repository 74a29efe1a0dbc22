"""The Daraja STK-push adapter: OAuth, STK push and STK query over one shared httpx client.

The one rule that shapes this module: an STK push is not idempotent. Daraja has no request
key, so a resent push is a second PIN prompt and possibly a second charge. The client
therefore never resends a push on its own, except after an invalid-token answer (the gateway
refuses those before the payment system ever sees the request). Anything that leaves the fate
of a push open raises `MpesaUnknownOutcome`; everything else says for certain that no prompt
was sent.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum, auto
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from tiketi.payments.mpesa.errors import (
    MpesaAuthError,
    MpesaBusy,
    MpesaConfigurationError,
    MpesaError,
    MpesaRejected,
    MpesaSubscriberLocked,
    MpesaUnavailable,
    MpesaUnknownOutcome,
    MpesaValidationError,
)
from tiketi.payments.mpesa.phone import mask_msisdn, normalize_msisdn
from tiketi.payments.mpesa.schemas import (
    CONFIGURATION_RESULT_CODES,
    NAIROBI,
    ApigeeFault,
    DarajaErrorEnvelope,
    OAuthToken,
    StkPushResult,
    StkQueryResponse,
    StkQueryResult,
    StkStatus,
    classify_result_code,
    load_daraja_json,
    nairobi_timestamp,
    normalize_result_code,
)

logger = logging.getLogger("tiketi.payments.mpesa")

SANDBOX_BASE_URL: Final = "https://sandbox.safaricom.co.ke"
PRODUCTION_BASE_URL: Final = "https://api.safaricom.co.ke"

OAUTH_PATH: Final = "/oauth/v1/generate"
STK_PUSH_PATH: Final = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH: Final = "/mpesa/stkpushquery/v1/query"

MIN_AMOUNT: Final = 1
MAX_AMOUNT: Final = 250_000
MAX_ACCOUNT_REFERENCE_LENGTH: Final = 12
MAX_DESCRIPTION_LENGTH: Final = 13
MAX_CHECKOUT_REQUEST_ID_LENGTH: Final = 100
# Refresh this long before Daraja's expiry, so a token never expires between our check and
# the gateway's.
TOKEN_REFRESH_MARGIN_SECONDS: Final = 60.0

INVALID_TOKEN_ERROR_CODES: Final = frozenset({"404.001.03", "401.002.01"})
BUSY_ERROR_CODES: Final = frozenset({"500.003.02", "500.003.03"})
# Daraja's catch-all: its meaning is in errorMessage (and on a query it means "no answer").
GENERIC_ERROR_CODE: Final = "500.001.1001"

_LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})
_FORBIDDEN_CALLBACK_WORDS: Final = ("mpesa", "safaricom")
_ACCOUNT_REFERENCE = re.compile(r"[A-Za-z0-9]{1,12}")
_DIGITS = re.compile(r"[0-9]+")

# Raised by httpx before any byte of the request left this process: nothing reached Daraja.
_NOT_SENT_ERRORS: Final = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


# ----------------------------------------------------------------------------- configuration


class TransactionType(StrEnum):
    """Which kind of shortcode collects the money."""

    paybill = "paybill"
    till = "till"

    @property
    def wire_name(self) -> str:
        if self is TransactionType.till:
            return "CustomerBuyGoodsOnline"
        return "CustomerPayBillOnline"


@dataclass(frozen=True, slots=True)
class DarajaTimeouts:
    """Per-phase httpx bounds plus `total`, an overall deadline for one public call.

    `total` covers the token fetch, the request and the single invalid-token retry: without
    it, a trickling server could keep a request alive forever within the per-read bound.
    """

    connect: float = 5.0
    read: float = 30.0
    write: float = 10.0
    pool: float = 5.0
    total: float = 45.0

    def as_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


@dataclass(frozen=True, slots=True)
class DarajaConfig:
    """Credentials and shortcode for one Daraja app.

    `shortcode` is the BusinessShortCode (the paybill, or the store number of a till);
    `party_b` is the till number and is required in till mode. `simulator` relaxes the
    https-only rules for the local simulator (plain http on any host).
    """

    base_url: str
    consumer_key: str = field(repr=False)
    consumer_secret: str = field(repr=False)
    shortcode: str
    passkey: str = field(repr=False)
    transaction_type: TransactionType = TransactionType.paybill
    party_b: str | None = None
    timeouts: DarajaTimeouts = field(default_factory=DarajaTimeouts)
    simulator: bool = False

    def __post_init__(self) -> None:
        base_url = self.base_url.strip().rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MpesaConfigurationError("the M-Pesa base URL must be an http(s) URL")
        if parts.scheme == "http" and not (self.simulator or parts.hostname in _LOOPBACK_HOSTS):
            # Consumer secrets and bearer tokens must never cross the network in clear text.
            raise MpesaConfigurationError("the M-Pesa base URL must use https")
        object.__setattr__(self, "base_url", base_url)
        if not (self.consumer_key and self.consumer_secret and self.passkey):
            raise MpesaConfigurationError(
                "the M-Pesa consumer key, consumer secret and passkey are required"
            )
        if not _DIGITS.fullmatch(self.shortcode):
            raise MpesaConfigurationError("the M-Pesa shortcode must be digits")
        if self.transaction_type is TransactionType.till:
            if self.party_b is None or not _DIGITS.fullmatch(self.party_b):
                raise MpesaConfigurationError("till mode needs the till number (digits) as party_b")
        elif self.party_b is not None and self.party_b != self.shortcode:
            raise MpesaConfigurationError("in paybill mode PartyB is the shortcode itself")

    @property
    def wire_party_b(self) -> str:
        if self.transaction_type is TransactionType.till:
            assert self.party_b is not None  # checked in __post_init__
            return self.party_b
        return self.shortcode


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    """Daraja's `Password`: base64(shortcode + passkey + timestamp), as text."""
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode("ascii")


# ----------------------------------------------------------------------------- input checks


def check_amount(amount: int) -> int:
    """Whole shillings, 1..250000 (Daraja's per-transaction limits)."""
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise MpesaValidationError("amount", "the amount must be a whole number of shillings")
    if not MIN_AMOUNT <= amount <= MAX_AMOUNT:
        raise MpesaValidationError(
            "amount", f"the amount must be between {MIN_AMOUNT} and {MAX_AMOUNT} shillings"
        )
    return amount


def check_phone(phone: str) -> str:
    try:
        return normalize_msisdn(phone)
    except (TypeError, ValueError) as exc:
        raise MpesaValidationError("phone", str(exc)) from exc


def check_account_reference(reference: str) -> str:
    """1..12 ASCII letters and digits: shown on the PIN prompt and in the M-Pesa SMS."""
    if not isinstance(reference, str) or not _ACCOUNT_REFERENCE.fullmatch(reference):
        raise MpesaValidationError(
            "account_reference",
            f"the account reference must be 1 to {MAX_ACCOUNT_REFERENCE_LENGTH} letters or digits",
        )
    return reference


def check_description(description: str) -> str:
    """`TransactionDesc`: 1..13 printable characters (Daraja calls it `Remarks` in errors)."""
    if (
        not isinstance(description, str)
        or not description.strip()
        or len(description) > MAX_DESCRIPTION_LENGTH
        or not description.isprintable()
    ):
        raise MpesaValidationError(
            "description",
            f"the description must be 1 to {MAX_DESCRIPTION_LENGTH} printable characters",
        )
    return description


def check_callback_url(url: str, *, simulator: bool = False) -> str:
    """A CallBackURL Daraja will accept and that we can safely be called on.

    https, except plain http to a loopback host (or anywhere in simulator mode); never the
    words "mpesa" or "safaricom", which Daraja refuses anywhere in the URL.
    """
    if not isinstance(url, str) or not url or any(c.isspace() for c in url):
        raise MpesaValidationError("callback_url", "the callback URL must be an http(s) URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MpesaValidationError("callback_url", "the callback URL must be an http(s) URL")
    if parts.scheme == "http" and not (simulator or parts.hostname in _LOOPBACK_HOSTS):
        raise MpesaValidationError("callback_url", "the callback URL must use https")
    lowered = url.lower()
    if any(word in lowered for word in _FORBIDDEN_CALLBACK_WORDS):
        raise MpesaValidationError(
            "callback_url",
            "the callback URL must not contain 'mpesa' or 'safaricom' (Daraja refuses it)",
        )
    return url


def check_checkout_request_id(checkout_request_id: str) -> str:
    if (
        not isinstance(checkout_request_id, str)
        or not checkout_request_id
        or len(checkout_request_id) > MAX_CHECKOUT_REQUEST_ID_LENGTH
        or not checkout_request_id.isascii()
        or not checkout_request_id.isprintable()
        or " " in checkout_request_id
    ):
        raise MpesaValidationError("checkout_request_id", "not a CheckoutRequestID")
    return checkout_request_id


# ----------------------------------------------------------------------------- the protocol


class MpesaGateway(Protocol):
    """What the payments service needs from M-Pesa; `DarajaClient` is the real one."""

    async def stk_push(
        self,
        *,
        amount: int,
        phone: str,
        account_reference: str,
        description: str,
        callback_url: str,
    ) -> StkPushResult:
        """Prompt `phone` to pay `amount`; see `DarajaClient.stk_push` for the error contract."""
        ...

    async def stk_query(self, checkout_request_id: str) -> StkQueryResult:
        """Ask where a push stands; see `DarajaClient.stk_query`."""
        ...


# ----------------------------------------------------------------------------- answer reading


class _Kind(Enum):
    invalid_token = auto()
    busy = auto()
    subscriber_locked = auto()
    configuration = auto()
    auth = auto()
    rejected = auto()
    # 500.001.1001 "The transaction is being processed"
    processing = auto()
    # 500.001.1001 with any other message
    generic = auto()
    unknown = auto()


@dataclass(frozen=True, slots=True)
class _Failure:
    kind: _Kind
    http_status: int
    error_code: str | None = None
    error_message: str | None = None
    request_id: str | None = None

    def details(self) -> dict[str, Any]:
        return {
            "error_code": self.error_code,
            "error_message": self.error_message,
            "http_status": self.http_status,
            "request_id": self.request_id,
        }


def _read_json(response: httpx.Response) -> Any:
    """The decoded body, or None when it is empty or not JSON (Daraja sends both on errors)."""
    content = response.content
    if not content.strip():
        return None
    try:
        return load_daraja_json(content)
    except ValueError:
        return None


def _squash(text: str) -> str:
    return re.sub(r"[^a-z]", "", text.lower())


def _classify_envelope(status: int, envelope: DarajaErrorEnvelope) -> _Failure:
    code = envelope.error_code.strip()
    message = envelope.error_message
    lowered = message.lower()

    def failure(kind: _Kind) -> _Failure:
        return _Failure(kind, status, code, message, envelope.request_id)

    if code in INVALID_TOKEN_ERROR_CODES or "invalid access token" in lowered:
        return failure(_Kind.invalid_token)
    if code in BUSY_ERROR_CODES:
        return failure(_Kind.busy)
    if code == GENERIC_ERROR_CODE:
        if "unable to lock subscriber" in lowered:
            return failure(_Kind.subscriber_locked)
        if "merchant does not exist" in lowered or "wrong credentials" in lowered:
            return failure(_Kind.configuration)
        if "being processed" in lowered:
            return failure(_Kind.processing)
        return failure(_Kind.generic)
    if status == 401:
        return failure(_Kind.invalid_token)
    if status == 429:
        return failure(_Kind.busy)
    if status < 500:
        return failure(_Kind.rejected)
    # An unrecognised 5xx code ("Internal Server Error"...) may come after the payment system
    # accepted the push: only "unknown" is safe.
    return failure(_Kind.unknown)


def _classify_fault(status: int, fault: ApigeeFault) -> _Failure:
    squashed = _squash(f"{fault.error_code} {fault.message}")

    def failure(kind: _Kind) -> _Failure:
        return _Failure(kind, status, fault.error_code or None, fault.message or None)

    if "invalidaccesstoken" in squashed or "accesstokenexpired" in squashed:
        return failure(_Kind.invalid_token)
    if any(word in squashed for word in ("spikearrest", "quotaviolation", "ratelimit")):
        return failure(_Kind.busy)
    if "invalidapikey" in squashed or "invalidclientidentifier" in squashed:
        return failure(_Kind.auth)
    if status == 401:
        return failure(_Kind.invalid_token)
    if status == 429:
        return failure(_Kind.busy)
    # The proxy answers for itself before forwarding (policies) or after the backend failed
    # (gateway timeouts, 5xx): only the former is certain.
    return failure(_Kind.rejected if status < 500 else _Kind.unknown)


def _classify_failure(status: int, data: Any) -> _Failure:
    """Sort a non-success answer (any status, any body) into what the caller must do."""
    if isinstance(data, dict):
        if "errorCode" in data:
            try:
                return _classify_envelope(status, DarajaErrorEnvelope.model_validate(data))
            except ValidationError:
                pass
        if "fault" in data:
            try:
                return _classify_fault(status, ApigeeFault.model_validate(data))
            except ValidationError:
                pass
    if status == 401:
        return _Failure(_Kind.invalid_token, status)
    if status == 429:
        return _Failure(_Kind.busy, status)
    if 300 <= status < 400 or status == 404:
        # A redirect or a plain 404 page: we are not talking to Daraja's API at all.
        return _Failure(_Kind.configuration, status, error_message="check the M-Pesa base URL")
    if 400 <= status < 500:
        return _Failure(_Kind.rejected, status)
    return _Failure(_Kind.unknown, status)


def _is_error_body(data: Any) -> bool:
    return isinstance(data, dict) and ("errorCode" in data or "fault" in data)


@dataclass(slots=True)
class _CachedToken:
    value: str
    refresh_at: float


@dataclass(slots=True)
class _PushProgress:
    # True from the moment the push request may have left this process until Daraja
    # definitely refused it: decides between "unknown outcome" and "nothing was sent".
    in_flight: bool = False


def _default_now() -> datetime:
    return datetime.now(NAIROBI)


# ----------------------------------------------------------------------------- the client


class DarajaClient:
    """`MpesaGateway` over Daraja's HTTP API. Create one per process (it caches the token).

    `http` is the process-wide `httpx.AsyncClient` from the app lifespan; the client never
    closes it. `clock` (monotonic seconds) and `now` (aware datetime) exist for tests.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        config: DarajaConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _default_now,
    ) -> None:
        self._http = http
        self._config = config
        self._clock = clock
        self._now = now
        self._token: _CachedToken | None = None
        self._token_lock = asyncio.Lock()

    @property
    def config(self) -> DarajaConfig:
        return self._config

    # ------------------------------------------------------------------ STK push

    def build_stk_push_payload(
        self,
        *,
        amount: int,
        phone: str,
        account_reference: str,
        description: str,
        callback_url: str,
    ) -> dict[str, Any]:
        """Validate the inputs and build the request body; raises MpesaValidationError."""
        config = self._config
        check_amount(amount)
        msisdn = check_phone(phone)
        check_account_reference(account_reference)
        check_description(description)
        check_callback_url(callback_url, simulator=config.simulator)
        timestamp = nairobi_timestamp(self._now())
        # Numbers go out as JSON integers, as in Daraja's own examples; some gateway
        # versions have refused the digit-string forms.
        return {
            "BusinessShortCode": int(config.shortcode),
            "Password": stk_password(config.shortcode, config.passkey, timestamp),
            "Timestamp": timestamp,
            "TransactionType": config.transaction_type.wire_name,
            "Amount": amount,
            "PartyA": int(msisdn),
            "PartyB": int(config.wire_party_b),
            "PhoneNumber": int(msisdn),
            "CallBackURL": callback_url,
            "AccountReference": account_reference,
            "TransactionDesc": description,
        }

    async def stk_push(
        self,
        *,
        amount: int,
        phone: str,
        account_reference: str,
        description: str,
        callback_url: str,
    ) -> StkPushResult:
        """Send one STK push (a PIN prompt to `phone`) and return Daraja's acceptance.

        Raises, before anything is sent: `MpesaValidationError`. Definite failures, no
        prompt was sent: `MpesaRejected`, `MpesaConfigurationError`, `MpesaAuthError`,
        `MpesaBusy` (`MpesaSubscriberLocked`: a prompt is already open on that phone),
        `MpesaUnavailable`. `MpesaUnknownOutcome`: the push may have been sent; keep the
        payment pending and never call this again for it.
        """
        payload = self.build_stk_push_payload(
            amount=amount,
            phone=phone,
            account_reference=account_reference,
            description=description,
            callback_url=callback_url,
        )
        progress = _PushProgress()
        total = self._config.timeouts.total
        try:
            async with asyncio.timeout(total):
                result = await self._push(payload, progress)
        except TimeoutError as exc:
            if progress.in_flight:
                raise MpesaUnknownOutcome(
                    f"no answer to the STK push within {total:g}s; it may have been sent"
                ) from exc
            raise MpesaUnavailable(
                f"could not reach Daraja within {total:g}s; no push was sent"
            ) from exc
        logger.info(
            "stk push accepted",
            extra={
                "checkout_request_id": result.checkout_request_id,
                "merchant_request_id": result.merchant_request_id,
                "amount": amount,
                "phone": mask_msisdn(str(payload["PhoneNumber"])),
            },
        )
        return result

    async def _push(self, payload: dict[str, Any], progress: _PushProgress) -> StkPushResult:
        url = self._config.base_url + STK_PUSH_PATH
        for attempt in (1, 2):
            token = await self._access_token()
            progress.in_flight = True
            try:
                response = await self._http.post(
                    url,
                    json=payload,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=self._config.timeouts.as_httpx(),
                )
            except _NOT_SENT_ERRORS as exc:
                raise MpesaUnavailable(
                    f"could not connect to Daraja ({type(exc).__name__}); no push was sent"
                ) from exc
            except httpx.HTTPError as exc:
                logger.warning("stk push outcome unknown", extra={"reason": type(exc).__name__})
                raise MpesaUnknownOutcome(
                    f"the STK push may have been sent but no answer came back "
                    f"({type(exc).__name__})"
                ) from exc
            outcome = self._read_push_answer(response)
            if isinstance(outcome, StkPushResult):
                return outcome
            if outcome.kind is _Kind.invalid_token and attempt == 1:
                # The gateway checks the token before anything else, so this push was never
                # processed: the one retry cannot double-prompt.
                progress.in_flight = False
                self._forget_token(token)
                continue
            error = self._push_error(outcome)
            logger.warning(
                "stk push failed",
                extra={"error": type(error).__name__, **outcome.details()},
            )
            raise error
        raise AssertionError("the second attempt returns or raises")  # pragma: no cover

    def _read_push_answer(self, response: httpx.Response) -> StkPushResult | _Failure:
        status = response.status_code
        data = _read_json(response)
        if not (200 <= status < 300) or _is_error_body(data):
            return _classify_failure(status, data)
        if not isinstance(data, dict) or "ResponseCode" not in data:
            raise MpesaUnknownOutcome(
                "Daraja answered the STK push with an unreadable success", http_status=status
            )
        code = normalize_result_code(str(data["ResponseCode"]))
        description = str(data.get("ResponseDescription") or data.get("CustomerMessage") or "")
        if code != "0":
            error_type = (
                MpesaConfigurationError if code in CONFIGURATION_RESULT_CODES else MpesaRejected
            )
            raise error_type(
                "Daraja refused the STK push",
                error_code=code,
                error_message=description,
                http_status=status,
            )
        try:
            return StkPushResult.model_validate(data)
        except ValidationError as exc:
            checkout = data.get("CheckoutRequestID")
            raise MpesaUnknownOutcome(
                "Daraja accepted the STK push but its answer lacks the request IDs",
                http_status=status,
                checkout_request_id=checkout if isinstance(checkout, str) and checkout else None,
            ) from exc

    @staticmethod
    def _push_error(failure: _Failure) -> MpesaError:
        kind = failure.kind
        details = failure.details()
        if kind is _Kind.invalid_token:
            return MpesaAuthError("Daraja refused a freshly issued access token", **details)
        if kind is _Kind.subscriber_locked:
            return MpesaSubscriberLocked(
                "a payment prompt is already open on this phone; retry in a minute", **details
            )
        if kind is _Kind.busy:
            return MpesaBusy("M-Pesa is busy; retry in a minute", **details)
        if kind is _Kind.configuration:
            return MpesaConfigurationError("Daraja refused our M-Pesa configuration", **details)
        if kind is _Kind.auth:
            return MpesaAuthError("Daraja refused our API credentials", **details)
        if kind in (_Kind.rejected, _Kind.generic):
            return MpesaRejected("Daraja refused the STK push", **details)
        return MpesaUnknownOutcome(
            "Daraja answered the STK push with an error that does not say whether it was sent",
            **details,
        )

    # ------------------------------------------------------------------ STK query

    async def stk_query(self, checkout_request_id: str) -> StkQueryResult:
        """Ask Daraja where the push `checkout_request_id` stands.

        Returns `pending` for both "still processing" forms (`4999`, and `500.001.1001` on any
        HTTP status, which also comes back for finished or unknown IDs: "no answer this time",
        never "failed"). A query is read-only, so every failure to get an answer is
        `MpesaUnavailable` (or `MpesaBusy`): ask again later. `MpesaRejected` (the query
        itself was refused) says nothing about the payment either.
        """
        check_checkout_request_id(checkout_request_id)
        total = self._config.timeouts.total
        try:
            async with asyncio.timeout(total):
                return await self._query(checkout_request_id)
        except TimeoutError as exc:
            raise MpesaUnavailable(f"no answer to the STK query within {total:g}s") from exc

    async def _query(self, checkout_request_id: str) -> StkQueryResult:
        config = self._config
        url = config.base_url + STK_QUERY_PATH
        for attempt in (1, 2):
            token = await self._access_token()
            timestamp = nairobi_timestamp(self._now())
            payload = {
                "BusinessShortCode": int(config.shortcode),
                "Password": stk_password(config.shortcode, config.passkey, timestamp),
                "Timestamp": timestamp,
                "CheckoutRequestID": checkout_request_id,
            }
            try:
                response = await self._http.post(
                    url,
                    json=payload,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=config.timeouts.as_httpx(),
                )
            except httpx.HTTPError as exc:
                raise MpesaUnavailable(
                    f"no answer to the STK query ({type(exc).__name__})"
                ) from exc
            outcome = self._read_query_answer(response, checkout_request_id)
            if isinstance(outcome, StkQueryResult):
                return outcome
            if outcome.kind is _Kind.invalid_token and attempt == 1:
                self._forget_token(token)
                continue
            raise self._query_error(outcome)
        raise AssertionError("the second attempt returns or raises")  # pragma: no cover

    @staticmethod
    def _read_query_answer(
        response: httpx.Response, checkout_request_id: str
    ) -> StkQueryResult | _Failure:
        status = response.status_code
        data = _read_json(response)
        if 200 <= status < 300 and isinstance(data, dict) and "ResultCode" in data:
            try:
                answer = StkQueryResponse.model_validate(data)
            except ValidationError:
                return _Failure(_Kind.unknown, status)
            result_code = normalize_result_code(answer.result_code or "")
            return StkQueryResult(
                status=classify_result_code(result_code) if result_code else StkStatus.unknown,
                checkout_request_id=answer.checkout_request_id or checkout_request_id,
                result_code=result_code,
                result_desc=answer.result_desc or "",
                merchant_request_id=answer.merchant_request_id,
                response_code=answer.response_code,
                response_description=answer.response_description,
            )
        if 200 <= status < 300 and not _is_error_body(data):
            if isinstance(data, dict) and str(data.get("ResponseCode", "0")).strip() != "0":
                return _Failure(
                    _Kind.rejected,
                    status,
                    str(data["ResponseCode"]).strip(),
                    str(data.get("ResponseDescription") or ""),
                )
            return _Failure(_Kind.unknown, status)
        failure = _classify_failure(status, data)
        if failure.kind in (_Kind.processing, _Kind.generic):
            return StkQueryResult(
                status=StkStatus.pending,
                checkout_request_id=checkout_request_id,
                result_code=failure.error_code or GENERIC_ERROR_CODE,
                result_desc=failure.error_message or "",
            )
        return failure

    @staticmethod
    def _query_error(failure: _Failure) -> MpesaError:
        kind = failure.kind
        details = failure.details()
        if kind is _Kind.invalid_token:
            return MpesaAuthError("Daraja refused a freshly issued access token", **details)
        if kind in (_Kind.busy, _Kind.subscriber_locked):
            return MpesaBusy("M-Pesa is busy; query again later", **details)
        if kind is _Kind.configuration:
            return MpesaConfigurationError("Daraja refused our M-Pesa configuration", **details)
        if kind is _Kind.auth:
            return MpesaAuthError("Daraja refused our API credentials", **details)
        if kind is _Kind.rejected:
            return MpesaRejected("Daraja refused the STK query", **details)
        return MpesaUnavailable("Daraja gave no usable answer to the STK query", **details)

    # ------------------------------------------------------------------ OAuth

    async def _access_token(self) -> str:
        cached = self._token
        if cached is not None and self._clock() < cached.refresh_at:
            return cached.value
        # One fetch for all concurrent callers: the ones that waited find the fresh token.
        async with self._token_lock:
            cached = self._token
            if cached is not None and self._clock() < cached.refresh_at:
                return cached.value
            self._token = await self._fetch_token()
            return self._token.value

    def _forget_token(self, value: str) -> None:
        # Only drop the token that failed: a concurrent caller may already have replaced it.
        if self._token is not None and self._token.value == value:
            self._token = None

    async def _fetch_token(self) -> _CachedToken:
        config = self._config
        try:
            response = await self._http.get(
                config.base_url + OAUTH_PATH,
                params={"grant_type": "client_credentials"},
                auth=httpx.BasicAuth(config.consumer_key, config.consumer_secret),
                timeout=config.timeouts.as_httpx(),
            )
        except httpx.HTTPError as exc:
            raise MpesaUnavailable(
                f"could not get an access token from Daraja ({type(exc).__name__})"
            ) from exc
        status = response.status_code
        data = _read_json(response)
        if status == 200 and not _is_error_body(data):
            try:
                token = OAuthToken.model_validate(data)
            except ValidationError as exc:
                raise MpesaAuthError(
                    "Daraja's token answer is unreadable", http_status=status
                ) from exc
            lifetime = float(token.expires_in)
            # Refresh a minute early; for short-lived tokens, half-way through their life.
            refresh_in = max(lifetime - TOKEN_REFRESH_MARGIN_SECONDS, lifetime / 2)
            return _CachedToken(token.access_token, self._clock() + refresh_in)
        failure = _classify_failure(status, data)
        details = failure.details()
        if status == 400 and data is None:
            raise MpesaAuthError(
                "Daraja refused the consumer key/secret (HTTP 400, empty body)", **details
            )
        if failure.kind in (_Kind.busy, _Kind.subscriber_locked):
            raise MpesaBusy("M-Pesa is busy; retry in a minute", **details)
        if failure.kind is _Kind.configuration:
            raise MpesaConfigurationError("Daraja's OAuth endpoint was not found", **details)
        if status >= 500 or failure.kind is _Kind.unknown:
            raise MpesaUnavailable("Daraja's OAuth endpoint failed", **details)
        raise MpesaAuthError("Daraja refused to issue an access token", **details)
