"""The Daraja adapter: end to end against the simulator over real HTTP, then the malformed and
failing answers that only a scripted transport can produce on demand."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.payments.mpesa.conftest import (
    FAST_TIMEOUTS,
    CallbackReceiver,
    RunningSimulator,
)
from tiketi.payments.mpesa import (
    DarajaClient,
    DarajaConfig,
    DarajaTimeouts,
    MpesaAuthError,
    MpesaBusy,
    MpesaConfigurationError,
    MpesaError,
    MpesaGateway,
    MpesaRejected,
    MpesaSubscriberLocked,
    MpesaUnavailable,
    MpesaUnknownOutcome,
    MpesaValidationError,
    StkStatus,
    TransactionType,
    check_callback_url,
    parse_stk_callback,
)
from tiketi.payments.mpesa.client import check_checkout_request_id, stk_password
from tiketi.payments.mpesa.schemas import NAIROBI, StkPushResult
from tiketi.payments.mpesa.simulator import (
    SANDBOX_PASSKEY,
    SANDBOX_SHORTCODE,
    SIMULATOR_CONSUMER_KEY,
    simulator_client_config,
)

# --- helpers ----------------------------------------------------------------------------------


async def pay(
    client: DarajaClient,
    receiver: CallbackReceiver,
    *,
    phone: str = "0708374149",
    amount: int = 1500,
    **overrides: Any,
) -> StkPushResult:
    arguments: dict[str, Any] = {
        "amount": amount,
        "phone": phone,
        "account_reference": "TKT7F3K9Q2LX",
        "description": "Tickets",
        "callback_url": receiver.callback_url,
    }
    arguments.update(overrides)
    return await client.stk_push(**arguments)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


# --- end to end against the simulator ----------------------------------------------------------


async def test_daraja_client_is_an_mpesa_gateway(daraja: DarajaClient) -> None:
    gateway: MpesaGateway = daraja
    assert gateway is daraja


async def test_successful_payment_end_to_end(
    daraja: DarajaClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    result = await pay(daraja, receiver, phone="+254 708 374 149")
    assert result.response_code == "0"
    assert result.checkout_request_id.startswith("ws_CO_")
    assert result.merchant_request_id
    assert result.customer_message == "Success. Request accepted for processing"

    [received] = await receiver.wait_for(1)
    callback = parse_stk_callback(received.body)
    assert callback.checkout_request_id == result.checkout_request_id
    assert callback.merchant_request_id == result.merchant_request_id
    assert callback.status is StkStatus.succeeded
    assert callback.amount == Decimal(1500)
    assert callback.receipt is not None
    assert len(callback.receipt) == 10
    assert callback.phone == "254708374149"
    assert callback.transaction_date is not None
    assert abs(callback.transaction_date - datetime.now(UTC)) < timedelta(minutes=1)

    answer = await daraja.stk_query(result.checkout_request_id)
    assert answer.status is StkStatus.succeeded
    assert answer.result_code == "0"
    assert answer.checkout_request_id == result.checkout_request_id
    assert answer.merchant_request_id == result.merchant_request_id


async def test_the_request_on_the_wire(
    daraja: DarajaClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    await pay(daraja, receiver, amount=20)
    [oauth] = sim.app.recorder.oauth_calls
    assert oauth.query == "grant_type=client_credentials"
    assert oauth.headers["authorization"].startswith("Basic ")
    [push] = sim.app.recorder.pushes
    body = push.json
    assert (
        push.headers["authorization"]
        == "Bearer " + sim.app.recorder.oauth_calls[0].response["access_token"]
    )
    assert push.headers["content-type"] == "application/json"
    for key in ("BusinessShortCode", "PartyA", "PartyB", "PhoneNumber", "Amount"):
        assert type(body[key]) is int, key
    assert body["BusinessShortCode"] == body["PartyB"] == 174379
    assert body["PartyA"] == body["PhoneNumber"] == 254708374149
    assert body["TransactionType"] == "CustomerPayBillOnline"
    assert body["AccountReference"] == "TKT7F3K9Q2LX"
    assert body["TransactionDesc"] == "Tickets"
    stamp = datetime.strptime(body["Timestamp"], "%Y%m%d%H%M%S").replace(tzinfo=NAIROBI)
    assert abs(stamp - datetime.now(UTC)) < timedelta(minutes=1)
    decoded = base64.b64decode(body["Password"]).decode()
    assert decoded == SANDBOX_SHORTCODE + SANDBOX_PASSKEY + body["Timestamp"]


@pytest.mark.parametrize(
    ("phone", "code", "desc"),
    [
        ("0711111032", 1032, "Request cancelled by user"),
        ("0711110001", 1, "The balance is insufficient for the transaction."),
        ("0111112001", 2001, "The initiator information is invalid."),
        ("0711111037", 1037, "DS timeout user cannot be reached"),
    ],
)
async def test_failed_payments_end_to_end(
    daraja: DarajaClient, receiver: CallbackReceiver, phone: str, code: int, desc: str
) -> None:
    result = await pay(daraja, receiver, phone=phone)
    [received] = await receiver.wait_for(1)
    callback = parse_stk_callback(received.body)
    assert callback.checkout_request_id == result.checkout_request_id
    assert callback.result_code == code
    assert callback.result_desc == desc
    assert callback.status is StkStatus.failed
    assert callback.amount is None
    assert callback.receipt is None
    answer = await daraja.stk_query(result.checkout_request_id)
    assert answer.status is StkStatus.failed
    assert answer.result_code == str(code)
    assert answer.result_desc == desc


async def test_duplicate_callback_is_delivered_twice(
    daraja: DarajaClient, receiver: CallbackReceiver
) -> None:
    result = await pay(daraja, receiver, phone="0711110002")
    received = await receiver.wait_for(2)
    assert len(received) == 2
    first, second = (parse_stk_callback(r.body) for r in received)
    assert first == second
    assert first.checkout_request_id == result.checkout_request_id
    assert first.status is StkStatus.succeeded


async def test_lost_callback_is_recovered_by_query(
    daraja: DarajaClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    result = await pay(daraja, receiver, phone="0711110000")
    await asyncio.sleep(0.3)  # six times the callback delay
    assert receiver.received == []
    assert sim.app.recorder.callbacks == []
    answer = await daraja.stk_query(result.checkout_request_id)
    assert answer.status is StkStatus.succeeded


async def test_locked_subscriber_is_busy_and_sends_nothing(
    daraja: DarajaClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    with pytest.raises(MpesaSubscriberLocked) as info:
        await pay(daraja, receiver, phone="0711111001")
    assert isinstance(info.value, MpesaBusy)
    assert info.value.error_code == "500.001.1001"
    assert info.value.http_status == 500
    assert info.value.error_message is not None
    assert "Unable to lock subscriber" in info.value.error_message
    assert info.value.push_may_have_been_sent is False
    assert len(sim.app.recorder.pushes) == 1
    await asyncio.sleep(0.15)
    assert receiver.received == []


@pytest.mark.parametrize(("style", "code"), [("4999", "4999"), ("500.001.1001", "500.001.1001")])
async def test_query_pending_styles_then_final(
    daraja: DarajaClient,
    sim: RunningSimulator,
    receiver: CallbackReceiver,
    style: Any,
    code: str,
) -> None:
    sim.app.behaviour.callback_delay = 0.3
    sim.app.behaviour.query_pending_style = style
    result = await pay(daraja, receiver, phone="0711111032")
    pending = await daraja.stk_query(result.checkout_request_id)
    assert pending.status is StkStatus.pending
    assert pending.result_code == code
    assert pending.checkout_request_id == result.checkout_request_id
    await receiver.wait_for(1)
    final = await daraja.stk_query(result.checkout_request_id)
    assert final.status is StkStatus.failed
    assert final.result_code == "1032"


async def test_query_for_an_unknown_id_is_pending_never_failed(daraja: DarajaClient) -> None:
    answer = await daraja.stk_query("ws_CO_000000000000000000")
    assert answer.status is StkStatus.pending
    assert answer.result_code == "500.001.1001"


async def test_till_mode_sends_buy_goods_with_the_till_number(
    sim: RunningSimulator, http: httpx.AsyncClient, receiver: CallbackReceiver
) -> None:
    config = replace(
        simulator_client_config(sim.base_url, timeouts=FAST_TIMEOUTS),
        transaction_type=TransactionType.till,
        party_b="600100",
    )
    client = DarajaClient(http, config)
    result = await pay(client, receiver)
    [push] = sim.app.recorder.pushes
    assert push.json["TransactionType"] == "CustomerBuyGoodsOnline"
    assert push.json["PartyB"] == 600100
    assert push.json["BusinessShortCode"] == 174379
    [received] = await receiver.wait_for(1)
    assert parse_stk_callback(received.body).checkout_request_id == result.checkout_request_id


# --- the token --------------------------------------------------------------------------------


async def test_one_token_for_many_concurrent_pushes(
    daraja: DarajaClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    sim.app.behaviour.oauth_delay_seconds = 0.1  # everyone arrives while the fetch is running
    results = await asyncio.gather(
        *(pay(daraja, receiver, phone=f"07222222{n:02d}") for n in range(10))
    )
    assert len({r.checkout_request_id for r in results}) == 10
    assert len(sim.app.recorder.oauth_calls) == 1
    assert len(sim.app.recorder.pushes) == 10
    await daraja.stk_query(results[0].checkout_request_id)
    assert len(sim.app.recorder.oauth_calls) == 1


async def test_the_token_is_refreshed_a_minute_before_it_expires(
    sim: RunningSimulator, http: httpx.AsyncClient, receiver: CallbackReceiver
) -> None:
    clock = FakeClock()
    client = DarajaClient(
        http, simulator_client_config(sim.base_url, timeouts=FAST_TIMEOUTS), clock=clock
    )
    await pay(client, receiver)
    clock.now += 3599 - 61
    await pay(client, receiver)
    assert len(sim.app.recorder.oauth_calls) == 1
    clock.now += 2  # now within the last minute of the token's life
    await pay(client, receiver)
    assert len(sim.app.recorder.oauth_calls) == 2


async def test_short_lived_tokens_are_refreshed_half_way(
    sim: RunningSimulator, http: httpx.AsyncClient, receiver: CallbackReceiver
) -> None:
    sim.app.behaviour.token_expires_in = 60  # as a number, like newer Daraja docs
    clock = FakeClock()
    client = DarajaClient(
        http, simulator_client_config(sim.base_url, timeouts=FAST_TIMEOUTS), clock=clock
    )
    await pay(client, receiver)
    clock.now += 29
    await pay(client, receiver)
    assert len(sim.app.recorder.oauth_calls) == 1
    clock.now += 2
    await pay(client, receiver)
    assert len(sim.app.recorder.oauth_calls) == 2


async def test_an_invalid_token_answer_is_retried_once_with_a_new_token(
    daraja: DarajaClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    await pay(daraja, receiver)
    sim.app.simulator.revoke_tokens()  # the cached token is now unknown to Daraja
    result = await pay(daraja, receiver)
    recorder = sim.app.recorder
    assert len(recorder.oauth_calls) == 2
    assert [p.status_code for p in recorder.pushes] == [200, 404, 200]
    assert recorder.pushes[1].response["errorCode"] == "404.001.03"
    assert result.checkout_request_id in sim.app.simulator.transactions
    await receiver.wait_for(2)
    assert len(sim.app.simulator.transactions) == 2  # the refused attempt prompted nobody


async def test_an_invalid_token_is_retried_exactly_once(
    daraja: DarajaClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    sim.app.behaviour.invalid_token_answers = 5
    with pytest.raises(MpesaAuthError) as info:
        await pay(daraja, receiver)
    assert info.value.error_code == "404.001.03"
    assert len(sim.app.recorder.pushes) == 2
    assert len(sim.app.recorder.oauth_calls) == 2
    assert sim.app.simulator.transactions == {}


async def test_query_retries_an_invalid_token_once(
    daraja: DarajaClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    result = await pay(daraja, receiver)
    sim.app.behaviour.invalid_token_answers = 1
    answer = await daraja.stk_query(result.checkout_request_id)
    assert answer.status in (StkStatus.pending, StkStatus.succeeded)
    assert len(sim.app.recorder.queries) == 2
    sim.app.behaviour.invalid_token_answers = 2
    with pytest.raises(MpesaAuthError):
        await daraja.stk_query(result.checkout_request_id)


async def test_wrong_consumer_secret_is_an_auth_error(
    sim: RunningSimulator, http: httpx.AsyncClient, receiver: CallbackReceiver
) -> None:
    config = simulator_client_config(sim.base_url, consumer_secret="wrong", timeouts=FAST_TIMEOUTS)
    with pytest.raises(MpesaAuthError, match="empty body") as info:
        await pay(DarajaClient(http, config), receiver)
    assert info.value.http_status == 400
    assert sim.app.recorder.pushes == []


async def test_oauth_down_means_nothing_was_sent(
    daraja: DarajaClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    sim.app.behaviour.oauth_down = True
    with pytest.raises(MpesaUnavailable):
        await pay(daraja, receiver)
    assert sim.app.recorder.pushes == []


async def test_deadline_during_oauth_means_nothing_was_sent(
    sim: RunningSimulator, http: httpx.AsyncClient, receiver: CallbackReceiver
) -> None:
    sim.app.behaviour.oauth_delay_seconds = 1.0
    timeouts = DarajaTimeouts(connect=1, read=5, write=1, pool=1, total=0.3)
    client = DarajaClient(http, simulator_client_config(sim.base_url, timeouts=timeouts))
    with pytest.raises(MpesaUnavailable, match="no push was sent"):
        await pay(client, receiver)
    assert sim.app.recorder.pushes == []


# --- configuration errors from Daraja --------------------------------------------------------


async def test_wrong_passkey_is_a_configuration_error(
    sim: RunningSimulator, http: httpx.AsyncClient, receiver: CallbackReceiver
) -> None:
    config = simulator_client_config(sim.base_url, passkey="not-the-passkey")
    with pytest.raises(MpesaConfigurationError) as info:
        await pay(DarajaClient(http, config), receiver)
    assert info.value.error_message == "Wrong credentials"


async def test_unknown_shortcode_is_a_configuration_error(
    sim: RunningSimulator, http: httpx.AsyncClient, receiver: CallbackReceiver
) -> None:
    config = simulator_client_config(sim.base_url, shortcode="600000")
    with pytest.raises(MpesaConfigurationError) as info:
        await DarajaClient(http, config).stk_query("ws_CO_1")
    assert info.value.error_message == "Merchant does not exist"


# --- validation happens before any request ---------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field_name"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": 250001}, "amount"),
        ({"amount": -1}, "amount"),
        ({"amount": 15.5}, "amount"),
        ({"amount": Decimal(1500)}, "amount"),
        ({"amount": True}, "amount"),
        ({"phone": "0208374149"}, "phone"),
        ({"phone": "+255708374149"}, "phone"),
        ({"phone": 708374149}, "phone"),
        ({"account_reference": "TKT7F3K9Q2LXX"}, "account_reference"),
        ({"account_reference": ""}, "account_reference"),
        ({"account_reference": "TKT-7F3K"}, "account_reference"),
        ({"account_reference": "TKTÄ"}, "account_reference"),
        ({"description": "Tickets for me"}, "description"),
        ({"description": ""}, "description"),
        ({"description": "   "}, "description"),
        ({"description": "Tick\nets"}, "description"),
        ({"callback_url": "https://api.example.com/mpesa/callback"}, "callback_url"),
        ({"callback_url": "https://api.example.com/MPESA/callback"}, "callback_url"),
        ({"callback_url": "https://safaricom.example.com/cb"}, "callback_url"),
        ({"callback_url": "ftp://api.example.com/cb"}, "callback_url"),
        ({"callback_url": "/payments/callbacks/stk/x"}, "callback_url"),
        ({"callback_url": "https://api.example.com/a b"}, "callback_url"),
        ({"callback_url": ""}, "callback_url"),
    ],
)
async def test_invalid_input_is_refused_before_any_request(
    daraja: DarajaClient,
    sim: RunningSimulator,
    receiver: CallbackReceiver,
    overrides: dict[str, Any],
    field_name: str,
) -> None:
    with pytest.raises(MpesaValidationError) as info:
        await pay(daraja, receiver, **overrides)
    assert info.value.field == field_name
    assert isinstance(info.value, ValueError)
    assert sim.app.recorder.requests == []


@pytest.mark.parametrize("amount", [1, 250000])
async def test_amount_bounds_are_inclusive(
    daraja: DarajaClient, receiver: CallbackReceiver, amount: int
) -> None:
    assert (await pay(daraja, receiver, amount=amount)).response_code == "0"


def test_callback_url_rules_outside_simulator_mode() -> None:
    assert check_callback_url("https://api.example.com/payments/callbacks/stk/t")
    assert check_callback_url("http://127.0.0.1:8000/payments/callbacks/stk/t")
    assert check_callback_url("http://localhost:8000/payments/callbacks/stk/t")
    with pytest.raises(MpesaValidationError, match="https"):
        check_callback_url("http://api.example.com/payments/callbacks/stk/t")
    assert check_callback_url("http://api:8000/cb", simulator=True)


async def test_http_callback_refused_for_a_real_daraja(
    http: httpx.AsyncClient, sim: RunningSimulator
) -> None:
    config = DarajaConfig(
        base_url=sim.base_url,  # loopback http is allowed for the base URL
        consumer_key=SIMULATOR_CONSUMER_KEY,
        consumer_secret="x",
        shortcode=SANDBOX_SHORTCODE,
        passkey=SANDBOX_PASSKEY,
    )
    with pytest.raises(MpesaValidationError, match="https"):
        await DarajaClient(http, config).stk_push(
            amount=10,
            phone="0708374149",
            account_reference="A1",
            description="Tickets",
            callback_url="http://api.example.com/payments/callbacks/stk/t",
        )
    assert sim.app.recorder.requests == []


@pytest.mark.parametrize("checkout_id", ["", "ws CO", "x" * 101, "ws_CO_é", "ws_CO_\n"])
async def test_query_id_is_validated_before_any_request(
    daraja: DarajaClient, sim: RunningSimulator, checkout_id: str
) -> None:
    with pytest.raises(MpesaValidationError):
        await daraja.stk_query(checkout_id)
    assert sim.app.recorder.requests == []
    with pytest.raises(MpesaValidationError):
        check_checkout_request_id(checkout_id)


# --- the never-resend rule, over real HTTP ---------------------------------------------------


async def test_read_timeout_after_sending_is_unknown_and_never_resent(
    sim: RunningSimulator, http: httpx.AsyncClient, receiver: CallbackReceiver
) -> None:
    sim.app.behaviour.fail_next_push_with_timeout_seconds = 1.0
    timeouts = DarajaTimeouts(connect=1, read=0.2, write=1, pool=1, total=5)
    client = DarajaClient(http, simulator_client_config(sim.base_url, timeouts=timeouts))
    with pytest.raises(MpesaUnknownOutcome) as info:
        await pay(client, receiver)
    assert info.value.push_may_have_been_sent is True
    assert info.value.checkout_request_id is None
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert len(sim.app.recorder.pushes) == 1
    # Daraja did process it: the customer was prompted and the callback still comes.
    [received] = await receiver.wait_for(1)
    assert parse_stk_callback(received.body).status is StkStatus.succeeded
    await asyncio.sleep(0.1)
    assert len(sim.app.recorder.pushes) == 1


async def test_overall_deadline_after_sending_is_unknown(
    sim: RunningSimulator, http: httpx.AsyncClient, receiver: CallbackReceiver
) -> None:
    sim.app.behaviour.fail_next_push_with_timeout_seconds = 1.0
    timeouts = DarajaTimeouts(connect=1, read=5, write=1, pool=1, total=0.3)
    client = DarajaClient(http, simulator_client_config(sim.base_url, timeouts=timeouts))
    with pytest.raises(MpesaUnknownOutcome, match="may have been sent"):
        await pay(client, receiver)
    assert len(sim.app.recorder.pushes) == 1


async def test_dropped_connection_is_unknown_and_never_resent(
    daraja: DarajaClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    sim.app.behaviour.drop_connection = True
    with pytest.raises(MpesaUnknownOutcome) as info:
        await pay(daraja, receiver)
    assert isinstance(info.value.__cause__, httpx.RemoteProtocolError)
    assert len(sim.app.recorder.pushes) == 1
    assert len(await receiver.wait_for(1)) == 1


async def test_5xx_with_an_empty_body_is_unknown_and_never_resent(
    daraja: DarajaClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    sim.app.behaviour.next_push_error = (502, None)
    with pytest.raises(MpesaUnknownOutcome) as info:
        await pay(daraja, receiver)
    assert info.value.http_status == 502
    assert len(sim.app.recorder.pushes) == 1


async def test_busy_envelope_over_http(
    daraja: DarajaClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    sim.app.behaviour.next_push_error = (
        500,
        {"requestId": "r", "errorCode": "500.003.02", "errorMessage": "System is busy"},
    )
    with pytest.raises(MpesaBusy) as info:
        await pay(daraja, receiver)
    assert not isinstance(info.value, MpesaSubscriberLocked)
    assert info.value.retry_after_seconds == 60
    assert len(sim.app.recorder.pushes) == 1


async def test_connection_refused_is_unavailable_not_unknown(
    http: httpx.AsyncClient, receiver: CallbackReceiver
) -> None:
    client = DarajaClient(
        http, simulator_client_config(f"http://127.0.0.1:{free_port()}", timeouts=FAST_TIMEOUTS)
    )
    with pytest.raises(MpesaUnavailable) as info:
        await pay(client, receiver)
    assert info.value.push_may_have_been_sent is False
    with pytest.raises(MpesaUnavailable):
        await client.stk_query("ws_CO_1")


# --- scripted answers: what the simulator does not produce on demand ---------------------------

BASE = "https://daraja.test"
TOKEN_OK = httpx.Response(200, json={"access_token": "T" * 28, "expires_in": "3599"})
PUSH_OK = {
    "MerchantRequestID": "m-1",
    "CheckoutRequestID": "ws_CO_1",
    "ResponseCode": "0",
    "ResponseDescription": "Success. Request accepted for processing",
    "CustomerMessage": "Success. Request accepted for processing",
}

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


@dataclass
class Script:
    """A scripted Daraja: per path, a queue of answers (the last one repeats)."""

    oauth: list[Answer] = field(default_factory=lambda: [TOKEN_OK])
    push: list[Answer] = field(default_factory=list)
    query: list[Answer] = field(default_factory=list)
    seen: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        path = request.url.path
        queue = (
            self.oauth
            if path == "/oauth/v1/generate"
            else self.push
            if path == "/mpesa/stkpush/v1/processrequest"
            else self.query
        )
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)

    def count(self, path: str) -> int:
        return sum(1 for r in self.seen if r.url.path == path)

    @property
    def pushes(self) -> int:
        return self.count("/mpesa/stkpush/v1/processrequest")

    @property
    def oauth_calls(self) -> int:
        return self.count("/oauth/v1/generate")


def scripted(script: Script, **config: Any) -> DarajaClient:
    return scripted_with(httpx.MockTransport(script.handle), **config)


def scripted_with(transport: httpx.AsyncBaseTransport, **config: Any) -> DarajaClient:
    http = httpx.AsyncClient(transport=transport)
    values: dict[str, Any] = {
        "base_url": BASE,
        "consumer_key": "key",
        "consumer_secret": "secret",
        "shortcode": "174379",
        "passkey": "passkey",
        "timeouts": FAST_TIMEOUTS,
    }
    values.update(config)
    return DarajaClient(http, DarajaConfig(**values))


async def scripted_push(client: DarajaClient) -> StkPushResult:
    return await client.stk_push(
        amount=100,
        phone="0708374149",
        account_reference="A1",
        description="Tickets",
        callback_url="https://api.example.com/payments/callbacks/stk/t",
    )


def envelope(code: str, message: str = "") -> dict[str, str]:
    return {"requestId": "req-1", "errorCode": code, "errorMessage": message}


def fault(errorcode: str, faultstring: str = "") -> dict[str, Any]:
    return {"fault": {"faultstring": faultstring, "detail": {"errorcode": errorcode}}}


def raw(status: int, content: bytes, content_type: str = "text/html") -> httpx.Response:
    return httpx.Response(status, content=content, headers={"content-type": content_type})


def env(status: int, code: str, message: str = "") -> httpx.Response:
    """An answer with Daraja's error envelope."""
    return httpx.Response(status, json=envelope(code, message))


def apigee(status: int, errorcode: str, faultstring: str = "") -> httpx.Response:
    """An answer with an Apigee fault body."""
    return httpx.Response(status, json=fault(errorcode, faultstring))


def js(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        # Empty and non-JSON bodies.
        (raw(500, b""), MpesaUnknownOutcome),
        (raw(502, b"<html>Bad Gateway</html>"), MpesaUnknownOutcome),
        (raw(504, b"upstream request timeout"), MpesaUnknownOutcome),
        (raw(503, b""), MpesaUnknownOutcome),
        (raw(400, b""), MpesaRejected),
        (raw(403, b"<html>Forbidden</html>"), MpesaRejected),
        (raw(404, b"<html>Not Found</html>"), MpesaConfigurationError),
        (raw(301, b""), MpesaConfigurationError),
        (raw(429, b""), MpesaBusy),
        (raw(200, b""), MpesaUnknownOutcome),
        (raw(200, b"<html>OK</html>"), MpesaUnknownOutcome),
        # Unexpected JSON shapes.
        (js(200, [PUSH_OK]), MpesaUnknownOutcome),
        (js(200, {"status": "ok"}), MpesaUnknownOutcome),
        (js(500, {"message": "Internal Server Error"}), MpesaUnknownOutcome),
        (js(400, {"message": "nope"}), MpesaRejected),
        (js(500, {"errorCode": ""}), MpesaUnknownOutcome),
        # Daraja's envelope.
        (env(400, "400.002.02", "Bad Request - Invalid Amount"), MpesaRejected),
        (env(400, "400.002.05", "Invalid Request Payload"), MpesaRejected),
        (env(400, "400.003.01", "Something new"), MpesaRejected),
        (env(500, "500.001.1001", "Merchant does not exist"), MpesaConfigurationError),
        (
            env(500, "500.001.1001", "[MerchantValidate] - Wrong credentials"),
            MpesaConfigurationError,
        ),
        (env(500, "500.001.1001", "The initiator information is invalid"), MpesaRejected),
        (env(500, "500.001.1001", "The transaction is being processed"), MpesaUnknownOutcome),
        (env(500, "500.003.02", "System is busy"), MpesaBusy),
        (env(500, "500.003.03", "Spike Arrest Violation"), MpesaBusy),
        (env(500, "500.003.03", "Quota Violation"), MpesaBusy),
        (env(500, "500.003.1001", "Internal Server Error"), MpesaUnknownOutcome),
        (env(429, "429.000.01", "Too many"), MpesaBusy),
        (env(200, "400.002.02", "Bad Request - Invalid PhoneNumber"), MpesaRejected),
        # Apigee's own faults.
        (
            apigee(429, "policies.ratelimit.SpikeArrestViolation", "Spike arrest violation"),
            MpesaBusy,
        ),
        (apigee(500, "policies.ratelimit.QuotaViolation", "Rate limit quota violation"), MpesaBusy),
        (apigee(429, "messaging.runtime.TooManyRequests"), MpesaBusy),
        (apigee(401, "oauth.v2.InvalidApiKey", "Invalid ApiKey"), MpesaAuthError),
        (apigee(400, "steps.jsonthreatprotection.ExecutionFailed", "Threat"), MpesaRejected),
        (
            apigee(504, "messaging.adaptors.http.flow.GatewayTimeout", "Gateway Timeout"),
            MpesaUnknownOutcome,
        ),
        (apigee(503, "messaging.adaptors.http.flow.ServiceUnavailable"), MpesaUnknownOutcome),
        (js(500, {"fault": "not an object"}), MpesaUnknownOutcome),
        # A 200 that is not a plain acceptance.
        (
            js(200, {**PUSH_OK, "ResponseCode": "1", "ResponseDescription": "Rejected"}),
            MpesaRejected,
        ),
        (js(200, {**PUSH_OK, "ResponseCode": "2028"}), MpesaConfigurationError),
        (js(200, {"ResponseCode": "0", "MerchantRequestID": "m"}), MpesaUnknownOutcome),
        # Transport failures.
        (httpx.ReadTimeout("read timed out"), MpesaUnknownOutcome),
        (httpx.WriteTimeout("write timed out"), MpesaUnknownOutcome),
        (httpx.ReadError("connection reset"), MpesaUnknownOutcome),
        (httpx.WriteError("broken pipe"), MpesaUnknownOutcome),
        (
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            MpesaUnknownOutcome,
        ),
        (httpx.ConnectError("connection refused"), MpesaUnavailable),
        (httpx.ConnectTimeout("connect timed out"), MpesaUnavailable),
        (httpx.PoolTimeout("no connection available"), MpesaUnavailable),
    ],
)
async def test_push_answers_map_to_the_taxonomy(answer: Answer, error: type[MpesaError]) -> None:
    script = Script(push=[answer])
    client = scripted(script)
    with pytest.raises(error) as info:
        await scripted_push(client)
    assert type(info.value) is error or (error is MpesaBusy and isinstance(info.value, MpesaBusy))
    # Whatever happened, the push went out exactly once: nothing here is retried.
    assert script.pushes == 1
    assert info.value.push_may_have_been_sent is (error is MpesaUnknownOutcome)


async def test_rejection_details_are_kept() -> None:
    answer = env(400, "400.002.02", "Bad Request - Invalid PartyB")
    with pytest.raises(MpesaRejected) as info:
        await scripted_push(scripted(Script(push=[answer])))
    error = info.value
    assert error.error_code == "400.002.02"
    assert error.error_message == "Bad Request - Invalid PartyB"
    assert error.invalid_field == "PartyB"
    assert error.http_status == 400
    assert error.request_id == "req-1"
    assert "400.002.02" in str(error)
    assert "req-1" in str(error)


async def test_unknown_outcome_keeps_a_checkout_id_when_daraja_gave_one() -> None:
    answer = js(200, {"ResponseCode": "0", "CheckoutRequestID": "ws_CO_9"})
    with pytest.raises(MpesaUnknownOutcome) as info:
        await scripted_push(scripted(Script(push=[answer])))
    assert info.value.checkout_request_id == "ws_CO_9"


@pytest.mark.parametrize(
    "invalid_token",
    [
        env(404, "404.001.03", "Invalid Access Token"),
        env(401, "401.002.01", "Invalid Access Token"),
        env(401, "401.003.01", "Error Occurred - Invalid Access Token"),
        httpx.Response(401, content=b""),
        apigee(401, "keymanagement.service.invalid_access_token", "Invalid"),
        apigee(401, "oauth.v2.AccessTokenExpired", "Access Token expired"),
        apigee(401, "x", "Invalid access token"),
        apigee(401, "some.other.fault"),
        env(401, "401.003.01", "Unauthorized"),
    ],
)
async def test_invalid_token_forms_are_retried_once(invalid_token: httpx.Response) -> None:
    script = Script(
        oauth=[
            js(200, {"access_token": "A" * 28, "expires_in": 3599}),
            js(200, {"access_token": "B" * 28, "expires_in": "3599"}),
        ],
        push=[invalid_token, js(200, PUSH_OK)],
    )
    result = await scripted_push(scripted(script))
    assert result.checkout_request_id == "ws_CO_1"
    assert script.pushes == 2
    assert script.oauth_calls == 2
    bearers = [r.headers["authorization"] for r in script.seen if "stkpush" in r.url.path]
    assert bearers == ["Bearer " + "A" * 28, "Bearer " + "B" * 28]


async def test_a_second_invalid_token_answer_is_an_auth_error() -> None:
    invalid = env(404, "404.001.03", "Invalid Access Token")
    script = Script(push=[invalid])
    with pytest.raises(MpesaAuthError):
        await scripted_push(scripted(script))
    assert script.pushes == 2


async def test_unknown_outcome_after_an_invalid_token_retry() -> None:
    invalid = env(404, "404.001.03", "Invalid Access Token")
    script = Script(push=[invalid, httpx.ReadTimeout("slow")])
    with pytest.raises(MpesaUnknownOutcome):
        await scripted_push(scripted(script))
    assert script.pushes == 2


async def test_response_code_as_a_number_is_accepted() -> None:
    script = Script(push=[js(200, {**PUSH_OK, "ResponseCode": 0})])
    result = await scripted_push(scripted(script))
    assert result.response_code == "0"


async def test_concurrent_invalid_token_answers_fetch_one_new_token() -> None:
    issued: list[str] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)  # let the concurrent pushes interleave
        if request.url.path == "/oauth/v1/generate":
            issued.append(f"tok{len(issued) + 1}")
            return js(200, {"access_token": issued[-1], "expires_in": 3599})
        if request.headers["authorization"] == "Bearer tok1":
            return env(404, "404.001.03", "Invalid Access Token")
        return js(200, PUSH_OK)

    client = scripted_with(httpx.MockTransport(answer))
    results = await asyncio.gather(*(scripted_push(client) for _ in range(5)))
    assert len(results) == 5
    # All five were refused with tok1; the first to notice fetched tok2, the rest reused it.
    assert issued == ["tok1", "tok2"]


# --- OAuth answers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (raw(400, b""), MpesaAuthError),
        (env(400, "400.008.02", "Invalid grant type passed"), MpesaAuthError),
        (apigee(401, "oauth.v2.InvalidApiKey", "Invalid ApiKey"), MpesaAuthError),
        (js(200, {"access_token": "", "expires_in": "3599"}), MpesaAuthError),
        (js(200, {"expires_in": "3599"}), MpesaAuthError),
        (raw(200, b"not json"), MpesaAuthError),
        (env(200, "500.003.02", "busy"), MpesaBusy),
        (env(500, "500.003.03", "Spike Arrest Violation"), MpesaBusy),
        (raw(429, b""), MpesaBusy),
        (raw(404, b"<html>Not Found</html>"), MpesaConfigurationError),
        (raw(500, b""), MpesaUnavailable),
        (raw(503, b"<html>down</html>"), MpesaUnavailable),
        (httpx.ConnectError("refused"), MpesaUnavailable),
        (httpx.ReadTimeout("slow"), MpesaUnavailable),
    ],
)
async def test_oauth_answers(answer: Answer, error: type[MpesaError]) -> None:
    script = Script(oauth=[answer])
    with pytest.raises(error):
        await scripted_push(scripted(script))
    assert script.pushes == 0


async def test_oauth_request_uses_basic_auth_and_the_grant_type() -> None:
    script = Script(push=[js(200, PUSH_OK)])
    await scripted_push(scripted(script))
    oauth = script.seen[0]
    assert oauth.method == "GET"
    assert oauth.url.params["grant_type"] == "client_credentials"
    assert oauth.headers["authorization"] == "Basic " + base64.b64encode(b"key:secret").decode()


# --- STK query answers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        (
            js(200, {"ResponseCode": "0", "ResultCode": "0", "ResultDesc": "ok"}),
            StkStatus.succeeded,
            "0",
        ),
        (
            js(200, {"ResponseCode": "0", "ResultCode": "1032", "ResultDesc": "x"}),
            StkStatus.failed,
            "1032",
        ),
        (js(200, {"ResultCode": 1, "ResultDesc": "x"}), StkStatus.failed, "1"),
        (js(200, {"ResultCode": "SFC_IC0003"}), StkStatus.failed, "SFC_IC0003"),
        (
            js(
                200,
                {"ResultCode": "4999", "ResultDesc": "The transaction is still under processing"},
            ),
            StkStatus.pending,
            "4999",
        ),
        (js(200, {"ResultCode": "1234", "ResultDesc": "new"}), StkStatus.unknown, "1234"),
        (js(200, {"ResultCode": ""}), StkStatus.unknown, ""),
        (
            env(500, "500.001.1001", "The transaction is being processed"),
            StkStatus.pending,
            "500.001.1001",
        ),
        (
            env(200, "500.001.1001", "The transaction is being processed"),
            StkStatus.pending,
            "500.001.1001",
        ),
        (env(500, "500.001.1001", "Unable to get the result"), StkStatus.pending, "500.001.1001"),
    ],
)
async def test_query_answers(answer: httpx.Response, status: StkStatus, code: str) -> None:
    result = await scripted(Script(query=[answer])).stk_query("ws_CO_1")
    assert result.status is status
    assert result.result_code == code
    assert result.checkout_request_id == "ws_CO_1"


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (raw(503, b""), MpesaUnavailable),
        (raw(200, b"<html/>"), MpesaUnavailable),
        (js(200, {"ResultCode": ["0"]}), MpesaUnavailable),
        (js(200, {"ResponseCode": "1", "ResponseDescription": "no"}), MpesaRejected),
        (env(400, "400.002.02", "Bad Request - Invalid CheckoutRequestID"), MpesaRejected),
        (env(500, "500.003.02", "System is busy"), MpesaBusy),
        (env(500, "500.001.1001", "Unable to lock subscriber"), MpesaBusy),
        (env(500, "500.001.1001", "Merchant does not exist"), MpesaConfigurationError),
        (apigee(401, "oauth.v2.InvalidApiKey"), MpesaAuthError),
        (httpx.ReadTimeout("slow"), MpesaUnavailable),
        (httpx.ConnectError("refused"), MpesaUnavailable),
    ],
)
async def test_query_failures(answer: Answer, error: type[MpesaError]) -> None:
    with pytest.raises(error):
        await scripted(Script(query=[answer])).stk_query("ws_CO_1")


async def test_query_request_shape() -> None:
    script = Script(query=[js(200, {"ResultCode": "0"})])
    await scripted(script).stk_query("ws_CO_1")
    request = script.seen[-1]
    assert request.headers["authorization"] == "Bearer " + "T" * 28
    body = httpx.Response(200, content=request.content).json()
    assert set(body) == {"BusinessShortCode", "Password", "Timestamp", "CheckoutRequestID"}
    assert body["BusinessShortCode"] == 174379
    assert body["Password"] == stk_password("174379", "passkey", body["Timestamp"])


async def test_query_deadline_is_unavailable() -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/v1/generate":
            return TOKEN_OK
        await asyncio.sleep(1)
        return js(200, {"ResultCode": "0"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    timeouts = DarajaTimeouts(total=0.1)
    client = DarajaClient(
        http,
        DarajaConfig(
            base_url=BASE,
            consumer_key="k",
            consumer_secret="s",
            shortcode="174379",
            passkey="p",
            timeouts=timeouts,
        ),
    )
    with pytest.raises(MpesaUnavailable, match=r"within 0\.1s"):
        await client.stk_query("ws_CO_1")


def test_the_clock_for_timestamps_is_injectable(http: httpx.AsyncClient) -> None:
    moment = datetime(2026, 11, 26, 11, 30, 5, tzinfo=UTC)
    client = DarajaClient(
        http,
        DarajaConfig(
            base_url=BASE, consumer_key="k", consumer_secret="s", shortcode="174379", passkey="p"
        ),
        now=lambda: moment,
    )
    payload = client.build_stk_push_payload(
        amount=1,
        phone="0708374149",
        account_reference="A",
        description="d",
        callback_url="https://api.example.com/cb",
    )
    assert payload["Timestamp"] == "20261126143005"
    assert payload["Password"] == stk_password("174379", "p", "20261126143005")
    assert client.config.shortcode == "174379"


# --- configuration -----------------------------------------------------------------------------


def _config(**changes: Any) -> DarajaConfig:
    values: dict[str, Any] = {
        "base_url": "https://sandbox.safaricom.co.ke/",
        "consumer_key": "key",
        "consumer_secret": "top-secret",
        "shortcode": "174379",
        "passkey": "the-passkey",
    }
    values.update(changes)
    return DarajaConfig(**values)


def test_config_normalises_and_hides_secrets() -> None:
    config = _config()
    assert config.base_url == "https://sandbox.safaricom.co.ke"
    assert config.wire_party_b == "174379"
    assert config.transaction_type.wire_name == "CustomerPayBillOnline"
    assert "top-secret" not in repr(config)
    assert "the-passkey" not in repr(config)
    till = _config(transaction_type=TransactionType.till, party_b="600100")
    assert till.wire_party_b == "600100"
    assert till.transaction_type.wire_name == "CustomerBuyGoodsOnline"
    assert _config(base_url="http://localhost:9000").base_url == "http://localhost:9000"
    assert _config(base_url="http://daraja-sim:9000", simulator=True).simulator


@pytest.mark.parametrize(
    "changes",
    [
        {"base_url": "http://api.safaricom.co.ke"},
        {"base_url": "ftp://x"},
        {"base_url": "sandbox.safaricom.co.ke"},
        {"consumer_secret": ""},
        {"passkey": ""},
        {"shortcode": "17437a"},
        {"transaction_type": TransactionType.till},
        {"transaction_type": TransactionType.till, "party_b": "till"},
        {"party_b": "600100"},
    ],
)
def test_config_refuses_unsafe_or_incomplete_settings(changes: dict[str, Any]) -> None:
    with pytest.raises(MpesaConfigurationError):
        _config(**changes)


def test_error_strings() -> None:
    assert str(MpesaUnavailable("plain")) == "plain"
    rejected = MpesaRejected("no", error_message="Invalid Request Payload")
    assert rejected.invalid_field is None
    assert "Invalid Request Payload" in str(rejected)
