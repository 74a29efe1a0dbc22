"""M-Pesa through Safaricom's Daraja API: the STK-push adapter, its wire schemas, and a local
simulator (`tiketi.payments.mpesa.simulator`, imported on demand: it pulls in uvicorn).

No database here: the payments service owns payment state and calls `MpesaGateway`.
"""

from tiketi.payments.mpesa.client import (
    PRODUCTION_BASE_URL,
    SANDBOX_BASE_URL,
    DarajaClient,
    DarajaConfig,
    DarajaTimeouts,
    MpesaGateway,
    TransactionType,
    check_callback_url,
)
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
    CALLBACK_ACK,
    StkCallback,
    StkPushResult,
    StkQueryResult,
    StkStatus,
    classify_result_code,
    parse_stk_callback,
)

__all__ = [
    "CALLBACK_ACK",
    "PRODUCTION_BASE_URL",
    "SANDBOX_BASE_URL",
    "DarajaClient",
    "DarajaConfig",
    "DarajaTimeouts",
    "MpesaAuthError",
    "MpesaBusy",
    "MpesaConfigurationError",
    "MpesaError",
    "MpesaGateway",
    "MpesaRejected",
    "MpesaSubscriberLocked",
    "MpesaUnavailable",
    "MpesaUnknownOutcome",
    "MpesaValidationError",
    "StkCallback",
    "StkPushResult",
    "StkQueryResult",
    "StkStatus",
    "TransactionType",
    "check_callback_url",
    "classify_result_code",
    "mask_msisdn",
    "normalize_msisdn",
    "parse_stk_callback",
]
