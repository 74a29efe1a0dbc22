"""Hold → STK push → callback → paid order with tickets, and every way it can go wrong."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.factories import counters, make_account, make_event, place_order, tiers_of
from tests.payments.conftest import CALLBACK_TOKEN, Stack, eventually
from tiketi.payments.service import PaymentService
from tiketi.users.models import Role


async def _order(
    stack: Stack, quantity: int = 2, **account: str
) -> tuple[Any, dict[str, Any], Any]:
    organizer = await make_account(stack.app, stack.client, Role.organizer)
    event = await make_event(stack.app, organizer.user)
    early = (await tiers_of(stack.app, event.id))[0]
    buyer = await make_account(stack.app, stack.client, **account)
    order = (
        await place_order(stack.client, buyer.headers, event.id, [(early.id, quantity)])
    ).json()
    return buyer, order, early


async def _pay(
    stack: Stack,
    buyer: Any,
    order: dict[str, Any],
    phone: str | None = None,
    key: str | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {"order_id": order["id"]}
    if phone:
        body["phone_number"] = phone
    headers = buyer.headers | ({"Idempotency-Key": key} if key else {})
    return await stack.client.post("/payments/mpesa", json=body, headers=headers)


async def _status(stack: Stack, buyer: Any, path: str) -> str:
    return str((await stack.client.get(path, headers=buyer.headers)).json()["status"])


async def _sql(stack: Stack, sql: str, **params: Any) -> Any:
    async with stack.app.state.sessionmaker() as session:
        result = await session.execute(text(sql), params)
        await session.commit()
        return result


async def test_hold_push_callback_paid_with_tickets(stack: Stack) -> None:
    buyer, order, early = await _order(stack)
    response = await _pay(stack, buyer, order)
    assert response.status_code == 202, response.text
    payment = response.json()
    assert payment["status"] == "pending"
    assert payment["amount"] == 3000
    assert payment["phone_number"] == "254712345678"
    assert payment["provider"] == "mpesa"
    assert "accepted" in payment["customer_message"].lower()

    async def paid() -> bool:
        return await _status(stack, buyer, f"/orders/{order['id']}") == "paid"

    await eventually(paid)
    settled = (await stack.client.get(f"/payments/{payment['id']}", headers=buyer.headers)).json()
    assert settled["status"] == "succeeded"
    assert len(settled["mpesa_receipt"]) == 10
    assert settled["result_code"] == "0"
    final = (await stack.client.get(f"/orders/{order['id']}", headers=buyer.headers)).json()
    assert len(final["tickets"]) == 2
    assert await counters(stack.app, early.id) == (100, 2, 0)
    push = stack.sim.state.recorder.pushes[0].json
    assert push["Amount"] == 3000
    assert push["AccountReference"].startswith("TKT")
    assert "mpesa" not in push["CallBackURL"].lower()


@pytest.mark.parametrize(
    ("phone", "code"),
    [("0700001032", "1032"), ("0700000001", "1"), ("0700002001", "2001"), ("0700001037", "1037")],
)
async def test_failed_payments_keep_the_hold_for_a_retry(
    stack: Stack, phone: str, code: str
) -> None:
    buyer, order, early = await _order(stack)
    payment = (await _pay(stack, buyer, order, phone)).json()

    async def failed() -> bool:
        return await _status(stack, buyer, f"/payments/{payment['id']}") == "failed"

    await eventually(failed)
    failed_payment = (
        await stack.client.get(f"/payments/{payment['id']}", headers=buyer.headers)
    ).json()
    assert failed_payment["result_code"] == code
    assert await _status(stack, buyer, f"/orders/{order['id']}") == "pending"
    assert await counters(stack.app, early.id) == (100, 0, 2)
    retry = await _pay(stack, buyer, order)
    assert retry.status_code == 202

    async def paid() -> bool:
        return await _status(stack, buyer, f"/orders/{order['id']}") == "paid"

    await eventually(paid)


async def test_locked_subscriber_is_a_clean_503(stack: Stack) -> None:
    buyer, order, _ = await _order(stack)
    response = await _pay(stack, buyer, order, "0700001001")
    assert response.status_code == 503
    assert response.json()["code"] == "gateway_busy"
    assert response.headers["retry-after"] == "60"
    payments = (await stack.client.get("/payments", headers=buyer.headers)).json()["items"]
    assert [p["status"] for p in payments] == ["failed"]
    assert (await _pay(stack, buyer, order)).status_code == 202  # nothing blocks a retry


async def test_lost_callback_is_settled_by_reconciliation(stack: Stack) -> None:
    buyer, order, _ = await _order(stack)
    payment = (await _pay(stack, buyer, order, "0700000000")).json()
    await asyncio.sleep(0.5)
    assert await _status(stack, buyer, f"/payments/{payment['id']}") == "pending"
    # The hold may lapse meanwhile: an order with a payment in flight does not expire.
    await _sql(stack, "UPDATE orders SET expires_at = now() - interval '1 second'")
    await stack.app.state.jobs.run_once()
    assert await _status(stack, buyer, f"/orders/{order['id']}") == "pending"
    await _sql(stack, "UPDATE payments SET next_query_at = now()")
    await stack.app.state.jobs.run_once()
    assert await _status(stack, buyer, f"/payments/{payment['id']}") == "succeeded"
    assert await _status(stack, buyer, f"/orders/{order['id']}") == "paid"
    assert len(stack.sim.state.recorder.queries) >= 1


async def test_duplicate_callback_settles_once(stack: Stack) -> None:
    buyer, order, early = await _order(stack)
    payment = (await _pay(stack, buyer, order, "0700000002")).json()

    async def two_callbacks() -> bool:
        rows = await _sql(stack, "SELECT outcome FROM payment_callbacks WHERE outcome IS NOT NULL")
        return len(rows.all()) == 2

    await eventually(two_callbacks)
    outcomes = sorted(
        r[0] for r in (await _sql(stack, "SELECT outcome FROM payment_callbacks")).all()
    )
    assert outcomes == ["duplicate", "succeeded"]
    assert await _status(stack, buyer, f"/payments/{payment['id']}") == "succeeded"
    final = (await stack.client.get(f"/orders/{order['id']}", headers=buyer.headers)).json()
    assert len(final["tickets"]) == 2
    assert await counters(stack.app, early.id) == (100, 2, 0)


def _success_body(checkout_id: str, amount: float, receipt: str = "TKA1B2C3D4") -> dict[str, Any]:
    return {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": "m-1",
                "CheckoutRequestID": checkout_id,
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "Amount", "Value": amount},
                        {"Name": "MpesaReceiptNumber", "Value": receipt},
                        {"Name": "Balance"},
                        {"Name": "TransactionDate", "Value": 20261126143005},
                        {"Name": "PhoneNumber", "Value": 254712345678},
                    ]
                },
            }
        }
    }


async def _silent_payment(
    stack: Stack, quantity: int = 2
) -> tuple[Any, dict[str, Any], dict[str, Any], str, Any]:
    """A pending payment whose callback the simulator will never send (phone ...0000)."""
    buyer, order, early = await _order(stack, quantity)
    payment = (await _pay(stack, buyer, order, "0700000000")).json()
    row = (
        await _sql(
            stack, "SELECT checkout_request_id FROM payments WHERE id = :id", id=payment["id"]
        )
    ).one()
    return buyer, order, payment, row[0], early


CALLBACK = f"/payments/callbacks/stk/{CALLBACK_TOKEN}"


async def test_twenty_concurrent_deliveries_settle_once(stack: Stack) -> None:
    buyer, order, _, checkout_id, early = await _silent_payment(stack)
    body = _success_body(checkout_id, 3000.00)
    responses = await asyncio.gather(*[stack.client.post(CALLBACK, json=body) for _ in range(20)])
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["ResultCode"] for r in responses} == {0}
    outcomes = [r[0] for r in (await _sql(stack, "SELECT outcome FROM payment_callbacks")).all()]
    assert sorted(outcomes) == ["duplicate"] * 19 + ["succeeded"]
    final = (await stack.client.get(f"/orders/{order['id']}", headers=buyer.headers)).json()
    assert final["status"] == "paid"
    assert len(final["tickets"]) == 2
    assert await counters(stack.app, early.id) == (100, 2, 0)


async def test_spoofed_callbacks_change_nothing(stack: Stack) -> None:
    buyer, order, payment, checkout_id, early = await _silent_payment(stack)
    wrong_token = await stack.client.post(
        "/payments/callbacks/stk/guess", json=_success_body(checkout_id, 3000)
    )
    assert wrong_token.status_code == 404
    unknown = await stack.client.post(CALLBACK, json=_success_body("ws_CO_unknown", 3000))
    assert unknown.status_code == 200
    malformed = await stack.client.post(
        CALLBACK, content=b'{"Body": {"stk', headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.headers["content-type"].startswith("application/problem+json")
    not_daraja = await stack.client.post(CALLBACK, json={"hello": "world"})
    assert not_daraja.status_code == 400
    huge = await stack.client.post(
        CALLBACK,
        content=b"{" + b" " * 5_000_000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413
    assert await _status(stack, buyer, f"/payments/{payment['id']}") == "pending"
    assert await _status(stack, buyer, f"/orders/{order['id']}") == "pending"
    stored = (await _sql(stack, "SELECT outcome FROM payment_callbacks ORDER BY received_at")).all()
    assert [r[0] for r in stored] == ["unmatched", None, None]  # raw bodies kept as evidence
    assert await counters(stack.app, early.id) == (100, 0, 2)


async def test_amount_mismatch_needs_review_and_issues_nothing(stack: Stack) -> None:
    buyer, order, payment, checkout_id, early = await _silent_payment(stack)
    await stack.client.post(CALLBACK, json=_success_body(checkout_id, 1.00))
    settled = (await stack.client.get(f"/payments/{payment['id']}", headers=buyer.headers)).json()
    assert settled["status"] == "needs_review"
    assert (await stack.client.get(f"/orders/{order['id']}", headers=buyer.headers)).json()[
        "tickets"
    ] == []
    assert await counters(stack.app, early.id) == (100, 0, 2)


async def test_reused_receipt_needs_review(stack: Stack) -> None:
    _, _, _, first_checkout, _ = await _silent_payment(stack)
    buyer, order, second, second_checkout, _ = await _silent_payment(stack)
    await stack.client.post(
        CALLBACK, json=_success_body(first_checkout, 3000, receipt="SAMERCPT01")
    )
    await stack.client.post(
        CALLBACK, json=_success_body(second_checkout, 3000, receipt="SAMERCPT01")
    )
    assert await _status(stack, buyer, f"/payments/{second['id']}") == "needs_review"
    assert (await stack.client.get(f"/orders/{order['id']}", headers=buyer.headers)).json()[
        "status"
    ] == "pending"


async def test_one_pending_payment_per_order_and_other_refusals(stack: Stack) -> None:
    buyer, order, _ = await _order(stack)
    assert (await _pay(stack, buyer, order, "0700000000")).status_code == 202
    again = await _pay(stack, buyer, order)
    assert again.status_code == 409
    assert again.json()["code"] == "payment_pending"
    stranger = await make_account(stack.app, stack.client)
    assert (await _pay(stack, stranger, order)).status_code == 404
    missing = await _pay(stack, buyer, {"id": str(uuid.uuid4())})
    assert missing.status_code == 404
    bad_phone = await _pay(stack, buyer, order, "12345")
    assert bad_phone.status_code == 422
    extra = await stack.client.post(
        "/payments/mpesa", json={"order_id": order["id"], "amount": 1}, headers=buyer.headers
    )
    assert extra.status_code == 422
    assert (
        await stack.client.post("/payments/mpesa", json={"order_id": order["id"]})
    ).status_code == 401
    # Cancelled and expired orders cannot be paid.
    other_buyer, other_order, _ = await _order(stack)
    await stack.client.post(f"/orders/{other_order['id']}/cancel", headers=other_buyer.headers)
    cancelled = await _pay(stack, other_buyer, other_order)
    assert cancelled.status_code == 409
    assert cancelled.json()["code"] == "order_not_payable"
    late_buyer, late_order, _ = await _order(stack)
    await _sql(
        stack,
        "UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = :id",
        id=late_order["id"],
    )
    expired = await _pay(stack, late_buyer, late_order)
    assert expired.status_code == 409
    assert expired.json()["code"] == "hold_expired"


async def test_idempotency_key_replays_the_payment(stack: Stack) -> None:
    buyer, order, _ = await _order(stack)
    key = {"Idempotency-Key": "pay-once"}
    first = await _pay(stack, buyer, order, "0700000000", key="pay-once")
    second = await _pay(stack, buyer, order, "0700000000", key="pay-once")
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert len(stack.sim.state.recorder.pushes) == 1
    _, other_order, _ = await _order(stack)
    clash = await stack.client.post(
        "/payments/mpesa", json={"order_id": other_order["id"]}, headers=buyer.headers | key
    )
    assert clash.status_code == 422


async def test_gateway_down_is_a_clean_502_and_recoverable(stack: Stack) -> None:
    buyer, order, _ = await _order(stack)
    stack.sim.state.behaviour.oauth_down = True
    response = await _pay(stack, buyer, order)
    assert response.status_code in (502, 503)
    assert response.json()["code"] in ("gateway_error", "gateway_busy")
    stack.sim.state.behaviour.oauth_down = False
    assert (await _pay(stack, buyer, order)).status_code == 202


async def test_timeout_after_sending_stays_pending_and_is_never_resent(stack: Stack) -> None:
    buyer, order, _ = await _order(stack)
    stack.sim.state.behaviour.fail_next_push_with_timeout_seconds = 3.0
    response = await _pay(stack, buyer, order)
    assert response.status_code == 202
    # The prompt went out; the simulator's callback (matched by phone and amount, since we
    # never learnt the checkout id) may even have settled it before our request gave up.
    assert response.json()["status"] in ("pending", "succeeded")
    assert len(stack.sim.state.recorder.pushes) == 1

    async def paid() -> bool:
        return await _status(stack, buyer, f"/orders/{order['id']}") == "paid"

    await eventually(paid, timeout=15)
    assert len(stack.sim.state.recorder.pushes) == 1


async def test_payments_listing_and_visibility(stack: Stack) -> None:
    buyer, order, _ = await _order(stack)
    payment = (await _pay(stack, buyer, order, "0700000000")).json()
    stranger = await make_account(stack.app, stack.client)
    assert (
        await stack.client.get(f"/payments/{payment['id']}", headers=stranger.headers)
    ).status_code == 404
    assert (await stack.client.get("/payments", headers=stranger.headers)).json()["items"] == []
    admin = await make_account(stack.app, stack.client, Role.admin)
    everything = (
        await stack.client.get("/payments", params={"status": "pending"}, headers=admin.headers)
    ).json()
    assert [p["id"] for p in everything["items"]] == [payment["id"]]
    none = (
        await stack.client.get("/payments", params={"status": "succeeded"}, headers=admin.headers)
    ).json()
    assert none["items"] == []
    bad = await stack.client.get("/payments", params={"status": "weird"}, headers=admin.headers)
    assert bad.status_code == 422


async def test_payments_that_never_conclude_are_flagged(stack: Stack) -> None:
    buyer, order, payment, _, early = await _silent_payment(stack)
    await _sql(
        stack,
        "UPDATE payments SET created_at = now() - interval '1 hour',"
        " next_query_at = now() + interval '1 hour'",
    )
    service: PaymentService = PaymentService(
        stack.app.state.sessionmaker, stack.app.state.mpesa, stack.app.state.settings
    )
    assert await service.reconcile() == 1
    assert await _status(stack, buyer, f"/payments/{payment['id']}") == "needs_review"
    # With no payment in flight any more, the lapsed hold is released.
    await _sql(stack, "UPDATE orders SET expires_at = now() - interval '1 second'")
    await stack.app.state.jobs.run_once()
    assert await _status(stack, buyer, f"/orders/{order['id']}") == "expired"
    assert await counters(stack.app, early.id) == (100, 0, 0)
