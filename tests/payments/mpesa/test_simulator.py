"""The simulator on the wire: what a Daraja client sees over real HTTP (no adapter involved)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.payments.mpesa.conftest import (
    CallbackReceiver,
    CallbackServer,
    ReceivedCallback,
    RunningSimulator,
    SimulatorFactory,
)
from tiketi.payments.mpesa import simulator as simulator_module
from tiketi.payments.mpesa.schemas import NAIROBI, nairobi_timestamp
from tiketi.payments.mpesa.simulator import (
    CALLBACK_CONTENT_TYPE,
    LOCKED_MESSAGE,
    SANDBOX_PASSKEY,
    SANDBOX_SHORTCODE,
    SIMULATOR_CONSUMER_KEY,
    SIMULATOR_CONSUMER_SECRET,
    create_simulator_app,
    serve_in_background,
    simulator_allowed,
)

OAUTH = "/oauth/v1/generate?grant_type=client_credentials"
PUSH = "/mpesa/stkpush/v1/processrequest"
QUERY = "/mpesa/stkpushquery/v1/query"
CHECKOUT_ID = re.compile(r"ws_CO_(\d{14})\d{4,}(\d{9})")


def basic(key: str = SIMULATOR_CONSUMER_KEY, secret: str = SIMULATOR_CONSUMER_SECRET) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


def password(timestamp: str, passkey: str = SANDBOX_PASSKEY) -> str:
    return base64.b64encode(f"{SANDBOX_SHORTCODE}{passkey}{timestamp}".encode()).decode()


def push_body(callback_url: str, **changes: Any) -> dict[str, Any]:
    timestamp = nairobi_timestamp()
    body: dict[str, Any] = {
        "BusinessShortCode": 174379,
        "Password": password(timestamp),
        "Timestamp": timestamp,
        "TransactionType": "CustomerPayBillOnline",
        "Amount": 1500,
        "PartyA": 254708374149,
        "PartyB": 174379,
        "PhoneNumber": 254708374149,
        "CallBackURL": callback_url,
        "AccountReference": "TKT7F3K9Q2LX",
        "TransactionDesc": "Tickets",
    }
    body.update(changes)
    return body


def query_body(checkout_request_id: str, **changes: Any) -> dict[str, Any]:
    timestamp = nairobi_timestamp()
    body: dict[str, Any] = {
        "BusinessShortCode": 174379,
        "Password": password(timestamp),
        "Timestamp": timestamp,
        "CheckoutRequestID": checkout_request_id,
    }
    body.update(changes)
    return body


async def token(http: httpx.AsyncClient, sim: RunningSimulator) -> str:
    response = await http.get(sim.base_url + OAUTH, headers={"Authorization": basic()})
    assert response.status_code == 200
    value = response.json()["access_token"]
    assert isinstance(value, str)
    return value


async def push(
    http: httpx.AsyncClient, sim: RunningSimulator, body: Any, *, bearer: str | None = None
) -> httpx.Response:
    bearer = bearer if bearer is not None else await token(http, sim)
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    return await http.post(
        sim.base_url + PUSH, headers={"Authorization": f"Bearer {bearer}"}, **kwargs
    )


async def query(http: httpx.AsyncClient, sim: RunningSimulator, body: Any) -> httpx.Response:
    bearer = await token(http, sim)
    return await http.post(
        sim.base_url + QUERY, headers={"Authorization": f"Bearer {bearer}"}, json=body
    )


def assert_envelope(response: httpx.Response, status: int, code: str, message: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"requestId", "errorCode", "errorMessage"}
    assert body["errorCode"] == code
    assert body["errorMessage"] == message
    assert body["requestId"]


# --- OAuth ------------------------------------------------------------------------------------


async def test_oauth_issues_28_char_tokens_with_expires_in_as_string(
    http: httpx.AsyncClient, sim: RunningSimulator
) -> None:
    response = await http.get(sim.base_url + OAUTH, headers={"Authorization": basic()})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_in"}
    assert re.fullmatch(r"[A-Za-z0-9]{28}", body["access_token"])
    assert body["expires_in"] == "3599"
    other = await token(http, sim)
    assert other != body["access_token"]


async def test_oauth_expires_in_as_number_when_configured(
    http: httpx.AsyncClient, sim: RunningSimulator
) -> None:
    sim.app.behaviour.token_expires_in = 3599
    response = await http.get(sim.base_url + OAUTH, headers={"Authorization": basic()})
    assert response.json()["expires_in"] == 3599


@pytest.mark.parametrize(
    "authorization",
    [
        basic(secret="wrong"),
        basic(key="wrong"),
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Bearer abc",
        "Basic",
        "",
    ],
)
async def test_oauth_bad_credentials_get_400_with_an_empty_body(
    http: httpx.AsyncClient, sim: RunningSimulator, authorization: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await http.get(sim.base_url + OAUTH, headers=headers)
    assert response.status_code == 400
    assert response.content == b""


@pytest.mark.parametrize("query_string", ["?grant_type=password", "", "?grant_type="])
async def test_oauth_wrong_grant_type(
    http: httpx.AsyncClient, sim: RunningSimulator, query_string: str
) -> None:
    response = await http.get(
        sim.base_url + "/oauth/v1/generate" + query_string, headers={"Authorization": basic()}
    )
    assert_envelope(response, 400, "400.008.02", "Invalid grant type passed")


async def test_oauth_down(http: httpx.AsyncClient, sim: RunningSimulator) -> None:
    sim.app.behaviour.oauth_down = True
    response = await http.get(sim.base_url + OAUTH, headers={"Authorization": basic()})
    assert response.status_code == 503
    assert response.content == b""


# --- STK push: token and payload ----------------------------------------------------------


@pytest.mark.parametrize("bearer", ["not-a-token", "a" * 28])
async def test_push_with_an_invalid_token(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver, bearer: str
) -> None:
    response = await push(http, sim, push_body(receiver.callback_url), bearer=bearer)
    assert_envelope(response, 404, "404.001.03", "Invalid Access Token")


async def test_push_without_authorization_header(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    response = await http.post(sim.base_url + PUSH, json=push_body(receiver.callback_url))
    assert_envelope(response, 404, "404.001.03", "Invalid Access Token")


async def test_tokens_expire_and_can_be_revoked(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    sim.app.behaviour.token_expires_in = "0"
    expired = await token(http, sim)
    response = await push(http, sim, push_body(receiver.callback_url), bearer=expired)
    assert response.json()["errorCode"] == "404.001.03"
    sim.app.behaviour.token_expires_in = "3599"
    fresh = await token(http, sim)
    assert (await push(http, sim, push_body(receiver.callback_url), bearer=fresh)).is_success
    sim.app.simulator.revoke_tokens()
    response = await push(http, sim, push_body(receiver.callback_url), bearer=fresh)
    assert response.json()["errorCode"] == "404.001.03"


async def test_token_is_checked_before_the_payload(
    http: httpx.AsyncClient, sim: RunningSimulator
) -> None:
    response = await push(http, sim, b"not json", bearer="nope")
    assert response.json()["errorCode"] == "404.001.03"


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'"text"', b"", b"null"])
async def test_push_with_an_invalid_payload(
    http: httpx.AsyncClient, sim: RunningSimulator, raw: bytes
) -> None:
    response = await push(http, sim, raw)
    assert_envelope(response, 400, "400.002.05", "Invalid Request Payload")


@pytest.mark.parametrize(
    ("missing", "label"),
    [
        ("BusinessShortCode", "BusinessShortCode"),
        ("Password", "Password"),
        ("Timestamp", "Timestamp"),
        ("TransactionType", "TransactionType"),
        ("Amount", "Amount"),
        ("PartyA", "PartyA"),
        ("PartyB", "PartyB"),
        ("PhoneNumber", "PhoneNumber"),
        ("CallBackURL", "CallBackURL"),
        ("AccountReference", "AccountReference"),
        ("TransactionDesc", "Remarks"),
    ],
)
async def test_push_missing_fields(
    http: httpx.AsyncClient,
    sim: RunningSimulator,
    receiver: CallbackReceiver,
    missing: str,
    label: str,
) -> None:
    body = push_body(receiver.callback_url)
    del body[missing]
    response = await push(http, sim, body)
    assert_envelope(response, 400, "400.002.02", f"Bad Request - Invalid {label}")
    blank = push_body(receiver.callback_url, **{missing: "  "})
    response = await push(http, sim, blank)
    assert_envelope(response, 400, "400.002.02", f"Bad Request - Invalid {label}")


def _utc_timestamp() -> str:
    # The classic bug: UTC instead of Nairobi time, three hours off.
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S")


@pytest.mark.parametrize(
    ("changes", "label"),
    [
        ({"BusinessShortCode": "17437x"}, "BusinessShortCode"),
        ({"BusinessShortCode": 12}, "BusinessShortCode"),
        ({"BusinessShortCode": True}, "BusinessShortCode"),
        ({"Timestamp": "2026112614300"}, "Timestamp"),
        ({"Timestamp": "20261326143005"}, "Timestamp"),
        ({"Timestamp": "2026-11-26 14:30"}, "Timestamp"),
        ({"Timestamp": "20200101000000"}, "Timestamp"),
        ({"Password": 12345}, "Password"),
        ({"Password": "not base64!"}, "Password"),
        ({"TransactionType": "CustomerPayBill"}, "TransactionType"),
        ({"Amount": 0}, "Amount"),
        ({"Amount": 250001}, "Amount"),
        ({"Amount": -5}, "Amount"),
        ({"Amount": 1.5}, "Amount"),
        ({"Amount": "10.50"}, "Amount"),
        ({"Amount": True}, "Amount"),
        ({"PartyA": 254208374149}, "PartyA"),
        ({"PartyA": "0708374149"}, "PartyA"),
        ({"PartyB": 600100}, "PartyB"),
        ({"PartyB": "abc"}, "PartyB"),
        ({"PhoneNumber": "0708374149"}, "PhoneNumber"),
        ({"PhoneNumber": 25470837414}, "PhoneNumber"),
        ({"PhoneNumber": "+254708374149"}, "PhoneNumber"),
        ({"CallBackURL": "https://example.com/MPesa/cb"}, "CallBackURL"),
        ({"CallBackURL": "https://SAFARICOM.example.com/cb"}, "CallBackURL"),
        ({"CallBackURL": "ftp://example.com/cb"}, "CallBackURL"),
        ({"CallBackURL": "example.com/cb"}, "CallBackURL"),
        ({"CallBackURL": "https://exa mple.com/cb"}, "CallBackURL"),
        ({"CallBackURL": 42}, "CallBackURL"),
        ({"AccountReference": "TKT7F3K9Q2LXX"}, "AccountReference"),
        ({"AccountReference": ["x"]}, "AccountReference"),
        ({"TransactionDesc": "Tickets for me"}, "Remarks"),
        ({"TransactionDesc": 7}, "Remarks"),
    ],
)
async def test_push_field_validation(
    http: httpx.AsyncClient,
    sim: RunningSimulator,
    receiver: CallbackReceiver,
    changes: dict[str, Any],
    label: str,
) -> None:
    response = await push(http, sim, push_body(receiver.callback_url, **changes))
    assert_envelope(response, 400, "400.002.02", f"Bad Request - Invalid {label}")
    assert sim.app.simulator.transactions == {}


async def test_push_with_a_utc_timestamp_is_refused(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    stamp = _utc_timestamp()
    body = push_body(receiver.callback_url, Timestamp=stamp, Password=password(stamp))
    response = await push(http, sim, body)
    assert_envelope(response, 400, "400.002.02", "Bad Request - Invalid Timestamp")


async def test_validation_order_shortcode_then_timestamp_then_password_then_amount(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    everything_wrong = push_body(
        receiver.callback_url,
        BusinessShortCode="x",
        Timestamp="x",
        Password="!",
        Amount=0,
        PhoneNumber=1,
        CallBackURL="https://mpesa.example.com",
    )
    messages = []
    for fixed in (
        {"BusinessShortCode": 174379},
        {"Timestamp": nairobi_timestamp()},
        {"Password": None},
        {"Amount": 10},
        {"PhoneNumber": 254708374149},
    ):
        everything_wrong.update(fixed)
        if "Password" in fixed:
            everything_wrong["Password"] = password(everything_wrong["Timestamp"])
        response = await push(http, sim, everything_wrong)
        messages.append(response.json()["errorMessage"])
    assert messages == [
        "Bad Request - Invalid Timestamp",
        "Bad Request - Invalid Password",
        "Bad Request - Invalid Amount",
        "Bad Request - Invalid PhoneNumber",
        "Bad Request - Invalid CallBackURL",
    ]


async def test_unknown_shortcode_and_wrong_passkey_are_500_envelopes(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    response = await push(http, sim, push_body(receiver.callback_url, BusinessShortCode=600000))
    assert_envelope(response, 500, "500.001.1001", "Merchant does not exist")
    stamp = nairobi_timestamp()
    wrong = push_body(receiver.callback_url, Timestamp=stamp, Password=password(stamp, "nope"))
    response = await push(http, sim, wrong)
    assert_envelope(response, 500, "500.001.1001", "Wrong credentials")


async def test_digit_strings_are_accepted_like_numbers(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    body = push_body(
        receiver.callback_url,
        BusinessShortCode="174379",
        Amount="100",
        PartyA="254708374149",
        PartyB="174379",
        PhoneNumber="254112345678",
        AccountReference=12345,
    )
    response = await push(http, sim, body)
    assert response.status_code == 200, response.text
    transaction = sim.app.simulator.transactions[response.json()["CheckoutRequestID"]]
    assert transaction.amount == 100
    assert transaction.phone == "254112345678"


async def test_till_mode_accepts_any_till_number_as_party_b(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    body = push_body(receiver.callback_url, TransactionType="CustomerBuyGoodsOnline", PartyB=600100)
    assert (await push(http, sim, body)).status_code == 200


async def test_push_success_shape(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    response = await push(http, sim, push_body(receiver.callback_url))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {
        "MerchantRequestID",
        "CheckoutRequestID",
        "ResponseCode",
        "ResponseDescription",
        "CustomerMessage",
    }
    assert body["ResponseCode"] == "0"
    assert body["ResponseDescription"] == "Success. Request accepted for processing"
    assert body["CustomerMessage"] == "Success. Request accepted for processing"
    assert re.fullmatch(
        r"[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\d+", body["MerchantRequestID"]
    )
    match = CHECKOUT_ID.fullmatch(body["CheckoutRequestID"])
    assert match is not None
    stamp = datetime.strptime(match.group(1), "%d%m%Y%H%M%S").replace(tzinfo=NAIROBI)
    assert abs(stamp - datetime.now(NAIROBI)) < timedelta(minutes=1)
    assert match.group(2) == "708374149"
    assert len(body["CheckoutRequestID"]) <= 40


async def test_the_locked_subscriber_suffix_refuses_the_push(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    body = push_body(receiver.callback_url, PartyA=254700001001, PhoneNumber=254700001001)
    response = await push(http, sim, body)
    assert_envelope(response, 500, "500.001.1001", LOCKED_MESSAGE)
    assert sim.app.simulator.transactions == {}
    await asyncio.sleep(0.15)
    assert receiver.received == []


# --- callbacks ------------------------------------------------------------------------------


def _decode(callback: ReceivedCallback) -> dict[str, Any]:
    decoded = json.loads(callback.body)
    assert isinstance(decoded, dict)
    return decoded


async def test_success_callback_has_darajas_shapes_and_headers(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    response = await push(http, sim, push_body(receiver.callback_url, Amount=1500))
    checkout = response.json()["CheckoutRequestID"]
    [received] = await receiver.wait_for(1)
    assert received.path == f"/payments/callbacks/stk/{receiver.token}"
    assert received.headers["content-type"] == CALLBACK_CONTENT_TYPE
    assert "authorization" not in received.headers
    assert b'"Value": 1500.00}' in received.body
    callback = _decode(received)["Body"]["stkCallback"]
    assert callback["CheckoutRequestID"] == checkout
    assert callback["MerchantRequestID"] == response.json()["MerchantRequestID"]
    assert callback["ResultCode"] == 0
    assert callback["ResultDesc"] == "The service request is processed successfully."
    items = callback["CallbackMetadata"]["Item"]
    assert [item["Name"] for item in items] == [
        "Amount",
        "MpesaReceiptNumber",
        "Balance",
        "TransactionDate",
        "PhoneNumber",
    ]
    assert items[2] == {"Name": "Balance"}
    assert re.fullmatch(r"[A-Z][A-Z0-9]{9}", items[1]["Value"])
    date = items[3]["Value"]
    assert isinstance(date, int)
    assert len(str(date)) == 14
    sent = datetime.strptime(str(date), "%Y%m%d%H%M%S").replace(tzinfo=NAIROBI)
    assert abs(sent - datetime.now(NAIROBI)) < timedelta(minutes=1)
    assert items[4]["Value"] == 254708374149
    [recorded] = await sim.app.recorder.wait_for_callbacks(1)
    assert recorded.status_code == 200
    assert recorded.error is None
    assert recorded.raw.encode() == received.body


@pytest.mark.parametrize(
    ("phone", "code", "desc"),
    [
        (254711111032, 1032, "Request cancelled by user"),
        (254711110001, 1, "The balance is insufficient for the transaction."),
        (254711112001, 2001, "The initiator information is invalid."),
        (254711111037, 1037, "DS timeout user cannot be reached"),
    ],
)
async def test_failure_callbacks_by_phone_suffix(
    http: httpx.AsyncClient,
    sim: RunningSimulator,
    receiver: CallbackReceiver,
    phone: int,
    code: int,
    desc: str,
) -> None:
    body = push_body(receiver.callback_url, PartyA=phone, PhoneNumber=phone)
    assert (await push(http, sim, body)).status_code == 200
    [received] = await receiver.wait_for(1)
    callback = _decode(received)["Body"]["stkCallback"]
    assert callback["ResultCode"] == code
    assert isinstance(callback["ResultCode"], int)
    assert callback["ResultDesc"] == desc
    assert "CallbackMetadata" not in callback


async def test_duplicate_and_lost_callbacks(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    lost = push_body(receiver.callback_url, PartyA=254711110000, PhoneNumber=254711110000)
    twice = push_body(receiver.callback_url, PartyA=254711110002, PhoneNumber=254711110002)
    assert (await push(http, sim, lost)).status_code == 200
    assert (await push(http, sim, twice)).status_code == 200
    received = await receiver.wait_for(2)
    await asyncio.sleep(0.2)
    assert len(receiver.received) == 2
    assert received[0].body == received[1].body
    assert _decode(received[0])["Body"]["stkCallback"]["ResultCode"] == 0


async def test_receipts_are_unique(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    bearer = await token(http, sim)
    for _ in range(15):
        await push(http, sim, push_body(receiver.callback_url), bearer=bearer)
    receipts = [t.receipt for t in sim.app.simulator.transactions.values()]
    assert len(set(receipts)) == 15
    ids = list(sim.app.simulator.transactions)
    assert len(set(ids)) == 15


async def test_a_failed_callback_delivery_is_recorded(
    http: httpx.AsyncClient, sim: RunningSimulator
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await push(http, sim, push_body(f"http://127.0.0.1:{port}/payments/callbacks/stk/x"))
    [callback] = await sim.app.recorder.wait_for_callbacks(1)
    assert callback.status_code is None
    assert callback.error is not None
    assert "ConnectError" in callback.error


async def test_callbacks_through_an_injected_http_client(
    start_simulator: SimulatorFactory, http: httpx.AsyncClient
) -> None:
    receiver = CallbackReceiver(CallbackServer(base_url="http://receiver.internal"))
    transport = httpx.ASGITransport(app=receiver.server.app())
    sim = await start_simulator(http_client_factory=lambda: httpx.AsyncClient(transport=transport))
    await push(http, sim, push_body(receiver.callback_url))
    [received] = await receiver.wait_for(1)
    assert _decode(received)["Body"]["stkCallback"]["ResultCode"] == 0


async def test_pending_callbacks_are_cancelled_on_shutdown(
    http: httpx.AsyncClient, receiver: CallbackReceiver
) -> None:
    app = create_simulator_app(callback_delay=30)
    async with serve_in_background(app) as base_url:
        sim = RunningSimulator(app, base_url)
        await push(http, sim, push_body(receiver.callback_url))
        assert len(app.simulator._tasks) == 1
    assert app.simulator._tasks == set()
    assert receiver.received == []


async def test_full_reset_cancels_pending_callbacks_and_forgets_everything(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    sim.app.behaviour.callback_delay = 0.2
    bearer = await token(http, sim)
    checkout = (await push(http, sim, push_body(receiver.callback_url), bearer=bearer)).json()
    reset = await http.post(sim.base_url + "/__sim/reset?full=true")
    assert reset.json() == {"reset": True, "full": True}
    assert sim.app.simulator.transactions == {}
    await asyncio.sleep(0.3)
    assert receiver.received == []
    response = await push(http, sim, push_body(receiver.callback_url), bearer=bearer)
    assert response.json()["errorCode"] == "404.001.03"
    assert checkout["CheckoutRequestID"]


# --- STK query ------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["4999", "500.001.1001"])
async def test_query_pending_then_final(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver, style: Any
) -> None:
    sim.app.behaviour.callback_delay = 0.3
    sim.app.behaviour.query_pending_style = style
    phone = 254711111032
    response = await push(http, sim, push_body(receiver.callback_url, PhoneNumber=phone))
    ids = response.json()
    pending = await query(http, sim, query_body(ids["CheckoutRequestID"]))
    if style == "4999":
        assert pending.status_code == 200
        assert pending.json()["ResultCode"] == "4999"
        assert pending.json()["ResultDesc"] == "The transaction is still under processing"
    else:
        assert_envelope(pending, 500, "500.001.1001", "The transaction is being processed")
    await receiver.wait_for(1)
    final = await query(http, sim, query_body(ids["CheckoutRequestID"]))
    assert final.status_code == 200
    assert final.json() == {
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successsfully",
        "MerchantRequestID": ids["MerchantRequestID"],
        "CheckoutRequestID": ids["CheckoutRequestID"],
        "ResultCode": "1032",
        "ResultDesc": "Request cancelled by user",
    }


async def test_query_for_a_lost_callback_tells_success(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    body = push_body(receiver.callback_url, PhoneNumber=254711110000)
    checkout = (await push(http, sim, body)).json()["CheckoutRequestID"]
    await asyncio.sleep(0.15)
    final = (await query(http, sim, query_body(checkout))).json()
    assert final["ResultCode"] == "0"
    assert receiver.received == []


async def test_query_validation(http: httpx.AsyncClient, sim: RunningSimulator) -> None:
    response = await http.post(sim.base_url + QUERY, json=query_body("ws_CO_1"))
    assert response.json()["errorCode"] == "404.001.03"
    response = await query(http, sim, {"BusinessShortCode": 174379})
    assert_envelope(response, 400, "400.002.02", "Bad Request - Invalid Password")
    body = query_body("x")
    del body["CheckoutRequestID"]
    response = await query(http, sim, body)
    assert_envelope(response, 400, "400.002.02", "Bad Request - Invalid CheckoutRequestID")
    stamp = nairobi_timestamp()
    response = await query(
        http, sim, query_body("ws_CO_1", Timestamp=stamp, Password=password(stamp, "x"))
    )
    assert_envelope(response, 500, "500.001.1001", "Wrong credentials")
    response = await query(http, sim, query_body("ws_CO_unknown"))
    assert_envelope(response, 500, "500.001.1001", "The transaction is being processed")
    response = await query(http, sim, {**query_body("x"), "CheckoutRequestID": 12345})
    assert response.json()["errorCode"] == "500.001.1001"


# --- fault switches, test endpoints, running ------------------------------------------------


async def test_invalid_token_answers_switch(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    bearer = await token(http, sim)
    sim.app.behaviour.invalid_token_answers = 1
    first = await push(http, sim, push_body(receiver.callback_url), bearer=bearer)
    assert first.json()["errorCode"] == "404.001.03"
    second = await push(http, sim, push_body(receiver.callback_url), bearer=bearer)
    assert second.status_code == 200


async def test_next_push_error_switch(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    sim.app.behaviour.next_push_error = (500, None)
    first = await push(http, sim, push_body(receiver.callback_url))
    assert first.status_code == 500
    assert first.content == b""
    assert sim.app.simulator.transactions == {}
    assert (await push(http, sim, push_body(receiver.callback_url))).status_code == 200


async def test_drop_connection_switch_processes_the_push_then_drops(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    sim.app.behaviour.drop_connection = True
    with pytest.raises(httpx.RemoteProtocolError):
        await push(http, sim, push_body(receiver.callback_url))
    assert len(sim.app.simulator.transactions) == 1
    assert len(await receiver.wait_for(1)) == 1
    assert sim.app.recorder.pushes[0].response == "dropped"


async def test_slow_answer_switch(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    sim.app.behaviour.fail_next_push_with_timeout_seconds = 1.0
    bearer = await token(http, sim)
    with pytest.raises(httpx.ReadTimeout):
        await http.post(
            sim.base_url + PUSH,
            headers={"Authorization": f"Bearer {bearer}"},
            json=push_body(receiver.callback_url),
            timeout=httpx.Timeout(5.0, read=0.2),
        )
    assert len(await receiver.wait_for(1)) == 1  # the prompt went out all the same
    assert sim.app.behaviour.fail_next_push_with_timeout_seconds is None


async def test_sim_requests_and_reset(
    http: httpx.AsyncClient, sim: RunningSimulator, receiver: CallbackReceiver
) -> None:
    await push(http, sim, push_body(receiver.callback_url))
    await sim.app.recorder.wait_for_callbacks(1)
    snapshot = (await http.get(sim.base_url + "/__sim/requests")).json()
    assert [r["path"] for r in snapshot["requests"]] == ["/oauth/v1/generate", PUSH]
    assert snapshot["requests"][0]["query"] == "grant_type=client_credentials"
    assert snapshot["requests"][1]["json"]["Amount"] == 1500
    assert snapshot["requests"][1]["status_code"] == 200
    assert snapshot["requests"][1]["headers"]["authorization"].startswith("Bearer ")
    assert len(snapshot["callbacks"]) == 1
    assert snapshot["callbacks"][0]["status_code"] == 200
    sim.app.behaviour.oauth_down = True
    reset = await http.post(sim.base_url + "/__sim/reset")
    assert reset.json() == {"reset": True, "full": False}
    assert sim.app.behaviour.oauth_down is False
    assert (await http.get(sim.base_url + "/__sim/requests")).json() == {
        "requests": [],
        "callbacks": [],
    }
    # The app's state exposes the same objects, as the brief's integrations expect.
    assert sim.app.state.recorder is sim.app.recorder
    assert sim.app.state.behaviour is sim.app.behaviour


async def test_wait_for_callbacks_gives_up_after_its_bound(sim: RunningSimulator) -> None:
    assert await sim.app.recorder.wait_for_callbacks(1, within_seconds=0.05) == []


def test_factory_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="query_pending_style"):
        create_simulator_app(query_pending_style="200")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="callback_delay"):
        create_simulator_app(callback_delay=-1)


@pytest.mark.parametrize(
    ("env", "allowed"),
    [("development", True), ("test", True), ("production", False), (" Production ", False)],
)
def test_simulator_allowed(env: str, allowed: bool) -> None:
    assert simulator_allowed(env) is allowed


def test_run_simulator_runs_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(
        "tiketi.payments.mpesa.simulator.uvicorn.run",
        lambda app, **kwargs: calls.append((app, kwargs)),
    )
    simulator_module.run_simulator("127.0.0.1", 8090, 2.5, query_pending_style="500.001.1001")
    [(app, kwargs)] = calls
    assert kwargs == {"host": "127.0.0.1", "port": 8090, "log_level": "info"}
    assert app.behaviour.callback_delay == 2.5
    assert app.behaviour.query_pending_style == "500.001.1001"


async def test_serve_in_background_reports_a_server_that_cannot_start() -> None:
    async def broken_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no"})

    with pytest.raises(RuntimeError, match="did not start"):
        async with serve_in_background(broken_app):
            pass
