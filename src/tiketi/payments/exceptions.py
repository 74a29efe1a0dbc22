from tiketi.core.errors import Conflict, InvalidInput, NotFound, TiketiError


class PaymentNotFound(NotFound):
    code = "payment_not_found"

    def default_detail(self) -> str:
        return "No such payment"


class OrderNotPayable(Conflict):
    code = "order_not_payable"


class HoldExpired(Conflict):
    code = "hold_expired"

    def default_detail(self) -> str:
        return "The hold on these tickets has expired; place a new order"


class PaymentPending(Conflict):
    code = "payment_pending"

    def default_detail(self) -> str:
        return "A payment for this order is already waiting for the customer's PIN"


class IdempotencyKeyReused(InvalidInput):
    code = "idempotency_key_reused"

    def default_detail(self) -> str:
        return "This Idempotency-Key was used for another payment request"


class GatewayError(TiketiError):
    """Daraja refused the push or could not be reached; nothing was charged."""

    status_code = 502
    code = "gateway_error"
    keeps_changes = True  # the failed payment row stays, as the record of the attempt


class GatewayBusy(TiketiError):
    status_code = 503
    code = "gateway_busy"
    keeps_changes = True


class UnknownCallbackToken(NotFound):
    code = "not_found"

    def default_detail(self) -> str:
        return "Not Found"


class MalformedCallback(TiketiError):
    status_code = 400
    code = "malformed_callback"


class CallbackSourceRefused(TiketiError):
    status_code = 403
    code = "forbidden"
