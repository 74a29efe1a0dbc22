"""Live availability: one LISTEN connection per process fans ticket changes out to SSE streams.

A trigger on `ticket_types` sends `NOTIFY tiketi_availability, '<event id>'` when `sold`, `held`
or `quantity` change; PostgreSQL delivers it to every listening process after the commit, so a
hold made through one API process reaches clients connected to any other.

Why it is shaped this way (a popular event can have thousands of open streams per process):

- **One listener connection per process**, outside the pool, reconnecting with back-off. After a
  reconnect every stream is refreshed, since notifications sent meanwhile are lost.
- **One read per event per burst, shared.** A notification marks the event dirty; a short
  coalescing window later a single read (one short-lived session) builds the snapshot, encodes
  it once as SSE bytes and hands the same bytes to every subscriber of that event. Fifty holds in
  a burst cost a couple of reads, not fifty times the number of viewers.
- **A subscriber is a coalescing slot, not a queue**: it keeps only the newest undelivered
  snapshot, so a slow reader can never build a backlog. It holds no task and no connection of
  its own; the response coroutine that serves it is the only per-client coroutine.
- **Bounded everything**: a cap on subscribers per process (503 beyond it), a send timeout that
  drops clients who stop reading, disconnect checks at least every heartbeat, and shutdown
  ends every stream so the server never waits out its graceful timeout on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import signal
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tiketi.core.embedded import to_asyncpg_dsn
from tiketi.core.settings import Settings
from tiketi.events.exceptions import StreamsUnavailable, TooManyStreams
from tiketi.events.schemas import Availability
from tiketi.events.service import EventService

logger = logging.getLogger("tiketi.events.live")

CHANNEL = "tiketi_availability"
EVENT_NAME = "availability"
STREAM_MEDIA_TYPE = "text/event-stream"
LISTENER_APPLICATION_NAME = "tiketi-listener"

_PING = b": ping\n\n"
# How often the housekeeping loop looks for a server shutdown and for orphaned subscriptions.
_HOUSEKEEPING_SECONDS = 0.25
# A subscription whose response never started within this time was dropped by the framework
# (e.g. the request's commit failed after the handler returned); it is released.
_ATTACH_GRACE_SECONDS = 10.0

_availability_list = TypeAdapter(list[Availability])


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One availability list, encoded once as a complete SSE event and shared by every stream.

    `tag` (the SSE `id:`) is a digest of the data, not a counter: equal snapshots carry the same
    id in every process, so a client that reconnects elsewhere can tell whether anything changed.
    `seq` orders the reads of one event inside this process.
    """

    seq: int
    tag: str
    chunk: bytes


def encode_snapshot(items: Sequence[Availability], *, seq: int = 0) -> Snapshot:
    data = _availability_list.dump_json(list(items))
    tag = hashlib.blake2b(data, digest_size=8).hexdigest()
    chunk = b"id: %s\nevent: %s\ndata: %s\n\n" % (tag.encode(), EVENT_NAME.encode(), data)
    return Snapshot(seq=seq, tag=tag, chunk=chunk)


async def read_availability(
    session: AsyncSession, event_id: uuid.UUID
) -> list[Availability] | None:
    """The availability list of an event (None if it no longer exists), for any viewer."""
    return await EventService(session).availability_snapshot(event_id)


def listener_dsn(database_url: str) -> str:
    """An asyncpg DSN for the listener from our SQLAlchemy URL.

    `normalize_database_url` spells libpq's `sslmode` as `ssl` (what SQLAlchemy's asyncpg
    dialect wants), but asyncpg's own DSN parser only knows `sslmode` and would send `ssl` to the
    server as a session setting, which fails.
    """
    parts = urlsplit(to_asyncpg_dsn(database_url))
    query = [
        ("sslmode" if key == "ssl" else key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


def server_is_exiting() -> bool:
    """True once uvicorn has been told to stop (SIGTERM/SIGINT).

    uvicorn then stops accepting connections and waits (up to its graceful timeout) for open
    responses to finish *before* it runs the lifespan shutdown, and it never tells the
    application. Endless responses would hold every shutdown for the full timeout. While it
    serves, uvicorn installs its `Server.handle_exit` bound method as the signal handler (with
    `signal.signal`); its public `should_exit` flag, read through that handler, is the one
    in-time sign. Read-only: nothing is patched, and other servers simply never match.
    """
    for signum in (signal.SIGTERM, signal.SIGINT):
        server = getattr(signal.getsignal(signum), "__self__", None)
        if server is not None and getattr(server, "should_exit", False) is True:
            return True
    return False


class _Topic:
    """The subscribers of one event, and the state of its shared refresh."""

    __slots__ = ("dirty", "event_id", "reads", "subscribers", "task")

    def __init__(self, event_id: uuid.UUID) -> None:
        self.event_id = event_id
        self.subscribers: set[Subscription] = set()
        self.reads = 0
        self.dirty = False
        self.task: asyncio.Task[None] | None = None

    def publish(self, snapshot: Snapshot) -> None:
        for subscriber in self.subscribers:
            subscriber.deliver(snapshot)


class Subscription:
    """One client's slot: at most one pending snapshot (the newest), and a wake-up signal."""

    __slots__ = (
        "_broadcaster",
        "_closed",
        "_joined",
        "_pending",
        "_topic",
        "_wake",
        "attach_deadline",
        "event_id",
    )

    def __init__(
        self, broadcaster: AvailabilityBroadcaster, topic: _Topic, deadline: float
    ) -> None:
        self.event_id = topic.event_id
        self._broadcaster = broadcaster
        self._topic = topic
        # Reads that started before this subscription existed are older than the snapshot the
        # client is about to get from its own read; they must not overtake it.
        self._joined = topic.reads
        self._pending: Snapshot | None = None
        self._closed = False
        self._wake = asyncio.Event()
        self.attach_deadline = deadline

    @property
    def closed(self) -> bool:
        return self._closed

    def deliver(self, snapshot: Snapshot) -> None:
        """Replace whatever is pending: a slow reader skips to the newest state, never queues."""
        if self._closed or snapshot.seq <= self._joined:
            return
        self._pending = snapshot
        self._wake.set()

    def end(self) -> None:
        """Ask the stream to finish (shutdown, event gone); it unsubscribes on its way out."""
        self._closed = True
        self._wake.set()

    def attach(self) -> None:
        """A response now serves this subscription (it will unsubscribe when it ends)."""
        self._broadcaster._attached(self)

    def close(self) -> None:
        """Unsubscribe; idempotent."""
        self._closed = True
        self._broadcaster._unsubscribe(self, self._topic)

    async def wait(self, seconds: float) -> Snapshot | None:
        """The newest undelivered snapshot, or None after `seconds` without one.

        Check `closed` after every wake-up.
        """
        if self._pending is None and not self._closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._wake.wait()
        self._wake.clear()
        snapshot, self._pending = self._pending, None
        return snapshot


class AvailabilityBroadcaster:
    """The per-process hub: a LISTEN connection, per-event subscribers, shared snapshot reads.

    Started and stopped by the app lifespan (`app.state.availability`). Everything runs on the
    event loop that called `start()`.
    """

    def __init__(
        self,
        database_url: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        heartbeat_seconds: float = 15.0,
        max_subscribers: int = 10_000,
        coalesce_seconds: float = 0.1,
        max_concurrent_reads: int = 2,
        send_timeout_seconds: float = 30.0,
        retry_ms: int = 3000,
        connect_timeout_seconds: float = 5.0,
        keepalive_seconds: float = 30.0,
        reconnect_min_seconds: float = 0.5,
        reconnect_max_seconds: float = 30.0,
        watch_server_exit: bool = True,
    ) -> None:
        self.heartbeat_seconds = heartbeat_seconds
        self.max_subscribers = max_subscribers
        self.coalesce_seconds = coalesce_seconds
        self.send_timeout_seconds = send_timeout_seconds
        self.retry_ms = retry_ms
        self._dsn = listener_dsn(database_url)
        self._sessionmaker = sessionmaker
        self._connect_timeout = connect_timeout_seconds
        self._keepalive = keepalive_seconds
        self._reconnect_min = reconnect_min_seconds
        self._reconnect_max = reconnect_max_seconds
        self._watch_server_exit = watch_server_exit
        # Refreshes share the request pool; when many events change at once they queue here
        # instead of taking every pooled connection from the requests that sell the tickets.
        self._read_slots = asyncio.Semaphore(max_concurrent_reads)

        self._topics: dict[uuid.UUID, _Topic] = {}
        self._count = 0
        self._unattached: set[Subscription] = set()
        self._accepting = False
        self._listening = False
        self._stopping = asyncio.Event()
        self._listener_wake = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener_task: asyncio.Task[None] | None = None
        self._housekeeping_task: asyncio.Task[None] | None = None
        self._change_callbacks: list[Callable[[uuid.UUID | None], None]] = []

        # Counters for tests and metrics.
        self.connects = 0
        self.notifications = 0
        self.snapshot_reads = 0

    @classmethod
    def from_settings(
        cls, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], **options: Any
    ) -> AvailabilityBroadcaster:
        if not settings.database_url:
            raise RuntimeError(
                "DATABASE_URL is not set (run `tiketi dev` for the embedded database)"
            )
        options.setdefault("connect_timeout_seconds", settings.db_connect_timeout_seconds)
        return cls(settings.database_url, sessionmaker, **options)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening. Waits for the first connection attempt only: if the database is
        down the app still starts (readiness reports it) and the listener keeps retrying."""
        if self._listener_task is not None:
            return
        self._stopping.clear()
        self._first_attempt.clear()
        self._accepting = True
        self._listener_task = asyncio.create_task(self._listen_forever(), name="tiketi-listener")
        self._housekeeping_task = asyncio.create_task(
            self._housekeeping(), name="tiketi-listener-housekeeping"
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._connect_timeout + 1):
                await self._first_attempt.wait()

    async def stop(self) -> None:
        """End every stream, close the listener, cancel pending reads; idempotent."""
        self.close_streams()
        self._stopping.set()
        self._listener_wake.set()
        background = [t for t in (self._listener_task, self._housekeeping_task) if t is not None]
        background += list(self._tasks)
        for task in self._tasks:
            task.cancel()
        if background:
            _done, pending = await asyncio.wait(background, timeout=self._connect_timeout + 2)
            for task in pending:
                task.cancel()
        self._listener_task = self._housekeeping_task = None
        # Nothing may linger; streams still finishing find themselves already unsubscribed.
        for topic in self._topics.values():
            for subscription in topic.subscribers:
                subscription.end()
            topic.subscribers.clear()
        self._topics.clear()
        self._unattached.clear()
        self._count = 0

    def close_streams(self) -> None:
        """End every open stream now and refuse new ones (the server is going away; clients
        reconnect after the `retry:` delay, to another process)."""
        self._accepting = False
        for topic in self._topics.values():
            for subscription in topic.subscribers:
                subscription.end()

    @property
    def listening(self) -> bool:
        """Whether the LISTEN connection is up right now."""
        return self._listening

    # -- subscribers -----------------------------------------------------------------------

    def subscribe(self, event_id: uuid.UUID) -> Subscription:
        """A new subscription to `event_id`; 503 when shutting down or at the per-process cap.

        Subscribe *before* reading the first snapshot, so no change can fall between the two.
        """
        if not self._accepting:
            raise StreamsUnavailable(
                "Live availability is not available on this server right now; retry shortly",
                headers={"Retry-After": "2"},
            )
        if self._count >= self.max_subscribers:
            raise TooManyStreams(
                "This server has too many open availability streams; retry shortly",
                headers={"Retry-After": "5"},
            )
        topic = self._topics.get(event_id)
        if topic is None:
            topic = self._topics[event_id] = _Topic(event_id)
        deadline = asyncio.get_running_loop().time() + _ATTACH_GRACE_SECONDS
        subscription = Subscription(self, topic, deadline)
        topic.subscribers.add(subscription)
        self._unattached.add(subscription)
        self._count += 1
        return subscription

    def on_change(self, callback: Callable[[uuid.UUID | None], None]) -> None:
        """Call `callback(event_id)` on every availability change this process hears of, and
        `callback(None)` when changes may have been missed (the listener reconnected)."""
        self._change_callbacks.append(callback)

    def _announce(self, event_id: uuid.UUID | None) -> None:
        for callback in self._change_callbacks:
            try:
                callback(event_id)
            except Exception:
                logger.exception("availability change callback failed")

    def subscriber_count(self, event_id: uuid.UUID | None = None) -> int:
        """Open subscriptions in this process (of one event, if given)."""
        if event_id is None:
            return self._count
        topic = self._topics.get(event_id)
        return len(topic.subscribers) if topic is not None else 0

    def response(
        self, subscription: Subscription, current: Sequence[Availability]
    ) -> AvailabilityStreamResponse:
        """The SSE response that serves `subscription`, starting with `current`."""
        return AvailabilityStreamResponse(self, subscription, encode_snapshot(current))

    def _attached(self, subscription: Subscription) -> None:
        self._unattached.discard(subscription)

    def _unsubscribe(self, subscription: Subscription, topic: _Topic) -> None:
        self._unattached.discard(subscription)
        if subscription not in topic.subscribers:
            return
        topic.subscribers.discard(subscription)
        self._count -= 1
        if not topic.subscribers and self._topics.get(topic.event_id) is topic:
            del self._topics[topic.event_id]

    # -- the listener ----------------------------------------------------------------------

    async def _listen_forever(self) -> None:
        delay = self._reconnect_min
        while not self._stopping.is_set():
            was_listening = await self._listen_once()
            self._first_attempt.set()
            if self._stopping.is_set():
                break
            if was_listening:
                delay = self._reconnect_min
            pause = random.uniform(delay / 2, delay)  # noqa: S311 - jitter, not security
            logger.warning("availability listener reconnecting in %.1fs", pause)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._stopping.wait()
            delay = min(delay * 2, self._reconnect_max)

    async def _listen_once(self) -> bool:
        """Connect, LISTEN and hold the connection until it fails or we stop; True if LISTEN
        was established."""
        lost = self._listener_wake = asyncio.Event()
        if self._stopping.is_set():
            return False
        try:
            connection = await asyncpg.connect(
                self._dsn,
                timeout=self._connect_timeout,
                server_settings={"application_name": LISTENER_APPLICATION_NAME},
            )
        except Exception as exc:
            logger.warning("availability listener cannot connect: %r", exc)
            return False
        listening = False
        try:
            connection.add_termination_listener(lambda _connection: lost.set())
            await connection.add_listener(CHANNEL, self._on_notification)
            listening = self._listening = True
            self.connects += 1
            self._first_attempt.set()
            if self.connects > 1:
                logger.info("availability listener reconnected; refreshing every stream")
            # Notifications sent while nobody listened are gone: re-read what is watched.
            self._announce(None)
            for topic in self._topics.values():
                self._schedule_refresh(topic)
            await self._hold(connection, lost)
        except Exception as exc:
            logger.warning("availability listener failed: %r", exc)
        finally:
            self._listening = False
            await self._close_connection(connection)
        return listening

    async def _hold(self, connection: Any, lost: asyncio.Event) -> None:
        """Wait until the connection drops or we stop; a periodic query finds dead peers that
        never sent a FIN (and keeps idle-session timeouts away)."""
        while not lost.is_set() and not self._stopping.is_set():
            try:
                async with asyncio.timeout(self._keepalive):
                    await lost.wait()
            except TimeoutError:
                async with asyncio.timeout(self._connect_timeout):
                    await connection.fetchval("SELECT 1")

    async def _close_connection(self, connection: Any) -> None:
        if connection.is_closed():
            return
        try:
            async with asyncio.timeout(2):
                await connection.close()
        except Exception:
            connection.terminate()

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self.notifications += 1
        try:
            event_id = uuid.UUID(payload)
        except ValueError:
            logger.warning("ignoring availability notification %r", payload[:80])
            return
        self._announce(event_id)
        topic = self._topics.get(event_id)
        if topic is not None:
            self._schedule_refresh(topic)

    # -- shared refreshes ------------------------------------------------------------------

    def _schedule_refresh(self, topic: _Topic) -> None:
        topic.dirty = True
        if topic.task is None and not self._stopping.is_set():
            task = asyncio.create_task(self._refresh(topic), name="tiketi-availability-refresh")
            topic.task = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _refresh(self, topic: _Topic) -> None:
        """Re-read one event while it keeps changing; one read serves all its subscribers."""
        pause = self.coalesce_seconds
        try:
            while topic.dirty and topic.subscribers and not self._stopping.is_set():
                # Let the burst finish: every notification arriving meanwhile rides on one read.
                await asyncio.sleep(pause)
                try:
                    async with self._read_slots:
                        # Changes notified up to here are covered by this read.
                        topic.dirty = False
                        topic.reads += 1
                        seq = topic.reads
                        async with self._sessionmaker() as session:
                            items = await read_availability(session, topic.event_id)
                except Exception as exc:
                    logger.warning(
                        "availability read failed: %r", exc, extra={"event_id": str(topic.event_id)}
                    )
                    topic.dirty = True
                    pause = min(max(pause * 2, 0.5), self._reconnect_max)
                    continue
                pause = self.coalesce_seconds
                self.snapshot_reads += 1
                if items is None:  # deleted: nothing more will ever change
                    for subscription in topic.subscribers:
                        subscription.end()
                    return
                topic.publish(encode_snapshot(items, seq=seq))
        finally:
            topic.task = None

    # -- housekeeping ----------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_HOUSEKEEPING_SECONDS):
                    await self._stopping.wait()
            if self._watch_server_exit and self._accepting and server_is_exiting():
                logger.info("server is shutting down; ending availability streams")
                self.close_streams()
            now = asyncio.get_running_loop().time()
            for subscription in [s for s in self._unattached if s.attach_deadline <= now]:
                logger.warning("releasing an availability subscription whose response never ran")
                subscription.close()


async def _client_gone(receive: Receive) -> bool:
    """Whether the client has disconnected, without waiting and without a listener task.

    ASGI reports a disconnect only through `receive()`. Waiting on it would need a second task
    per client; instead the stream polls it, with an already-expired timeout, every heartbeat
    interval: a pending disconnect message is returned at once, otherwise nothing happened.
    """
    try:
        async with asyncio.timeout(0):
            for _ in range(8):
                message = await receive()
                if message["type"] == "http.disconnect":
                    return True
    except TimeoutError:
        return False
    return False


class AvailabilityStreamResponse(Response):
    """`text/event-stream` of `availability` events, driven by one subscription.

    The first event is the snapshot read by the request handler; then one event per change (the
    newest state; identical states are skipped), a `: ping` comment after every quiet heartbeat
    interval, and a clean end when the broadcaster stops or the server shuts down.
    """

    media_type = STREAM_MEDIA_TYPE

    def __init__(
        self, broadcaster: AvailabilityBroadcaster, subscription: Subscription, first: Snapshot
    ) -> None:
        self.broadcaster = broadcaster
        self.subscription = subscription
        self.first = first
        self.status_code = 200
        self.background: BackgroundTask | None = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        broadcaster, subscription = self.broadcaster, self.subscription
        subscription.attach()
        loop = asyncio.get_running_loop()
        heartbeat = broadcaster.heartbeat_seconds
        # Jittered, so thousands of clients of a process that went away do not reconnect at once.
        retry_ms = int(broadcaster.retry_ms * random.uniform(1.0, 2.0))  # noqa: S311
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            if not await self._send(send, b"retry: %d\n" % retry_ms + self.first.chunk):
                return
            last_tag = self.first.tag
            check_at = loop.time() + heartbeat
            while True:
                snapshot = await subscription.wait(heartbeat)
                if subscription.closed:
                    break
                if snapshot is None or loop.time() >= check_at:
                    if await _client_gone(receive):
                        return
                    check_at = loop.time() + heartbeat
                if snapshot is None:
                    chunk = _PING
                elif snapshot.tag == last_tag:
                    continue
                else:
                    chunk, last_tag = snapshot.chunk, snapshot.tag
                if not await self._send(send, chunk):
                    return
            await self._send(send, b"", more_body=False)
        finally:
            subscription.close()
        if self.background is not None:
            await self.background()

    async def _send(self, send: Send, chunk: bytes, *, more_body: bool = True) -> bool:
        """Send one chunk; False if the client is gone or has not read for too long (a client
        that stops reading would otherwise hold its slot and buffers forever)."""
        try:
            async with asyncio.timeout(self.broadcaster.send_timeout_seconds):
                await send({"type": "http.response.body", "body": chunk, "more_body": more_body})
        except TimeoutError:
            logger.info("dropping an availability stream client that stopped reading")
            return False
        except OSError:
            return False
        return True
