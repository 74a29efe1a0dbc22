"""Scenario 3 — settling 2,000 M-Pesa payments from concurrent Daraja callbacks.

Seeded like production leaves them after `POST /orders` + `POST /payments/mpesa`: pending
orders holding 1-4 tickets, a pending payment per order with a known CheckoutRequestID and
amount = order total. Then Daraja success callbacks (the documented body, five metadata
items, a unique receipt) are POSTed to `/payments/callbacks/stk/{token}` concurrently, 10% of
them twice (shuffled, so some duplicates race their original). Measured: settled payments/s
(2,000 / wall time of all deliveries), latency of every delivery; verified in the database:
every payment succeeded once, every order paid with tickets == quantity, held moved to sold,
one stored callback per delivery with the duplicates recorded as `duplicate`.

Baseline: the same work issued directly over asyncpg with the same concurrency and a pool
sized like the app's: store the raw callback (its own statement), then one transaction that
locks the payment by checkout id, skips it if no longer pending (duplicate), checks the
receipt, marks payment succeeded, order paid, held→sold, inserts the tickets and records the
callback outcome. Goals: ≥ 0.6x baseline, p99 < 100 ms (paced, below), exactly-once issuance.
Every timed phase starts after a CHECKPOINT (`bench.core.checkpoint`).

The closed loop above keeps 50 deliveries in flight at all times, so it saturates the machine
and its latency is queueing (mean ≈ 50 ÷ throughput) on both sides. The latency goal is judged
on a second, *paced* phase instead: fresh pending payments (1,000, 10% of them delivered twice)
settled by callbacks arriving at a fixed 100 per second, each sent when it is due however slow
the earlier ones are (open loop, `bench.paced`), latency counted from the due time; the same
for the baseline, both verified exactly once. Why 100/s: it is far above what Daraja sends
us even in a flash sale — 1,000 tickets sold out at 1-4 per order is ~400 payments, completed
on the buyers' phones within a minute or two (3-7 callbacks/s); 100/s is that sale settling
in 4 s — and well below what either side sustains on this box (~300 deliveries/s saturated),
so it measures the service time of a delivery rather than a queue. The saturated p99 stays
reported, as information.
"""

from __future__ import annotations

import json
import random
import secrets
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.core import Context, ScenarioResult, checkpoint, connect
from bench.http import LoadResult, Response, render, run_calls
from bench.infra import ApiConfig, CpuWindow, Process, process_tree, scratch_name
from bench.paced import PacedResult, run_paced_calls, run_paced_http
from bench.scenarios.common import app_pool_per_process, measure_http
from bench.seed import PendingPayment, create_event, create_pending_payments, create_users
from bench.stats import median, ms, ratio

NAME = "callback_settlement"
PAYMENTS = 2_000
DUPLICATE_SHARE = 0.10
CONCURRENCY = 50
GOAL_RATIO = 0.6
GOAL_P99_MS = 100.0
PACED_PAYMENTS = 1_000
PACED_RATE = 100.0  # callbacks/s: see the module docstring
NAIROBI = timedelta(hours=3)


def callback_body(payment: PendingPayment, receipt: str) -> bytes:
    """A Daraja STK success callback, as documented in shared/daraja.md."""
    stamp = (datetime.now(UTC) + NAIROBI).strftime("%Y%m%d%H%M%S")
    body = {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": payment.merchant_request_id,
                "CheckoutRequestID": payment.checkout_request_id,
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "Amount", "Value": float(payment.amount)},
                        {"Name": "MpesaReceiptNumber", "Value": receipt},
                        {"Name": "Balance"},
                        {"Name": "TransactionDate", "Value": int(stamp)},
                        {"Name": "PhoneNumber", "Value": int(payment.buyer.phone)},
                    ]
                },
            }
        }
    }
    return json.dumps(body).encode()


def _receipt(rng: random.Random) -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "".join(rng.choice(alphabet) for _ in range(10))


def _deliveries(
    payments: list[PendingPayment], rng: random.Random
) -> list[tuple[PendingPayment, bytes]]:
    """One success callback per payment, 10% of them delivered twice, in shuffled order."""
    bodies = [(p, callback_body(p, _receipt(rng))) for p in payments]
    duplicates = rng.sample(bodies, int(len(bodies) * DUPLICATE_SHARE))
    deliveries = bodies + duplicates
    rng.shuffle(deliveries)
    return deliveries


async def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(
        NAME,
        measures=(
            f"{PAYMENTS} pending payments settled by Daraja success callbacks "
            f"({DUPLICATE_SHARE:.0%} delivered twice), {CONCURRENCY} concurrent deliveries"
        ),
        figure_label="tiketi settled payments/s",
        baseline_label="asyncpg settlement transactions/s",
    )
    database = scratch_name("callbacks")
    dsn = await ctx.database(database)
    rounds = ctx.pick(1, 2)
    rng = random.Random(254)  # noqa: S311 - reproducible load, not security
    async with connect(dsn) as conn:
        (organizer,) = await create_users(conn, 1, prefix="organizer", role="organizer")
        buyers = await create_users(conn, PAYMENTS, prefix="payer")
        sets: list[tuple[list[PendingPayment], list[PendingPayment], Any, Any]] = []
        paced_sets: list[tuple[list[PendingPayment], list[PendingPayment], Any, Any]] = []
        for n in range(rounds):
            quantities = [rng.randint(1, 4) for _ in range(PAYMENTS)]
            tier = [("Regular", 1500, PAYMENTS * 4, 4)]
            ours_event = await create_event(
                conn, organizer.id, title=f"Callbacks {n} A", tiers=tier
            )
            base_event = await create_event(
                conn, organizer.id, title=f"Callbacks {n} B", tiers=tier
            )
            ours = await create_pending_payments(
                conn, event=ours_event, buyers=buyers, quantities=quantities, tag=f"a{n}"
            )
            theirs = await create_pending_payments(
                conn, event=base_event, buyers=buyers, quantities=quantities, tag=f"b{n}"
            )
            sets.append((ours, theirs, ours_event, base_event))
            paced_quantities = quantities[:PACED_PAYMENTS]
            paced_buyers = buyers[:PACED_PAYMENTS]
            ours_paced_event = await create_event(
                conn, organizer.id, title=f"Callbacks {n} paced A", tiers=tier
            )
            base_paced_event = await create_event(
                conn, organizer.id, title=f"Callbacks {n} paced B", tiers=tier
            )
            ours_paced = await create_pending_payments(
                conn,
                event=ours_paced_event,
                buyers=paced_buyers,
                quantities=paced_quantities,
                tag=f"pa{n}",
            )
            theirs_paced = await create_pending_payments(
                conn,
                event=base_paced_event,
                buyers=paced_buyers,
                quantities=paced_quantities,
                tag=f"pb{n}",
            )
            paced_sets.append((ours_paced, theirs_paced, ours_paced_event, base_paced_event))
        await conn.execute("ANALYZE")

    config = ApiConfig(database_url=ctx.server.url(database))
    api = await ctx.api(config, name=f"{NAME}-tiketi")
    path = f"/payments/callbacks/stk/{config.callback_token}"
    pool_size = app_pool_per_process() * ctx.workers
    pool = await asyncpg.create_pool(
        dsn,
        min_size=pool_size,
        max_size=pool_size,
        server_settings={"application_name": "tiketi-bench-baseline", "timezone": "UTC"},
    )
    ctx.stack.push_async_callback(pool.close)

    tiketi_rounds: list[dict[str, Any]] = []
    base_rounds: list[dict[str, Any]] = []
    paced_rounds: list[dict[str, Any]] = []
    paced_base_rounds: list[dict[str, Any]] = []
    exactly_once = True
    for n, (ours, theirs, ours_event, base_event) in enumerate(sets):
        deliveries = _deliveries(ours, rng)
        requests = _requests(path, deliveries)
        delivered: list[int] = []
        await checkpoint(dsn)
        measured = await measure_http(
            api,
            requests,
            concurrency=CONCURRENCY,
            total=len(requests),
            max_seconds=ctx.pick(30.0, 120.0),
            on_response=_recorder(delivered),
        )
        check = await _verify(dsn, deliveries, delivered, ours, ours_event.id)
        tiketi_rounds.append(
            {
                **_summary(measured.load, check["payments_settled_by_those"]),
                **measured.cpu.summary(measured.load.wall_seconds),
                "database_check": check,
            }
        )
        exactly_once &= check["exactly_once"]

        base_deliveries = _deliveries(theirs, rng)
        base_delivered: list[int] = []
        await checkpoint(dsn)
        baseline = await run_calls(
            _baseline_settle(pool, base_deliveries, base_delivered),
            concurrency=CONCURRENCY,
            total=len(base_deliveries),
            max_seconds=ctx.pick(30.0, 120.0),
        )
        base_check = await _verify(dsn, base_deliveries, base_delivered, theirs, base_event.id)
        base_rounds.append(
            {
                **_summary(baseline, base_check["payments_settled_by_those"]),
                "database_check": base_check,
            }
        )
        ctx.log(
            f"  round {n + 1}: tiketi {tiketi_rounds[-1]['settled_per_s']:.0f} settled/s "
            f"(p99 {tiketi_rounds[-1]['latency_ms']['p99']} ms) — baseline "
            f"{base_rounds[-1]['settled_per_s']:.0f}/s "
            f"(p99 {base_rounds[-1]['latency_ms']['p99']} ms); "
            f"exactly once: {check['exactly_once']} / baseline {base_check['exactly_once']}"
        )

        # The paced (open-loop) phase, on fresh payments: the latency goal is judged here.
        ours_paced, theirs_paced, ours_paced_event, base_paced_event = paced_sets[n]
        paced_deliveries = _deliveries(ours_paced, rng)
        paced_delivered: list[int] = []
        await checkpoint(dsn)
        cpu = CpuWindow(process_tree(api.pid)).start()
        paced = await run_paced_http(
            _port(api),
            _requests(path, paced_deliveries),
            rate=PACED_RATE,
            max_seconds=ctx.pick(30.0, 60.0),
            on_response=_recorder(paced_delivered),
        )
        cpu.stop()
        paced_check = await _verify(
            dsn, paced_deliveries, paced_delivered, ours_paced, ours_paced_event.id
        )
        paced_rounds.append(
            {
                **_paced_summary(paced, paced_check["payments_settled_by_those"]),
                **cpu.summary(paced.load.wall_seconds),
                "database_check": paced_check,
            }
        )
        exactly_once &= paced_check["exactly_once"]

        base_paced_deliveries = _deliveries(theirs_paced, rng)
        base_paced_delivered: list[int] = []
        await checkpoint(dsn)
        base_paced = await run_paced_calls(
            _baseline_settle(pool, base_paced_deliveries, base_paced_delivered),
            total=len(base_paced_deliveries),
            rate=PACED_RATE,
            max_seconds=ctx.pick(30.0, 60.0),
        )
        base_paced_check = await _verify(
            dsn,
            base_paced_deliveries,
            base_paced_delivered,
            theirs_paced,
            base_paced_event.id,
        )
        paced_base_rounds.append(
            {
                **_paced_summary(base_paced, base_paced_check["payments_settled_by_those"]),
                "database_check": base_paced_check,
            }
        )
        ctx.log(
            f"  round {n + 1}, paced at {PACED_RATE:.0f}/s: tiketi p50 "
            f"{paced_rounds[-1]['latency_ms']['p50']} / p99 "
            f"{paced_rounds[-1]['latency_ms']['p99']} ms — baseline p50 "
            f"{paced_base_rounds[-1]['latency_ms']['p50']} / p99 "
            f"{paced_base_rounds[-1]['latency_ms']['p99']} ms; exactly once: "
            f"{paced_check['exactly_once']} / baseline {base_paced_check['exactly_once']}"
        )

    rate = median([r["settled_per_s"] for r in tiketi_rounds])
    base_rate = median([r["settled_per_s"] for r in base_rounds])
    p50 = median([r["latency_ms"]["p50"] for r in tiketi_rounds])
    p99 = median([r["latency_ms"]["p99"] for r in tiketi_rounds])
    base_p50 = median([r["latency_ms"]["p50"] for r in base_rounds])
    base_p99 = median([r["latency_ms"]["p99"] for r in base_rounds])
    paced_p50 = median([r["latency_ms"]["p50"] for r in paced_rounds])
    paced_p99 = median([r["latency_ms"]["p99"] for r in paced_rounds])
    base_paced_p50 = median([r["latency_ms"]["p50"] for r in paced_base_rounds])
    base_paced_p99 = median([r["latency_ms"]["p99"] for r in paced_base_rounds])
    non_200 = sum(r["non_200"] for r in tiketi_rounds + paced_rounds)
    incomplete = [r for r in tiketi_rounds + paced_rounds if not r["database_check"]["complete"]]
    if incomplete:
        result.notes.append(
            "the timed run hit its bound before every callback was delivered "
            f"({incomplete[0]['database_check']['deliveries_answered_200']}/"
            f"{incomplete[0]['database_check']['deliveries_total']}); settled/s counts only "
            "what was settled and exactly-once is checked on that subset"
        )
    result.figure, result.baseline = round(rate, 1), round(base_rate, 1)
    result.ratio = round(ratio(rate, base_rate), 3)
    # A median of an even number of rounds is a mean: keep the text to the percentiles' 0.01.
    p50, p99, base_p50, base_p99 = (round(v, 2) for v in (p50, p99, base_p50, base_p99))
    paced_p50, paced_p99, base_paced_p50, base_paced_p99 = (
        round(v, 2) for v in (paced_p50, paced_p99, base_paced_p50, base_paced_p99)
    )
    result.figure_text = (
        f"{rate:,.0f} settled/s (saturated: p50 {p50} / p99 {p99} ms); paced at "
        f"{PACED_RATE:.0f}/s: p50 {paced_p50} / p99 {paced_p99} ms; exactly once: "
        f"{'yes' if exactly_once else 'NO'}"
    )
    result.baseline_text = (
        f"{base_rate:,.0f} settled/s (saturated: p50 {base_p50} / p99 {base_p99} ms); "
        f"paced at {PACED_RATE:.0f}/s: p50 {base_paced_p50} / p99 {base_paced_p99} ms"
    )
    slowest = min(r["deliveries_per_s"] for r in tiketi_rounds + base_rounds)
    if slowest < 2 * PACED_RATE:
        result.notes.append(
            f"a saturated run delivered only {slowest:.0f}/s here, under twice the paced "
            f"{PACED_RATE:.0f}/s: the paced phase is not well below saturation on this machine"
        )
    result.client_cpu = f"{max(r['client_cpu_share'] for r in tiketi_rounds):.0%} of a core"
    result.details.update(
        {
            "rounds": rounds,
            "payments": PAYMENTS,
            "deliveries": int(PAYMENTS * (1 + DUPLICATE_SHARE)),
            "concurrency": CONCURRENCY,
            "baseline_pool_size": pool_size,
            "tiketi": tiketi_rounds,
            "baseline": base_rounds,
            "paced": {
                "payments": PACED_PAYMENTS,
                "deliveries": int(PACED_PAYMENTS * (1 + DUPLICATE_SHARE)),
                "rate_per_s": PACED_RATE,
                "tiketi": paced_rounds,
                "baseline": paced_base_rounds,
            },
        }
    )
    result.goal(f"≥ {GOAL_RATIO}x baseline", result.ratio >= GOAL_RATIO)
    result.goal(
        f"p99 < {GOAL_P99_MS:.0f} ms at a paced {PACED_RATE:.0f} callbacks/s (open loop)",
        paced_p99 < GOAL_P99_MS,
    )
    result.goal(
        "exactly-once issuance, duplicates recorded, every delivery 200",
        exactly_once and non_200 == 0,
    )
    return result


def _requests(path: str, deliveries: list[tuple[PendingPayment, bytes]]) -> list[bytes]:
    return [
        render(
            "POST",
            path,
            headers={"Content-Type": "application/json;charset=UTF-8"},
            body=body,
        )
        for _, body in deliveries
    ]


def _port(process: Process) -> int:
    assert process.port is not None
    return process.port


def _recorder(delivered: list[int]) -> Any:
    def on_response(i: int, response: Response, _elapsed: float) -> None:
        if response.status == 200:
            delivered.append(i)

    return on_response


def _summary(load: LoadResult, settled: int) -> dict[str, Any]:
    return {
        "deliveries": load.completed,
        "settled_per_s": round(settled / load.wall_seconds, 1) if load.wall_seconds else 0.0,
        "deliveries_per_s": round(load.throughput, 1),
        "latency_ms": load.latency().as_ms(),
        "statuses": {str(k): v for k, v in load.statuses.items()},
        "outcomes": dict(load.outcomes),
        "non_200": (load.completed - load.statuses.get(200, 0)) if load.statuses else 0,
        "errors": sum(load.errors.values()) + (1 if load.timed_out else 0),
        "client_cpu_share": round(load.client_cpu_seconds / load.wall_seconds, 3)
        if load.wall_seconds
        else 0.0,
        "p99_ms": ms(load.latency().p99),
    }


def _paced_summary(paced: PacedResult, settled: int) -> dict[str, Any]:
    return {
        **_summary(paced.load, settled),
        "rate_per_s": paced.rate,
        "peak_in_flight": paced.load.concurrency,
        "max_send_lag_ms": ms(paced.max_send_lag),
        "connections": paced.connections,
    }


def _baseline_settle(
    pool: asyncpg.Pool, deliveries: list[tuple[PendingPayment, bytes]], delivered: list[int]
) -> Any:
    """The settlement the callback handler performs, as plain SQL."""

    async def settle(i: int) -> str:
        payment, raw = deliveries[i]
        body = json.loads(raw)
        items = {
            item["Name"]: item.get("Value")
            for item in body["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
        }
        receipt = str(items["MpesaReceiptNumber"])
        async with pool.acquire() as conn:
            callback_id = await conn.fetchval(
                "INSERT INTO payment_callbacks (checkout_request_id, source_ip, body, raw)"
                " VALUES ($1, '127.0.0.1', $2::jsonb, $3) RETURNING id",
                payment.checkout_request_id,
                raw.decode(),
                raw.decode(),
            )
            async with conn.transaction():
                row = await conn.fetchrow(
                    "SELECT id, status, amount, order_id FROM payments"
                    " WHERE checkout_request_id = $1 FOR UPDATE",
                    payment.checkout_request_id,
                )
                if row is None or row["status"] != "pending":
                    outcome = "duplicate"
                else:
                    taken = await conn.fetchval(
                        "SELECT 1 FROM payments WHERE mpesa_receipt = $1", receipt
                    )
                    if taken or int(float(items["Amount"])) != row["amount"]:
                        raise RuntimeError("baseline: receipt reused or amount mismatch")
                    order = await conn.fetchrow(
                        "SELECT id, status, event_id, buyer_id FROM orders"
                        " WHERE id = $1 FOR UPDATE",
                        row["order_id"],
                    )
                    await conn.execute(
                        "UPDATE orders SET status = 'paid', paid_at = now(), updated_at = now()"
                        " WHERE id = $1 AND status = 'pending'",
                        order["id"],
                    )
                    lines = await conn.fetch(
                        "UPDATE ticket_types t SET held = t.held - i.quantity,"
                        " sold = t.sold + i.quantity FROM order_items i"
                        " WHERE i.order_id = $1 AND t.id = i.ticket_type_id"
                        " RETURNING t.id, i.quantity",
                        order["id"],
                    )
                    tickets = [
                        (
                            order["id"],
                            line["id"],
                            order["event_id"],
                            order["buyer_id"],
                            secrets.token_urlsafe(18),
                        )
                        for line in lines
                        for _ in range(line["quantity"])
                    ]
                    await conn.executemany(
                        "INSERT INTO tickets (order_id, ticket_type_id, event_id, holder_id, code)"
                        " VALUES ($1, $2, $3, $4, $5)",
                        tickets,
                    )
                    await conn.execute(
                        "UPDATE payments SET status = 'succeeded', mpesa_receipt = $2,"
                        " result_code = '0', result_desc = $3, completed_at = now(),"
                        " updated_at = now() WHERE id = $1",
                        row["id"],
                        receipt,
                        "The service request is processed successfully.",
                    )
                    outcome = "succeeded"
                await conn.execute(
                    "UPDATE payment_callbacks SET outcome = $2, payment_id = $3 WHERE id = $1",
                    callback_id,
                    outcome,
                    row["id"] if row else None,
                )
        delivered.append(i)
        return outcome

    return settle


async def _verify(
    dsn: str,
    deliveries: list[tuple[PendingPayment, bytes]],
    delivered: list[int],
    payments: list[PendingPayment],
    event_id: Any,
) -> dict[str, Any]:
    """Exactly once, straight from the tables, for the deliveries that were answered 200
    (all of them, unless the run hit its time bound): each of their payments succeeded
    once, with its tickets; every other payment is still pending with its hold."""
    settled = {deliveries[i][0].checkout_request_id for i in delivered}
    duplicates = len(delivered) - len(settled)
    checkout_ids = [p.checkout_request_id for p in payments]
    expected_sold = sum(p.quantity for p in payments if p.checkout_request_id in settled)
    expected_held = sum(p.quantity for p in payments) - expected_sold
    async with connect(dsn) as conn:
        rows = await conn.fetch(
            "SELECT checkout_request_id, status FROM payments WHERE checkout_request_id = ANY($1)",
            checkout_ids,
        )
        outcomes = dict(
            await conn.fetch(
                "SELECT coalesce(outcome, 'none'), count(*) FROM payment_callbacks"
                " WHERE checkout_request_id = ANY($1) GROUP BY 1",
                checkout_ids,
            )
        )
        mismatched = await conn.fetchval(
            """
            SELECT count(*) FROM orders o
            WHERE o.event_id = $1 AND o.status = 'paid'
              AND (SELECT count(*) FROM tickets t WHERE t.order_id = o.id)
                  <> (SELECT sum(quantity) FROM order_items i WHERE i.order_id = o.id)
            """,
            event_id,
        )
        paid = await conn.fetchval(
            "SELECT count(*) FROM orders WHERE event_id = $1 AND status = 'paid'", event_id
        )
        tickets = await conn.fetchval("SELECT count(*) FROM tickets WHERE event_id = $1", event_id)
        tier = await conn.fetchrow(
            "SELECT sold, held FROM ticket_types WHERE event_id = $1", event_id
        )
        receipts = await conn.fetchval(
            "SELECT count(DISTINCT mpesa_receipt) FROM payments"
            " WHERE checkout_request_id = ANY($1)",
            checkout_ids,
        )
    wrong_status = sum(
        1
        for r in rows
        if r["status"] != ("succeeded" if r["checkout_request_id"] in settled else "pending")
    )
    outcomes = {str(k): int(v) for k, v in outcomes.items()}
    expected_outcomes = {"succeeded": len(settled)}
    if duplicates:
        expected_outcomes["duplicate"] = duplicates
    exactly_once = (
        wrong_status == 0
        and outcomes == expected_outcomes
        and int(mismatched) == 0
        and int(paid) == len(settled)
        and int(tickets) == expected_sold
        and int(tier["sold"]) == expected_sold
        and int(tier["held"]) == expected_held
        and int(receipts) == len(settled)
    )
    return {
        "deliveries_answered_200": len(delivered),
        "deliveries_total": len(deliveries),
        "complete": len(delivered) == len(deliveries),
        "payments_settled_by_those": len(settled),
        "payments_with_wrong_status": wrong_status,
        "callback_outcomes": outcomes,
        "expected_callback_outcomes": expected_outcomes,
        "paid_orders": int(paid),
        "paid_orders_with_wrong_ticket_count": int(mismatched),
        "tickets": int(tickets),
        "expected_tickets": expected_sold,
        "tier_sold": int(tier["sold"]),
        "tier_held": int(tier["held"]),
        "expected_held": expected_held,
        "distinct_receipts": int(receipts),
        "exactly_once": exactly_once,
    }
