"""A small HTTP/1.1 load generator on raw asyncio streams (keep-alive, loopback only).

httpx costs several times more CPU per request than the server under test spends on a cheap
route; on a 2-core machine the client would steal most of the CPU it is trying to measure.
This client pre-renders request bytes, parses only the status line and the headers it needs
(Content-Length, chunked, Connection) and reports its own CPU time next to the wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

from bench.stats import Latency, summarize

LOOPBACK = "127.0.0.1"


class HttpError(Exception):
    """The server sent something this client cannot parse, or closed mid-response."""


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


def render(
    method: str,
    path: str,
    *,
    host: str = LOOPBACK,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    json_body: bool = False,
    form: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
) -> bytes:
    """One request as bytes, ready to be written (rendered once, sent many times)."""
    if query:
        path = f"{path}?{urlencode(query)}"
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if form is not None:
        body = urlencode(form).encode()
        lines.append("Content-Type: application/x-www-form-urlencoded")
    elif json_body:
        lines.append("Content-Type: application/json")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Connection:
    """One keep-alive connection; reopened transparently when the server closes it."""

    def __init__(self, port: int, host: str = LOOPBACK) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reconnects = 0

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def request(self, raw: bytes) -> Response:
        if self.writer is None or self.reader is None:
            await self.open()
            self.reconnects += 1
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(raw)
        try:
            return await self._read_response(self.reader)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            await self.close()
            raise HttpError(f"connection lost: {exc!r}") from None

    async def _read_response(self, reader: asyncio.StreamReader) -> Response:
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, _, rest = head.partition(b"\r\n")
        try:
            status = int(status_line[9:12])
        except ValueError:
            raise HttpError(f"bad status line {status_line[:60]!r}") from None
        headers: dict[bytes, bytes] = {}
        for line in rest[:-4].split(b"\r\n"):
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = headers.get(b"content-length")
        if length is not None:
            body = await reader.readexactly(int(length))
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = await read_chunked(reader)
        else:
            body = b""
        if headers.get(b"connection", b"").lower() == b"close":
            await self.close()
        return Response(status, headers, body)


async def read_chunk(reader: asyncio.StreamReader) -> bytes:
    """One chunk of a chunked body (b"" for the last one)."""
    size_line = await reader.readuntil(b"\r\n")
    size = int(size_line.split(b";", 1)[0], 16)
    data = await reader.readexactly(size + 2)
    return data[:-2]


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while chunk := await read_chunk(reader):
        parts.append(chunk)
    await reader.readuntil(b"\r\n")  # the trailer section ends with an empty line
    return b"".join(parts)


async def fetch(port: int, raw: bytes, *, within: float = 10.0, host: str = LOOPBACK) -> Response:
    """One request on a fresh connection (for the control plane, not for load)."""
    connection = Connection(port, host)
    try:
        async with asyncio.timeout(within):
            return await connection.request(raw)
    finally:
        await connection.close()


@dataclass
class LoadResult:
    """What one load run did: every latency, every status, and what it cost the client."""

    sent: int
    latencies: list[float]
    statuses: Counter[int]
    errors: Counter[str]
    wall_seconds: float
    client_cpu_seconds: float
    concurrency: int
    timed_out: bool = False
    reconnects: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def completed(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.completed / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def latency(self) -> Latency:
        return summarize(self.latencies)

    def summary(self) -> dict[str, object]:
        return {
            "requests": self.completed,
            "concurrency": self.concurrency,
            "wall_s": round(self.wall_seconds, 3),
            "req_per_s": round(self.throughput, 1),
            "latency_ms": self.latency().as_ms(),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "outcomes": dict(self.outcomes),
            "errors": dict(self.errors),
            "client_cpu_s": round(self.client_cpu_seconds, 3),
            "client_cpu_share_of_one_core": round(
                self.client_cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0, 3
            ),
            "timed_out": self.timed_out,
            "reconnects": self.reconnects,
        }


OnResponse = Callable[[int, Response, float], None]


async def run_load(
    port: int,
    requests: Sequence[bytes] | Callable[[int], bytes],
    *,
    concurrency: int,
    total: int,
    max_seconds: float,
    on_response: OnResponse | None = None,
    host: str = LOOPBACK,
) -> LoadResult:
    """Send up to `total` requests over `concurrency` keep-alive connections, stopping early
    after `max_seconds` (then in-flight requests are abandoned). Connections are opened before
    the clock starts. `requests[i % len]` (or `requests(i)`) is the i-th request."""
    make: Callable[[int], bytes]
    if isinstance(requests, Sequence):
        pool = requests

        def make_from_pool(i: int) -> bytes:
            return pool[i % len(pool)]

        make = make_from_pool
    else:
        make = requests

    connections = [Connection(port, host) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in connections))
    counter = itertools.count()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    sent = 0
    perf = time.perf_counter

    async def worker(connection: Connection, deadline: float) -> None:
        nonlocal sent
        while True:
            i = next(counter)
            if i >= total or perf() >= deadline:
                return
            raw = make(i)
            sent += 1
            started = perf()
            try:
                response = await connection.request(raw)
            except (HttpError, OSError) as exc:
                errors[type(exc).__name__] += 1
                continue
            elapsed = perf() - started
            latencies.append(elapsed)
            statuses[response.status] += 1
            if on_response is not None:
                on_response(i, response, elapsed)

    timed_out = False
    cpu_start = time.process_time()
    started = perf()
    deadline = started + max_seconds
    tasks = [asyncio.create_task(worker(c, deadline)) for c in connections]
    try:
        # Workers stop taking new requests at the deadline; a request stuck past it is
        # abandoned a few seconds later so a hung server cannot hang the benchmark.
        async with asyncio.timeout(max_seconds + 10):
            await asyncio.gather(*tasks)
    except TimeoutError:
        timed_out = True
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        wall = perf() - started
        cpu = time.process_time() - cpu_start
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)
    return LoadResult(
        sent=sent,
        latencies=latencies,
        statuses=statuses,
        errors=errors,
        wall_seconds=wall,
        client_cpu_seconds=cpu,
        concurrency=concurrency,
        timed_out=timed_out,
        reconnects=sum(c.reconnects for c in connections),
    )


async def run_calls(
    call: Callable[[int], Awaitable[object]],
    *,
    concurrency: int,
    total: int,
    max_seconds: float,
) -> LoadResult:
    """The same loop for baselines that are coroutines (asyncpg transactions), not HTTP:
    `call(i)` returns an outcome label, counted like a status."""
    counter = itertools.count()
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    sent = 0
    perf = time.perf_counter

    async def worker(deadline: float) -> None:
        nonlocal sent
        while True:
            i = next(counter)
            if i >= total or perf() >= deadline:
                return
            sent += 1
            started = perf()
            try:
                outcome = await call(i)
            except Exception as exc:
                errors[type(exc).__name__] += 1
                continue
            latencies.append(perf() - started)
            outcomes[str(outcome)] += 1

    timed_out = False
    cpu_start = time.process_time()
    started = perf()
    deadline = started + max_seconds
    tasks = [asyncio.create_task(worker(deadline)) for _ in range(concurrency)]
    try:
        async with asyncio.timeout(max_seconds + 10):
            await asyncio.gather(*tasks)
    except TimeoutError:
        timed_out = True
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        wall = perf() - started
        cpu = time.process_time() - cpu_start
    return LoadResult(
        sent=sent,
        latencies=latencies,
        statuses=Counter(),
        errors=errors,
        wall_seconds=wall,
        client_cpu_seconds=cpu,
        concurrency=concurrency,
        timed_out=timed_out,
        outcomes=outcomes,
    )
