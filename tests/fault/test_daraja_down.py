"""Daraja stops answering in the middle of a payment: the simulator runs as its own process and
is killed (SIGKILL) or frozen (SIGSTOP). Every payment must end `succeeded` or `needs_review`,
never silently `pending` forever; holds are kept while a payment is in flight and released
exactly once after.

The API runs in this process (served over real HTTP so the simulator's callbacks reach it);
the reconciliation job is driven with `app.state.jobs.run_once()`. PAYMENT_REVIEW_AFTER_SECONDS
cannot go below 60, so "a minute later" is made by moving the payment's clock back in SQL.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import make_settings
from tests.factories import Account, make_account, make_event, place_order, tiers_of
from tests.fault.inventory import assert_inventory_consistent, connect
from tests.fault.servers import ManagedProcess, Processes, serve_env
from tests.process.helpers import free_port
from tiketi.main import create_app
from tiketi.payments.mpesa.simulator import serve_in_background
from tiketi.payments.service import UNKNOWN_OUTCOME_MESSAGE
from tiketi.users.models import Role

pytestmark = [pytest.mark.fault, pytest.mark.process]

CALLBACK_TOKEN = "fault-callback-token-0123456789-abcdefghij"
CALLBACK_DELAY = 1.0
REVIEW_AFTER = 60


@dataclass
class Stack:
    app: FastAPI
    client: httpx.AsyncClient
    sim: ManagedProcess
    database_url: str
    api_url: str

    async def sql(self, query: str, *args: Any) -> Any:
        conn = await connect(self.database_url)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def payment(self, payment_id: str) -> dict[str, Any]:
        rows = await self.sql("SELECT * FROM payments WHERE id = $1", uuid.UUID(payment_id))
        return dict(rows[0])

    async def order_status(self, order_id: str) -> str:
        rows = await self.sql("SELECT status FROM orders WHERE id = $1", uuid.UUID(order_id))
        return str(rows[0]["status"])

    async def reconcile(self) -> dict[str, int]:
        jobs = self.app.state.jobs
        result: dict[str, int] = await jobs.run_once()
        return result


@pytest.fixture
async def stack(database_url: str, processes: Processes) -> AsyncIterator[Stack]:
    sim = processes.simulator(callback_delay=CALLBACK_DELAY)
    sim.spawn()
    await sim.async_wait_ready(30)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    settings = make_settings(
        database_url,
        mpesa_base_url=sim.base_url,
        mpesa_callback_base_url=api_url,
        mpesa_callback_token=CALLBACK_TOKEN,
        mpesa_read_timeout_seconds=1.0,
        mpesa_total_timeout_seconds=2.0,
        payment_reconcile_after_seconds=1,
        payment_prompt_seconds=30,
        payment_review_after_seconds=REVIEW_AFTER,
    )
    app = create_app(settings)
    async with (
        serve_in_background(app, port=port) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        try:
            yield Stack(app, client, sim, database_url, url)
        finally:
            # Never leave the simulator frozen: the registry's SIGINT would not reach it.
            if sim.running():
                sim.signal(signal.SIGCONT)


async def _order(stack: Stack, phone: str = "0712345678") -> tuple[Account, dict[str, Any]]:
    organizer = await make_account(stack.app, stack.client, Role.organizer)
    event = await make_event(stack.app, organizer.user)
    tier = (await tiers_of(stack.app, event.id))[0]
    buyer = await make_account(stack.app, stack.client, phone_number=phone)
    response = await place_order(stack.client, buyer.headers, event.id, [(tier.id, 2)])
    assert response.status_code == 201, response.text
    return buyer, response.json()


async def _pay(stack: Stack, buyer: Account, order: dict[str, Any]) -> httpx.Response:
    return await stack.client.post(
        "/payments/mpesa", json={"order_id": order["id"]}, headers=buyer.headers
    )


async def _until(check: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return await check()


async def _a_minute_later(stack: Stack, payment_id: str) -> None:
    """As if the payment's review deadline had passed (and its next query were due)."""
    await stack.sql(
        "UPDATE payments SET created_at = created_at - make_interval(secs => $2),"
        " next_query_at = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(payment_id),
        REVIEW_AFTER + 1,
    )


async def _hold_lapses(stack: Stack, order_id: str) -> None:
    await stack.sql(
        "UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(order_id),
    )


async def test_daraja_killed_after_accepting_the_push_ends_in_review(stack: Stack) -> None:
    buyer, order = await _order(stack)
    paid = await _pay(stack, buyer, order)
    assert paid.status_code == 202, paid.text
    payment_id = paid.json()["id"]
    stack.sim.kill()  # before its callback (CALLBACK_DELAY) could leave

    await asyncio.sleep(1.1)  # PAYMENT_RECONCILE_AFTER_SECONDS
    started = time.monotonic()
    await stack.reconcile()
    assert time.monotonic() - started < 5, "a dead Daraja must not stall the jobs"
    payment = await stack.payment(payment_id)
    assert payment["status"] == "pending" and payment["query_attempts"] == 1
    # A hold whose payment is in flight is kept, even past its deadline.
    await _hold_lapses(stack, order["id"])
    await stack.reconcile()
    assert await stack.order_status(order["id"]) == "pending"

    # Daraja comes back without any memory of the push (a different process).
    stack.sim.spawn()
    await stack.sim.async_wait_ready(30)
    await _a_minute_later(stack, payment_id)
    await stack.reconcile()
    payment = await stack.payment(payment_id)
    assert payment["status"] == "needs_review", payment
    assert payment["review_reason"] and payment["completed_at"] is not None
    shown = await stack.client.get(f"/payments/{payment_id}", headers=buyer.headers)
    assert shown.json()["status"] == "needs_review"

    # Now that nothing is in flight, the lapsed hold ends, exactly once.
    await stack.reconcile()
    assert await stack.order_status(order["id"]) == "expired"
    tiers = await assert_inventory_consistent(stack.database_url, uuid.UUID(order["event_id"]))
    assert sum(t.held for t in tiers) == 0


async def test_daraja_frozen_then_back_settles_by_query(stack: Stack) -> None:
    # Phone ending 0000: the customer pays, but no callback is ever sent.
    buyer, order = await _order(stack, phone="0712340000")
    paid = await _pay(stack, buyer, order)
    assert paid.status_code == 202, paid.text
    payment_id = paid.json()["id"]

    stack.sim.signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(1.1)
        started = time.monotonic()
        await stack.reconcile()
        # Bounded by MPESA_TOTAL_TIMEOUT_SECONDS, not by how long Daraja stays silent.
        assert time.monotonic() - started < 5
        assert (await stack.payment(payment_id))["status"] == "pending"
    finally:
        stack.sim.signal(signal.SIGCONT)

    await asyncio.sleep(CALLBACK_DELAY)  # the prompt is answered
    await stack.sql(
        "UPDATE payments SET next_query_at = now() WHERE id = $1", uuid.UUID(payment_id)
    )
    await stack.reconcile()
    payment = await stack.payment(payment_id)
    assert payment["status"] == "succeeded", payment
    assert await stack.order_status(order["id"]) == "paid"
    tiers = await assert_inventory_consistent(stack.database_url, uuid.UUID(order["event_id"]))
    assert sum(t.sold for t in tiers) == 2 and sum(t.held for t in tiers) == 0
    tickets = await stack.client.get("/tickets", headers=buyer.headers)
    assert len(tickets.json()["items"]) == 2


async def test_a_push_daraja_never_answers_ends_succeeded_or_in_review(stack: Stack) -> None:
    # A first payment goes through, so the API holds an OAuth token: the next call is the push.
    buyer, order = await _order(stack)
    first = await _pay(stack, buyer, order)
    assert first.status_code == 202, first.text

    buyer, order = await _order(stack, phone="0722000111")
    stack.sim.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        paid = await _pay(stack, buyer, order)
        elapsed = time.monotonic() - started
    finally:
        stack.sim.signal(signal.SIGCONT)
    # The push may have been sent: pending (never resent, never failed), and answered in time.
    assert paid.status_code == 202, paid.text
    assert elapsed < 5
    body = paid.json()
    assert body["status"] == "pending"
    assert body["customer_message"] == UNKNOWN_OUTCOME_MESSAGE
    payment_id = body["id"]

    # The thawed simulator may still process the push it had received and call back with a
    # checkout id we never learnt; then the payment is matched by phone and amount.
    async def concluded() -> bool:
        return (await stack.payment(payment_id))["status"] != "pending"

    if not await _until(concluded, CALLBACK_DELAY + 3):
        await _a_minute_later(stack, payment_id)
        await stack.reconcile()
    payment = await stack.payment(payment_id)
    assert payment["status"] in ("succeeded", "needs_review"), payment
    expected_order = "paid" if payment["status"] == "succeeded" else "pending"
    assert await stack.order_status(order["id"]) == expected_order
    await assert_inventory_consistent(stack.database_url, uuid.UUID(order["event_id"]))


async def test_tiketi_worker_reconciles_payments(
    stack: Stack, database_url: str, processes: Processes
) -> None:
    buyer, order = await _order(stack, phone="0712340000")  # paid, callback never sent
    paid = await _pay(stack, buyer, order)
    assert paid.status_code == 202, paid.text
    payment_id = paid.json()["id"]

    env = serve_env(
        database_url,
        mpesa_base_url=stack.sim.base_url,
        mpesa_callback_base_url=stack.api_url,
        mpesa_callback_token=CALLBACK_TOKEN,
        jobs_interval_seconds=0.3,
        payment_reconcile_after_seconds=1,
    )
    worker = processes.worker("worker", env)
    worker.spawn()

    async def settled() -> bool:
        return (await stack.payment(payment_id))["status"] == "succeeded"

    assert await _until(settled, CALLBACK_DELAY + 5), worker.tail()
    assert await stack.order_status(order["id"]) == "paid"
