"""Scenario 2 — a flash sale: 5,000 buyers race for one tier of 1,000 tickets.

Every buyer (a real account, with an access token minted with the server's JWT settings)
sends one `POST /orders` for 1-4 tickets over 200 concurrent connections. Measured: successful
holds per second (201s divided by the time until the last 201), latency of every request,
5xx, and, straight from the database afterwards, that held + sold equals the tickets granted
in 201 responses and never exceeds the capacity.

Baseline: the minimum SQL a correct hold needs — the order and order_items INSERTs and the
conditional `UPDATE ticket_types SET held = held + q WHERE id = $1 AND sold + held + q <=
quantity` in one transaction — issued over asyncpg by the same 200 concurrent clients through
a pool sized like the app's, on a second identical tier, with the same buyers and quantities.
Goals: ≥ 0.6x baseline, zero oversell, zero 5xx, p99 < 250 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bench.core import Context, ScenarioResult, checkpoint, connect
from bench.http import LoadResult, Response, render, run_calls, run_load
from bench.infra import ApiConfig, scratch_name
from bench.scenarios.common import Measured, app_pool_per_process, measure_http
from bench.seed import Account, SeededEvent, create_event, create_users
from bench.stats import median, ms, ratio, summarize

NAME = "flash_sale"
CAPACITY = 1_000
BUYERS = 5_000
CONCURRENCY = 200
# Before the first round, both sides place this many 1-ticket holds on a roomy warm-up event
# (other buyers): a server in production has its pool open and its statements prepared when a
# sale starts, and the baseline's pool is opened before its clock starts too.
WARMUP_HOLDS = 400
WARMUP_BUYERS = 200
GOAL_RATIO = 0.6
GOAL_P99_MS = 250.0


@dataclass
class SaleTally:
    """What the responses said, to check against the database."""

    granted: int = 0  # tickets in 201 responses
    orders: int = 0
    first_success: float | None = None
    last_success: float = 0.0
    sold_out: int = 0
    other: dict[str, int] = field(default_factory=dict)
    success_latencies: list[float] = field(default_factory=list)


async def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(
        NAME,
        measures=(
            f"{BUYERS} buyers, {CONCURRENCY} connections, POST /orders for 1-4 of "
            f"{CAPACITY} tickets"
        ),
        figure_label="tiketi successful holds/s",
        baseline_label="asyncpg hold transactions/s",
    )
    database = scratch_name("flash_sale")
    dsn = await ctx.database(database)
    rounds = ctx.pick(1, 3)
    rng = random.Random(2026)  # noqa: S311 - reproducible load, not security
    async with connect(dsn) as conn:
        (organizer,) = await create_users(conn, 1, prefix="organizer", role="organizer")
        buyers = await create_users(conn, BUYERS, prefix="buyer")
        warmup_buyers = await create_users(conn, WARMUP_BUYERS, prefix="warmup")
        roomy = [("General Admission", 1500, 10 * WARMUP_HOLDS, 4)]
        warmup_ours = await create_event(conn, organizer.id, title="Warm-up A", tiers=roomy)
        warmup_theirs = await create_event(conn, organizer.id, title="Warm-up B", tiers=roomy)
        sales: list[tuple[SeededEvent, SeededEvent]] = []
        for n in range(rounds):
            tiers = [("General Admission", 1500, CAPACITY, 4)]
            ours = await create_event(conn, organizer.id, title=f"Flash sale {n} A", tiers=tiers)
            theirs = await create_event(conn, organizer.id, title=f"Flash sale {n} B", tiers=tiers)
            sales.append((ours, theirs))
        await conn.execute("ANALYZE")
    config = ApiConfig(database_url=ctx.server.url(database))
    codec = config.token_codec()
    tokens = [codec.issue(user_id=b.id, role="customer", token_version=0)[0] for b in buyers]
    api = await ctx.api(config, name=f"{NAME}-tiketi")
    pool_size = app_pool_per_process() * ctx.workers
    pool = await asyncpg.create_pool(
        dsn,
        min_size=pool_size,
        max_size=pool_size,
        server_settings={"application_name": "tiketi-bench-baseline", "timezone": "UTC"},
    )
    ctx.stack.push_async_callback(pool.close)

    await _warm_up(
        api, pool, codec, warmup_buyers, warmup_ours, warmup_theirs, max_seconds=ctx.pick(30, 60)
    )

    tiketi_rounds: list[dict[str, Any]] = []
    baseline_rounds: list[dict[str, Any]] = []
    oversold = False
    consistent = True
    for n, (ours, theirs) in enumerate(sales):
        quantities = [rng.randint(1, 4) for _ in range(BUYERS)]
        order = list(range(BUYERS))
        rng.shuffle(order)

        tally = SaleTally()
        requests = [
            render(
                "POST",
                "/orders",
                headers={"Authorization": f"Bearer {tokens[i]}"},
                body=json.dumps(
                    {
                        "event_id": str(ours.id),
                        "items": [
                            {"ticket_type_id": str(ours.tiers[0].id), "quantity": quantities[i]}
                        ],
                    }
                ).encode(),
                json_body=True,
            )
            for i in order
        ]
        await checkpoint(dsn)
        async with sample_backends(dsn, "tiketi") as backends:
            measured = await measure_http(
                api,
                requests,
                concurrency=CONCURRENCY,
                total=BUYERS,
                max_seconds=ctx.pick(30.0, 90.0),
                on_response=_tally_http(tally, quantities, order),
            )
        check = await _check(dsn, ours, tally.granted)
        tiketi_rounds.append(_round_summary(measured.load, tally, check, measured))
        tiketi_rounds[-1]["app_backends"] = backends.summary()
        oversold |= check["oversold"]
        consistent &= check["consistent"]

        base_tally = SaleTally()
        await checkpoint(dsn)
        async with sample_backends(dsn, "tiketi-bench-baseline") as backends:
            baseline = await run_calls(
                _baseline_hold(pool, theirs, buyers, quantities, order, base_tally),
                concurrency=CONCURRENCY,
                total=BUYERS,
                max_seconds=ctx.pick(30.0, 90.0),
            )
        base_check = await _check(dsn, theirs, base_tally.granted)
        baseline_rounds.append(_round_summary(baseline, base_tally, base_check, None))
        baseline_rounds[-1]["app_backends"] = backends.summary()
        ctx.log(
            f"  round {n + 1}: tiketi {tiketi_rounds[-1]['holds_per_s']:.0f} holds/s "
            f"(p99 {tiketi_rounds[-1]['latency_ms']['p99']} ms, "
            f"{tiketi_rounds[-1]['orders']} orders) — baseline "
            f"{baseline_rounds[-1]['holds_per_s']:.0f} holds/s "
            f"(p99 {baseline_rounds[-1]['latency_ms']['p99']} ms)"
        )

    ours_rate = median([r["holds_per_s"] for r in tiketi_rounds])
    base_rate = median([r["holds_per_s"] for r in baseline_rounds])
    p99 = median([r["latency_ms"]["p99"] for r in tiketi_rounds])
    p50 = median([r["latency_ms"]["p50"] for r in tiketi_rounds])
    base_p99 = median([r["latency_ms"]["p99"] for r in baseline_rounds])
    base_p50 = median([r["latency_ms"]["p50"] for r in baseline_rounds])
    five_xx = sum(r["5xx"] for r in tiketi_rounds)
    result.figure, result.baseline = round(ours_rate, 1), round(base_rate, 1)
    result.ratio = round(ratio(ours_rate, base_rate), 3)
    result.figure_text = (
        f"{ours_rate:,.0f} holds/s (p50 {p50} / p99 {p99} ms of "
        f"{tiketi_rounds[0]['requests']} requests); "
        f"{five_xx} 5xx; oversold: {'YES' if oversold else 'no'}"
    )
    result.baseline_text = f"{base_rate:,.0f} holds/s (p50 {base_p50} / p99 {base_p99} ms)"
    shares = [r["client_cpu_share"] for r in tiketi_rounds]
    result.client_cpu = f"{max(shares):.0%} of a core"
    result.details.update(
        {
            "rounds": rounds,
            "capacity": CAPACITY,
            "buyers": BUYERS,
            "concurrency": CONCURRENCY,
            "baseline_pool_size": pool_size,
            "tiketi": tiketi_rounds,
            "baseline": baseline_rounds,
        }
    )
    result.goal(f"≥ {GOAL_RATIO}x baseline", result.ratio >= GOAL_RATIO)
    result.goal(
        "zero oversell (DB: held + sold == granted ≤ capacity)", not oversold and consistent
    )
    result.goal("zero 5xx", five_xx == 0 and all(r["errors"] == 0 for r in tiketi_rounds))
    result.goal(f"p99 < {GOAL_P99_MS:.0f} ms", p99 < GOAL_P99_MS)
    return result


async def _warm_up(
    api: Any,
    pool: asyncpg.Pool,
    codec: Any,
    buyers: list[Account],
    ours: SeededEvent,
    theirs: SeededEvent,
    *,
    max_seconds: float,
) -> None:
    """WARMUP_HOLDS one-ticket holds per side on the warm-up events, at full concurrency."""
    tier = ours.tiers[0]
    body = json.dumps(
        {"event_id": str(ours.id), "items": [{"ticket_type_id": str(tier.id), "quantity": 1}]}
    ).encode()
    tokens = [codec.issue(user_id=b.id, role="customer", token_version=0)[0] for b in buyers]
    requests = [
        render(
            "POST",
            "/orders",
            headers={"Authorization": f"Bearer {token}"},
            body=body,
            json_body=True,
        )
        for token in tokens
    ]
    assert api.port is not None
    warmed = await run_load(
        api.port, requests, concurrency=CONCURRENCY, total=WARMUP_HOLDS, max_seconds=max_seconds
    )
    if warmed.statuses.get(201, 0) != WARMUP_HOLDS:
        raise RuntimeError(f"warm-up: not every hold succeeded ({dict(warmed.statuses)})")
    order = [i % len(buyers) for i in range(WARMUP_HOLDS)]
    await run_calls(
        _baseline_hold(pool, theirs, buyers, [1] * len(buyers), order, SaleTally()),
        concurrency=CONCURRENCY,
        total=WARMUP_HOLDS,
        max_seconds=max_seconds,
    )


class BackendSampler:
    """What the app's database connections are doing, sampled from pg_stat_activity every
    20 ms: running, waiting for a lock, or idle inside a transaction (waiting for the app)."""

    def __init__(self) -> None:
        self.samples: Counter[str] = Counter()
        self.in_transaction_with_lock_waiters = 0
        self.polls = 0

    def summary(self) -> dict[str, Any]:
        total = sum(self.samples.values()) or 1
        return {
            "polls": self.polls,
            "share_of_backend_samples": {
                k: round(v / total, 3) for k, v in self.samples.most_common()
            },
            "polls_with_lock_waiters_behind_an_idle_in_transaction_backend": (
                self.in_transaction_with_lock_waiters
            ),
        }


@contextlib.asynccontextmanager
async def sample_backends(dsn: str, application: str) -> AsyncIterator[BackendSampler]:
    sampler = BackendSampler()
    stop = asyncio.Event()

    async def poll() -> None:
        async with connect(dsn) as conn:
            while not stop.is_set():
                rows = await conn.fetch(
                    "SELECT state, wait_event_type, wait_event,"
                    " cardinality(pg_blocking_pids(pid)) AS blocked_by"
                    " FROM pg_stat_activity WHERE application_name = $1",
                    application,
                )
                sampler.polls += 1
                idle_in_tx = False
                lock_waiters = False
                for row in rows:
                    state = row["state"] or "?"
                    if state == "active" and row["wait_event_type"]:
                        key = f"active, waiting on {row['wait_event_type']}:{row['wait_event']}"
                    else:
                        key = state
                    sampler.samples[key] += 1
                    idle_in_tx |= state == "idle in transaction"
                    lock_waiters |= row["wait_event_type"] == "Lock"
                if idle_in_tx and lock_waiters:
                    sampler.in_transaction_with_lock_waiters += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.02):
                        await stop.wait()

    task = asyncio.create_task(poll())
    try:
        yield sampler
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await task


def _tally_http(tally: SaleTally, quantities: list[int], order: list[int]) -> Any:
    import time

    def on_response(i: int, response: Response, elapsed: float) -> None:
        if response.status == 201:
            now = time.perf_counter()
            tally.orders += 1
            tally.granted += quantities[order[i]]
            tally.last_success = now
            tally.first_success = tally.first_success or now - elapsed
            tally.success_latencies.append(elapsed)
        elif response.status == 409 and b"sold_out" in response.body:
            tally.sold_out += 1
        else:
            key = str(response.status)
            tally.other[key] = tally.other.get(key, 0) + 1

    return on_response


def _baseline_hold(
    pool: asyncpg.Pool,
    event: SeededEvent,
    buyers: list[Account],
    quantities: list[int],
    order: list[int],
    tally: SaleTally,
) -> Any:
    import time

    tier = event.tiers[0]

    async def hold(i: int) -> str:
        buyer = buyers[order[i]]
        quantity = quantities[order[i]]
        started = time.perf_counter()
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                order_id = uuid.uuid4()
                await conn.fetchrow(
                    "INSERT INTO orders (id, buyer_id, event_id, total, status, expires_at)"
                    " VALUES ($1, $2, $3, $4, 'pending', now() + interval '600 seconds')"
                    " RETURNING *",
                    order_id,
                    buyer.id,
                    event.id,
                    quantity * tier.price,
                )
                await conn.execute(
                    "INSERT INTO order_items (order_id, ticket_type_id, name, quantity,"
                    " unit_price) VALUES ($1, $2, $3, $4, $5)",
                    order_id,
                    tier.id,
                    tier.name,
                    quantity,
                    tier.price,
                )
                held = await conn.fetchval(
                    "UPDATE ticket_types SET held = held + $2"
                    " WHERE id = $1 AND sold + held + $2 <= quantity RETURNING id",
                    tier.id,
                    quantity,
                )
            except BaseException:
                await tx.rollback()
                raise
            if held is None:
                await tx.rollback()
                tally.sold_out += 1
                return "sold_out"
            await tx.commit()
        now = time.perf_counter()
        tally.orders += 1
        tally.granted += quantity
        tally.last_success = now
        tally.first_success = tally.first_success or started
        tally.success_latencies.append(now - started)
        return "held"

    return hold


async def _check(dsn: str, event: SeededEvent, granted: int) -> dict[str, Any]:
    async with connect(dsn) as conn:
        row = await conn.fetchrow(
            "SELECT quantity, sold, held FROM ticket_types WHERE id = $1", event.tiers[0].id
        )
        items = await conn.fetchval(
            "SELECT coalesce(sum(i.quantity), 0) FROM order_items i"
            " JOIN orders o ON o.id = i.order_id WHERE o.event_id = $1 AND o.status = 'pending'",
            event.id,
        )
    committed = int(row["sold"]) + int(row["held"])
    return {
        "quantity": int(row["quantity"]),
        "sold": int(row["sold"]),
        "held": int(row["held"]),
        "granted_in_responses": granted,
        "pending_order_items": int(items),
        "consistent": committed == granted == int(items),
        "oversold": committed > int(row["quantity"]),
    }


def _round_summary(
    load: LoadResult, tally: SaleTally, check: dict[str, Any], measured: Measured | None
) -> dict[str, Any]:
    selling = (tally.last_success - tally.first_success) if tally.first_success else 0.0
    data: dict[str, Any] = {
        "requests": load.completed,
        "orders": tally.orders,
        "tickets_granted": tally.granted,
        "sold_out_answers": tally.sold_out,
        "other_answers": tally.other,
        "selling_seconds": round(selling, 3),
        "holds_per_s": round(tally.orders / selling, 1) if selling > 0 else 0.0,
        "requests_per_s": round(load.throughput, 1),
        "latency_ms": load.latency().as_ms(),
        "success_latency_ms": summarize(tally.success_latencies).as_ms(),
        "5xx": load.server_errors,
        "errors": sum(load.errors.values()) + (1 if load.timed_out else 0),
        "client_cpu_share": round(load.client_cpu_seconds / load.wall_seconds, 3)
        if load.wall_seconds
        else 0.0,
        "database_check": check,
    }
    if measured is not None:
        data.update(measured.cpu.summary(load.wall_seconds))
    data["p99_ms"] = ms(load.latency().p99)
    return data
