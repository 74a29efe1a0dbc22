"""Open-loop ("paced") load: work issued at a fixed arrival rate, each item on its own schedule.

A closed loop (`bench.http.run_load`: N senders, each waiting for its answer before sending
the next) measures throughput, and at saturation its latency is only queueing: N in flight ÷
throughput, whatever the server does. Latency at a realistic load needs the arrivals to stop
depending on the answers: the i-th item is due at `start + i / rate` and is sent then, however
slow the earlier ones are (a slow server gets more concurrent requests, not fewer), and its
latency is counted from when it was *due*, so a late send is charged to the measurement
rather than hidden (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass

from bench.http import LOOPBACK, Connection, HttpError, LoadResult, OnResponse

# Keep-alive connections opened before the clock starts; more are opened (inside the measured
# latency, as a real sender would) only when all of these are busy.
PREOPENED_CONNECTIONS = 16
# A connection idle longer than this is closed and replaced rather than reused: servers drop
# idle keep-alive connections (uvicorn after 5 s), and a request written to one they just
# closed would fail — a real client's pool has the same rule.
IDLE_LIMIT_SECONDS = 2.0


@dataclass
class PacedResult:
    """A paced run: the usual load figures, plus how well the sender kept its schedule."""

    load: LoadResult  # `concurrency` is the peak number of items in flight
    rate: float
    max_send_lag: float  # the latest any item was sent after it was due (sender overload)
    connections: int = 0  # HTTP connections used (pre-opened + opened under load)

    def summary(self) -> dict[str, object]:
        return {
            **self.load.summary(),
            "rate_per_s": self.rate,
            "peak_in_flight": self.load.concurrency,
            "max_send_lag_ms": round(self.max_send_lag * 1000, 2),
            "connections": self.connections,
        }


class _Pacer:
    """Shared bookkeeping of one paced run."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.in_flight = 0
        self.peak = 0
        self.max_lag = 0.0

    def started(self, due: float) -> None:
        self.max_lag = max(self.max_lag, time.perf_counter() - due)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)


async def _schedule(
    one: Callable[[int, float], Coroutine[object, object, None]],
    *,
    total: int,
    rate: float,
    max_seconds: float,
) -> tuple[int, float, bool]:
    """Start `one(i, due)` at each due time; (items sent, wall seconds, timed out)."""
    perf = time.perf_counter
    tasks: list[asyncio.Task[None]] = []
    started = perf()
    for i in range(total):
        due = started + i / rate
        delay = due - perf()
        if delay > 0:
            await asyncio.sleep(delay)
        if due - started >= max_seconds:
            break
        tasks.append(asyncio.create_task(one(i, due)))
    timed_out = False
    try:
        async with asyncio.timeout(max_seconds + 10):
            await asyncio.gather(*tasks)
    except TimeoutError:
        timed_out = True
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return len(tasks), perf() - started, timed_out


async def run_paced_http(
    port: int,
    requests: Sequence[bytes],
    *,
    rate: float,
    max_seconds: float,
    on_response: OnResponse | None = None,
    host: str = LOOPBACK,
) -> PacedResult:
    """Send `requests[i]` at `start + i / rate` over keep-alive connections (a free one, or a
    new one when every open connection is busy); stop scheduling after `max_seconds`."""
    opened = [Connection(port, host) for _ in range(PREOPENED_CONNECTIONS)]
    await asyncio.gather(*(c.open() for c in opened))
    now = time.perf_counter()
    idle = [(c, now) for c in opened]  # (connection, last used); the most recent last
    pacer = _Pacer()
    statuses: Counter[int] = Counter()

    async def one(i: int, due: float) -> None:
        pacer.started(due)
        connection: Connection | None = None
        while idle and connection is None:
            candidate, last_used = idle.pop()
            if time.perf_counter() - last_used < IDLE_LIMIT_SECONDS:
                connection = candidate
            else:
                await candidate.close()
        if connection is None:
            connection = Connection(port, host)  # opened by its first request, timed
            opened.append(connection)
        try:
            response = await connection.request(requests[i])
        except (HttpError, OSError) as exc:
            pacer.errors[type(exc).__name__] += 1
            return
        finally:
            pacer.in_flight -= 1
            idle.append((connection, time.perf_counter()))
        elapsed = time.perf_counter() - due
        pacer.latencies.append(elapsed)
        statuses[response.status] += 1
        if on_response is not None:
            on_response(i, response, elapsed)

    cpu_start = time.process_time()
    try:
        sent, wall, timed_out = await _schedule(
            one, total=len(requests), rate=rate, max_seconds=max_seconds
        )
    finally:
        cpu = time.process_time() - cpu_start
        await asyncio.gather(*(c.close() for c in opened), return_exceptions=True)
    load = LoadResult(
        sent=sent,
        latencies=pacer.latencies,
        statuses=statuses,
        errors=pacer.errors,
        wall_seconds=wall,
        client_cpu_seconds=cpu,
        concurrency=pacer.peak,
        timed_out=timed_out,
        reconnects=sum(c.reconnects for c in opened),  # counts the late-opened ones too
    )
    return PacedResult(load=load, rate=rate, max_send_lag=pacer.max_lag, connections=len(opened))


async def run_paced_calls(
    call: Callable[[int], Awaitable[object]],
    *,
    total: int,
    rate: float,
    max_seconds: float,
) -> PacedResult:
    """The same schedule for baselines that are coroutines: `call(i)` at `start + i / rate`,
    its outcome label counted like a status."""
    pacer = _Pacer()
    outcomes: Counter[str] = Counter()

    async def one(i: int, due: float) -> None:
        pacer.started(due)
        try:
            outcome = await call(i)
        except Exception as exc:
            pacer.errors[type(exc).__name__] += 1
            return
        finally:
            pacer.in_flight -= 1
        pacer.latencies.append(time.perf_counter() - due)
        outcomes[str(outcome)] += 1

    cpu_start = time.process_time()
    sent, wall, timed_out = await _schedule(one, total=total, rate=rate, max_seconds=max_seconds)
    load = LoadResult(
        sent=sent,
        latencies=pacer.latencies,
        statuses=Counter(),
        errors=pacer.errors,
        wall_seconds=wall,
        client_cpu_seconds=time.process_time() - cpu_start,
        concurrency=pacer.peak,
        timed_out=timed_out,
        outcomes=outcomes,
    )
    return PacedResult(load=load, rate=rate, max_send_lag=pacer.max_lag)
