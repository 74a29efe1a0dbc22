"""Settling Daraja callbacks: races, late and odd answers, and what is stored.

The callback path settles a payment with a few conditional statements (the UPDATE that claims
a pending payment is its row lock and its duplicate check; the unique receipt index decides
receipt reuse). These tests pin the behaviour that design rests on.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest

from tests.factories import counters
from tests.payments.conftest import Stack
from tests.payments.test_purchase import CALLBACK, _silent_payment, _sql, _success_body
from tiketi.payments.service import PaymentService


def _failure_body(checkout_id: str, code: int, desc: str = "Request cancelled by user") -> Any:
    return {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": "m-1",
                "CheckoutRequestID": checkout_id,
                "ResultCode": code,
                "ResultDesc": desc,
            }
        }
    }


async def _payment(stack: Stack, payment_id: str) -> Any:
    return (
        await _sql(
            stack,
            "SELECT status, mpesa_receipt, review_reason, result_code, completed_at"
            " FROM payments WHERE id = :id",
            id=payment_id,
        )
    ).one()


async def _outcomes(stack: Stack) -> list[str | None]:
    rows = await _sql(stack, "SELECT outcome FROM payment_callbacks ORDER BY received_at, id")
    return [r[0] for r in rows.all()]


async def _tickets(stack: Stack, order_id: str) -> int:
    rows = await _sql(stack, "SELECT count(*) FROM tickets WHERE order_id = :id", id=order_id)
    return int(rows.scalar_one())


async def test_different_receipts_for_one_payment_racing_settle_it_once(stack: Stack) -> None:
    _, order, payment, checkout_id, early = await _silent_payment(stack)
    receipts = [f"RACE{n:06d}" for n in range(10)]
    responses = await asyncio.gather(
        *[
            stack.client.post(CALLBACK, json=_success_body(checkout_id, 3000, receipt=r))
            for r in receipts
        ]
    )
    assert {r.status_code for r in responses} == {200}
    assert sorted(await _outcomes(stack)) == ["duplicate"] * 9 + ["succeeded"]
    settled = await _payment(stack, payment["id"])
    assert settled.status == "succeeded"
    assert settled.mpesa_receipt in receipts
    assert await _tickets(stack, order["id"]) == 2
    assert await counters(stack.app, early.id) == (100, 2, 0)
    linked = await _sql(
        stack, "SELECT count(*) FROM payment_callbacks WHERE payment_id = :id", id=payment["id"]
    )
    assert linked.scalar_one() == 10  # duplicates are linked to the payment they named


async def test_one_receipt_for_two_payments_racing_pays_only_one(stack: Stack) -> None:
    _, first_order, first, first_checkout, early = await _silent_payment(stack)
    _, second_order, second, second_checkout, _ = await _silent_payment(stack)
    responses = await asyncio.gather(
        stack.client.post(CALLBACK, json=_success_body(first_checkout, 3000, receipt="TWICE00001")),
        stack.client.post(
            CALLBACK, json=_success_body(second_checkout, 3000, receipt="TWICE00001")
        ),
    )
    assert {r.status_code for r in responses} == {200}
    rows = [await _payment(stack, p["id"]) for p in (first, second)]
    assert sorted(r.status for r in rows) == ["needs_review", "succeeded"]
    assert sorted(await _outcomes(stack)) == ["needs_review", "succeeded"]
    reviewed = next(r for r in rows if r.status == "needs_review")
    assert reviewed.review_reason == "receipt TWICE00001 was already used by another payment"
    assert reviewed.mpesa_receipt is None
    assert reviewed.completed_at is not None
    issued = [await _tickets(stack, o["id"]) for o in (first_order, second_order)]
    assert sorted(issued) == [0, 2]
    # Each order held 2 Early Bird tickets of its own event: one sold, the other still held.
    assert await counters(stack.app, early.id) in ((100, 2, 0), (100, 0, 2))


async def test_the_raw_body_is_kept_as_jsonb_and_as_text(stack: Stack) -> None:
    _, _, _, checkout_id, _ = await _silent_payment(stack)
    sent = json.dumps(_success_body(checkout_id, 3000))
    amount = '{"Name": "Amount", "Value": 3000}'
    assert sent.count(amount) == 1
    raw = sent.replace(amount, '{"Name": "Amount", "Value": 3000.00}')
    response = await stack.client.post(
        CALLBACK, content=raw.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    row = (
        await _sql(
            stack,
            "SELECT raw, body->'Body'->'stkCallback'->>'CheckoutRequestID' AS checkout,"
            " body->'Body'->'stkCallback'->'CallbackMetadata'->'Item'->0->>'Value' AS amount,"
            " checkout_request_id, source_ip, outcome FROM payment_callbacks",
        )
    ).one()
    assert row.raw == raw
    assert row.checkout == checkout_id == row.checkout_request_id
    assert row.amount == "3000.00"  # exactly as sent
    assert row.source_ip == "127.0.0.1"
    assert row.outcome == "succeeded"


async def test_a_body_postgres_json_refuses_is_kept_as_text_and_still_settles(
    stack: Stack,
) -> None:
    _, order, payment, checkout_id, _ = await _silent_payment(stack)
    # A lone surrogate escape in a key we ignore: Python's JSON accepts it, jsonb does not.
    raw = json.dumps(_success_body(checkout_id, 3000))[:-1] + ', "Note": "\\ud800"}'
    response = await stack.client.post(
        CALLBACK, content=raw.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    row = (await _sql(stack, "SELECT raw, body, outcome FROM payment_callbacks")).one()
    assert row.raw == raw
    assert row.body is None
    assert row.outcome == "succeeded"
    assert (await _payment(stack, payment["id"])).status == "succeeded"
    assert await _tickets(stack, order["id"]) == 2


async def test_failures_and_unknown_codes(stack: Stack) -> None:
    _, order, payment, checkout_id, early = await _silent_payment(stack)
    unknown = await stack.client.post(CALLBACK, json=_failure_body("ws_CO_nobody", 1032))
    assert unknown.status_code == 200
    # A code we do not know keeps the payment pending (reconciliation decides) but notes it.
    odd = await stack.client.post(CALLBACK, json=_failure_body(checkout_id, 7777, "Odd"))
    assert odd.status_code == 200
    noted = await _payment(stack, payment["id"])
    assert (noted.status, noted.result_code, noted.completed_at) == ("pending", "7777", None)
    await stack.client.post(CALLBACK, json=_failure_body(checkout_id, 1032))
    failed = await _payment(stack, payment["id"])
    assert (failed.status, failed.result_code) == ("failed", "1032")
    assert failed.completed_at is not None
    # Terminal: neither a repeated failure nor a late success changes anything.
    await stack.client.post(CALLBACK, json=_failure_body(checkout_id, 1032))
    await stack.client.post(CALLBACK, json=_success_body(checkout_id, 3000))
    assert (await _payment(stack, payment["id"])).status == "failed"
    assert await _outcomes(stack) == ["unmatched", "pending", "failed", "duplicate", "duplicate"]
    assert await _tickets(stack, order["id"]) == 0
    assert await counters(stack.app, early.id) == (100, 0, 2)  # the hold stays for a retry


@pytest.mark.parametrize("capacity_left", [True, False])
async def test_success_after_the_hold_expired(stack: Stack, capacity_left: bool) -> None:
    _, order, payment, checkout_id, early = await _silent_payment(stack)
    await _sql(stack, "UPDATE orders SET status = 'expired' WHERE id = :id", id=order["id"])
    await _sql(stack, "UPDATE ticket_types SET held = held - 2 WHERE id = :id", id=early.id)
    if not capacity_left:
        await _sql(stack, "UPDATE ticket_types SET quantity = 1 WHERE id = :id", id=early.id)
    await stack.client.post(CALLBACK, json=_success_body(checkout_id, 3000))
    settled = await _payment(stack, payment["id"])
    status = (
        await _sql(stack, "SELECT status FROM orders WHERE id = :id", id=order["id"])
    ).scalar_one()
    if capacity_left:
        assert (settled.status, status) == ("succeeded", "paid")
        assert await _tickets(stack, order["id"]) == 2
        assert await counters(stack.app, early.id) == (100, 2, 0)
        assert await _outcomes(stack) == ["succeeded"]
    else:
        assert (settled.status, status) == ("needs_review", "expired")
        assert settled.review_reason == (
            "paid after the hold expired and the tickets are gone: refund due"
        )
        assert settled.mpesa_receipt == "TKA1B2C3D4"  # the money's evidence is kept
        assert await _tickets(stack, order["id"]) == 0
        assert await counters(stack.app, early.id) == (1, 0, 0)
        assert await _outcomes(stack) == ["needs_review"]


async def test_success_for_a_cancelled_order_needs_a_refund(stack: Stack) -> None:
    _, order, payment, checkout_id, early = await _silent_payment(stack)
    await _sql(stack, "UPDATE orders SET status = 'cancelled' WHERE id = :id", id=order["id"])
    await _sql(stack, "UPDATE ticket_types SET held = held - 2 WHERE id = :id", id=early.id)
    await stack.client.post(CALLBACK, json=_success_body(checkout_id, 3000))
    settled = await _payment(stack, payment["id"])
    assert settled.status == "needs_review"
    assert settled.review_reason == "paid for an order that is cancelled: refund due"
    assert await _tickets(stack, order["id"]) == 0
    assert await counters(stack.app, early.id) == (100, 0, 0)
    assert await _outcomes(stack) == ["needs_review"]


async def test_success_without_a_receipt_needs_review(stack: Stack) -> None:
    _, order, payment, checkout_id, _ = await _silent_payment(stack)
    body = _success_body(checkout_id, 3000)
    items = body["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
    body["Body"]["stkCallback"]["CallbackMetadata"]["Item"] = [
        i for i in items if i["Name"] != "MpesaReceiptNumber"
    ]
    await stack.client.post(CALLBACK, json=body)
    settled = await _payment(stack, payment["id"])
    assert settled.status == "needs_review"
    assert settled.review_reason == "no M-Pesa receipt in the success callback"
    assert await _tickets(stack, order["id"]) == 0


async def test_a_fractional_amount_is_a_mismatch(stack: Stack) -> None:
    _, order, payment, checkout_id, _ = await _silent_payment(stack)
    await stack.client.post(CALLBACK, json=_success_body(checkout_id, 3000.5))
    settled = await _payment(stack, payment["id"])
    assert settled.status == "needs_review"
    assert settled.review_reason == "amount mismatch: asked 3000 KES, paid 3000.5 KES"
    assert settled.mpesa_receipt is None
    assert await _tickets(stack, order["id"]) == 0


async def test_a_callback_that_beat_the_push_answer_is_settled_when_it_arrives(
    stack: Stack,
) -> None:
    """Daraja's callback can arrive before we stored the checkout id from the push answer:
    it is kept unmatched, and settled when the answer is recorded."""
    _, order, payment, checkout_id, early = await _silent_payment(stack)
    await _sql(
        stack, "UPDATE payments SET checkout_request_id = NULL WHERE id = :id", id=payment["id"]
    )
    await stack.client.post(CALLBACK, json=_success_body(checkout_id, 3000))
    assert await _outcomes(stack) == ["unmatched"]  # its phone is not the payer's: no adoption
    service = PaymentService(
        stack.app.state.sessionmaker, stack.app.state.mpesa, stack.app.state.settings
    )
    view = await service._record_accepted(uuid.UUID(payment["id"]), "m-1", checkout_id, "ok")
    assert view.status == "succeeded"
    assert view.mpesa_receipt == "TKA1B2C3D4"
    linked = (await _sql(stack, "SELECT outcome, payment_id FROM payment_callbacks")).one()
    assert (linked.outcome, str(linked.payment_id)) == ("succeeded", payment["id"])
    assert await _tickets(stack, order["id"]) == 2
    assert await counters(stack.app, early.id) == (100, 2, 0)


async def test_settling_notifies_live_availability(stack: Stack) -> None:
    _, _, _, checkout_id, early = await _silent_payment(stack)
    event_id = (
        await _sql(stack, "SELECT event_id FROM ticket_types WHERE id = :id", id=early.id)
    ).scalar_one()
    url = stack.app.state.settings.database_url.replace("postgresql+asyncpg://", "postgresql://")
    listener = await asyncpg.connect(url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener(
            "tiketi_availability", lambda *args: heard.put_nowait(str(args[3]))
        )
        await stack.client.post(CALLBACK, json=_success_body(checkout_id, 3000))
        assert await asyncio.wait_for(heard.get(), timeout=5) == str(event_id)
    finally:
        await listener.close()
