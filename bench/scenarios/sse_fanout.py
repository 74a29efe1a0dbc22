"""Scenario 5 — 2,000 idle live-availability streams on one API process, then one change.

One `tiketi serve --workers 1` process. Its RSS (VmRSS in /proc) is read idle (the baseline),
then with 2,000 open `GET /events/{id}/availability/stream` subscribers (raw asyncio streams:
a socket and a parser per client, nothing else). Then one change is made straight in SQL
(`UPDATE ticket_types SET held = held + 1`), and every subscriber times the arrival of the
next `availability` event. Goals: RSS growth < 200 MB; the change reaches all 2,000 within 2 s.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bench.core import Context, ScenarioResult, connect
from bench.http import Connection, read_chunk, render
from bench.infra import ApiConfig, CpuWindow, process_tree, rss_bytes, scratch_name
from bench.seed import create_event, create_users
from bench.stats import ms, summarize

NAME = "sse_fanout"
SUBSCRIBERS = 2_000
CONNECT_PARALLELISM = 64
GOAL_RSS_MB = 200.0
GOAL_DELIVERY_S = 2.0
MB = 1024 * 1024


@dataclass
class Subscriber:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    received_at: float | None = None


async def subscribe(port: int, request: bytes) -> Subscriber:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        writer.close()
        raise RuntimeError(f"stream refused: {head[:80]!r}")
    first = await read_chunk(reader)  # retry + the current availability
    if b"event: availability" not in first:
        raise RuntimeError(f"unexpected first event {first[:80]!r}")
    return Subscriber(reader, writer)


async def wait_update(subscriber: Subscriber) -> None:
    """Until the next `availability` event (pings are skipped)."""
    while True:
        chunk = await read_chunk(subscriber.reader)
        if not chunk:
            return
        if b"event: availability" in chunk:
            subscriber.received_at = time.perf_counter()
            return


async def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(
        NAME,
        measures=f"{SUBSCRIBERS} idle SSE subscribers on one API process, then one change",
        figure_label="RSS with subscribers",
        baseline_label="RSS idle",
    )
    database = scratch_name("sse")
    dsn = await ctx.database(database)
    async with connect(dsn) as conn:
        (organizer,) = await create_users(conn, 1, prefix="organizer", role="organizer")
        event = await create_event(
            conn,
            organizer.id,
            title="Live availability",
            tiers=[("Early Bird", 1500, 500, 10), ("Regular", 2500, 5000, 10)],
        )
    config = ApiConfig(database_url=ctx.server.url(database))
    api = await ctx.api(config, name=f"{NAME}-tiketi", workers=1)
    assert api.port is not None
    port = api.port
    request = render(
        "GET",
        f"/events/{event.id}/availability/stream",
        headers={"Accept": "text/event-stream"},
    )

    # Warm the route (imports, prepared statements) before reading the idle RSS.
    warm = Connection(port)
    for _ in range(20):
        await warm.request(render("GET", f"/events/{event.id}/availability"))
    await warm.close()
    first = await subscribe(port, request)
    first.writer.close()
    await asyncio.sleep(1.0)
    rss_idle = rss_bytes(api.pid)

    subscribers: list[Subscriber] = []
    failures: dict[str, int] = {}
    gate = asyncio.Semaphore(CONNECT_PARALLELISM)

    async def open_one() -> None:
        async with gate:
            try:
                subscribers.append(await subscribe(port, request))
            except (OSError, RuntimeError, asyncio.IncompleteReadError) as exc:
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1

    cpu = CpuWindow(process_tree(api.pid)).start()
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(ctx.pick(90, 120)):
            await asyncio.gather(*(open_one() for _ in range(SUBSCRIBERS)))
        connect_seconds = time.perf_counter() - t0
        cpu.stop()
        await asyncio.sleep(1.0)  # let allocations settle
        rss_loaded = rss_bytes(api.pid)

        waiters = [asyncio.create_task(wait_update(s)) for s in subscribers]
        await asyncio.sleep(0.2)
        async with connect(dsn) as conn:
            changed_at = time.perf_counter()
            await conn.execute(
                "UPDATE ticket_types SET held = held + 1 WHERE id = $1", event.tiers[0].id
            )
        _done, pending = await asyncio.wait(waiters, timeout=GOAL_DELIVERY_S + 3.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        rss_after = rss_bytes(api.pid)
    finally:
        for s in subscribers:
            s.writer.close()
        await asyncio.sleep(0.5)

    delays = [s.received_at - changed_at for s in subscribers if s.received_at is not None]
    delivery = summarize(delays)
    growth_mb = (rss_loaded - rss_idle) / MB
    reached = len(delays)
    all_in_time = reached == SUBSCRIBERS and delivery.max <= GOAL_DELIVERY_S
    result.figure = round(rss_loaded / MB, 1)
    result.baseline = round(rss_idle / MB, 1)
    result.ratio = round(rss_loaded / rss_idle, 3)
    result.figure_text = (
        f"RSS {rss_loaded / MB:.0f} MB with {len(subscribers)} streams (+{growth_mb:.0f} MB, "
        f"{growth_mb * 1024 / max(1, len(subscribers)):.0f} KiB/stream); change reached "
        f"{reached}/{SUBSCRIBERS}: p50 {ms(delivery.p50)} / max {ms(delivery.max)} ms"
    )
    result.baseline_text = f"RSS {rss_idle / MB:.0f} MB idle"
    result.client_cpu = "n/a (idle streams)"
    result.details.update(
        {
            "subscribers_requested": SUBSCRIBERS,
            "subscribers_open": len(subscribers),
            "connect_failures": failures,
            "connect_seconds": round(connect_seconds, 2),
            "connect_server_cpu": cpu.summary(connect_seconds),
            "rss_idle_mb": round(rss_idle / MB, 1),
            "rss_with_subscribers_mb": round(rss_loaded / MB, 1),
            "rss_after_delivery_mb": round(rss_after / MB, 1),
            "rss_growth_mb": round(growth_mb, 1),
            "delivery_ms": delivery.as_ms(),
            "reached": reached,
        }
    )
    result.goal(f"RSS growth < {GOAL_RSS_MB:.0f} MB", growth_mb < GOAL_RSS_MB)
    result.goal(f"the change reaches all {SUBSCRIBERS} within {GOAL_DELIVERY_S:.0f} s", all_in_time)
    return result
