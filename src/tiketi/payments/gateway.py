"""Which M-Pesa the process talks to: the simulator, Daraja's sandbox or production."""

from __future__ import annotations

import httpx

from tiketi.core.settings import MpesaEnvironment, Settings
from tiketi.payments.mpesa import (
    PRODUCTION_BASE_URL,
    SANDBOX_BASE_URL,
    DarajaClient,
    DarajaConfig,
    DarajaTimeouts,
    MpesaGateway,
    TransactionType,
)


def _timeouts(settings: Settings) -> DarajaTimeouts:
    return DarajaTimeouts(
        read=settings.mpesa_read_timeout_seconds, total=settings.mpesa_total_timeout_seconds
    )


def daraja_config(settings: Settings) -> DarajaConfig:
    if settings.mpesa_env is MpesaEnvironment.simulator:
        from tiketi.payments.mpesa.simulator import simulator_client_config

        base_url = settings.mpesa_base_url or "http://127.0.0.1:8001"
        if settings.mpesa_consumer_key and settings.mpesa_consumer_secret:
            return simulator_client_config(
                base_url,
                consumer_key=settings.mpesa_consumer_key,
                consumer_secret=settings.mpesa_consumer_secret,
                timeouts=_timeouts(settings),
            )
        return simulator_client_config(base_url, timeouts=_timeouts(settings))
    default = (
        PRODUCTION_BASE_URL
        if settings.mpesa_env is MpesaEnvironment.production
        else SANDBOX_BASE_URL
    )
    return DarajaConfig(
        base_url=settings.mpesa_base_url or default,
        consumer_key=settings.mpesa_consumer_key or "",
        consumer_secret=settings.mpesa_consumer_secret or "",
        shortcode=settings.mpesa_shortcode or "",
        passkey=settings.mpesa_passkey or "",
        transaction_type=TransactionType(settings.mpesa_transaction_type),
        party_b=settings.mpesa_till_number,
        timeouts=_timeouts(settings),
    )


def build_gateway(settings: Settings, http: httpx.AsyncClient) -> MpesaGateway:
    return DarajaClient(http, daraja_config(settings))
