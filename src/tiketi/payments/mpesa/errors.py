"""What can go wrong when talking to Daraja, sorted by what the caller must do about it.

The split that matters for money is `push_may_have_been_sent`: only `MpesaUnknownOutcome`
leaves open the possibility that the customer got (or will get) a PIN prompt. Every other
error means Daraja definitely did not start a payment, so the payment can be failed (or the
request retried later by the user) without any risk of a double charge.

These are infrastructure errors, not HTTP-aware domain errors: the payments service maps them
to its own `TiketiError`s (for example "M-Pesa is busy, try again in a minute").
"""

from __future__ import annotations


class MpesaError(Exception):
    """Base of every M-Pesa adapter error.

    `error_code` and `error_message` are Daraja's own (`errorCode`/`errorMessage`, a
    `ResponseCode`, an Apigee `errorcode`) when it gave any, for logs and support tickets.
    """

    push_may_have_been_sent: bool = False

    def __init__(
        self,
        message: str,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.error_message = error_message
        self.http_status = http_status
        self.request_id = request_id

    def __str__(self) -> str:
        details = [
            f"{name}={value}"
            for name, value in (
                ("http_status", self.http_status),
                ("error_code", self.error_code),
                ("error_message", self.error_message),
                ("request_id", self.request_id),
            )
            if value is not None
        ]
        return f"{self.message} ({', '.join(details)})" if details else self.message


class MpesaValidationError(MpesaError, ValueError):
    """We refused the input before sending anything (amount, phone, reference, URL...).

    Also a `ValueError`, so callers that validate user input generically still catch it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class MpesaRejected(MpesaError):
    """Daraja answered and definitely refused the request (400.002.02, ResponseCode != "0", ...).

    Permanent: resending the same request gives the same answer. `invalid_field` names the
    field of a `Bad Request - Invalid <Field>` answer, when Daraja said which.
    """

    def __init__(
        self,
        message: str,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(
            message,
            error_code=error_code,
            error_message=error_message,
            http_status=http_status,
            request_id=request_id,
        )
        prefix = "bad request - invalid "
        text = error_message or ""
        self.invalid_field: str | None = (
            text[len(prefix) :].strip() or None if text.lower().startswith(prefix) else None
        )


class MpesaAuthError(MpesaError):
    """OAuth failed (wrong consumer key/secret), or a fresh token was refused again."""


class MpesaConfigurationError(MpesaError):
    """Our Daraja setup is wrong ("Merchant does not exist", "Wrong credentials", 2028...).

    Nothing the customer can fix: fail the payment and alert whoever owns the credentials.
    """


class MpesaBusy(MpesaError):
    """Daraja refused for load reasons (500.003.02 system busy, 500.003.03, spike arrest, quota).

    The request was not processed; retrying after a back-off is safe.
    """

    retry_after_seconds: float = 60.0


class MpesaSubscriberLocked(MpesaBusy):
    """500.001.1001 "Unable to lock subscriber": the phone already has a prompt open.

    The customer should finish or dismiss that prompt and retry in about a minute.
    """


class MpesaUnavailable(MpesaError):
    """Daraja could not be reached, or gave no usable answer to a read-only call.

    For a push: the failure happened before any byte of the request left (connection refused,
    connect timeout, no pooled connection, OAuth down), so no prompt was sent. For a query:
    nothing changed anywhere, so asking again later is always safe.
    """


class MpesaUnknownOutcome(MpesaError):
    """The push may have reached Daraja but we do not know what it answered.

    A read timeout, a dropped connection, a 5xx without a parseable rejection, or an
    unreadable success. The customer may be looking at a PIN prompt right now, so the payment
    must stay pending and the push must NEVER be resent: a second push is a second prompt and
    possibly a second charge. The callback or an STK query (if `checkout_request_id` is known)
    settles it; otherwise the payment needs a human.
    """

    push_may_have_been_sent = True

    def __init__(
        self,
        message: str,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
        checkout_request_id: str | None = None,
    ) -> None:
        super().__init__(
            message,
            error_code=error_code,
            error_message=error_message,
            http_status=http_status,
            request_id=request_id,
        )
        self.checkout_request_id = checkout_request_id
