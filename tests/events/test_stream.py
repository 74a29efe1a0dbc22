"""Live availability over Server-Sent Events: snapshot on connect, changes from any process,
visibility, coalescing, heartbeats, and no leaks (subscribers, pooled connections, shutdown)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from tests.events.conftest import LiveServer, open_stream
from tests.factories import Account, make_account, make_event, tiers_of
from tests.process.helpers import free_port, running, tiketi_command
from tiketi.core.embedded import to_asyncpg_dsn
from tiketi.core.settings import Settings
from tiketi.events import live
from tiketi.events.exceptions import StreamsUnavailable
from tiketi.events.live import (
    LISTENER_APPLICATION_NAME,
    AvailabilityBroadcaster,
    listener_dsn,
)
from tiketi.users.models import Role


def stream_path(event_id: uuid.UUID) -> str:
    return f"/events/{event_id}/availability/stream"


@pytest.fixture
async def organizer(app: FastAPI, client: httpx.AsyncClient) -> Account:
    return await make_account(app, client, Role.organizer)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A separate connection (autocommit): changes made here come from 'somewhere else'."""
    connection = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        yield connection
    finally:
        await connection.close()


async def hold(db: asyncpg.Connection, type_id: uuid.UUID, count: int = 1) -> None:
    await db.execute("UPDATE ticket_types SET held = held + $1 WHERE id = $2", count, type_id)


def by_name(items: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {item["name"]: item for item in items}


async def eventually(condition: object, timeout: float = 2.0) -> None:
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_connect_sends_the_current_availability(
    app: FastAPI,
    client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    broadcaster: AvailabilityBroadcaster,
    organizer: Account,
) -> None:
    event = await make_event(app, organizer.user)
    expected = (await client.get(f"/events/{event.id}/availability")).json()

    async with open_stream(http, stream_path(event.id)) as stream:
        headers = stream.response.headers
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["cache-control"] == "no-cache"
        assert headers["x-accel-buffering"] == "no"
        assert "x-request-id" in headers
        first = await stream.event()
        assert first.event == "availability"
        assert first.retry is not None and 3000 <= first.retry <= 6000
        assert first.id is not None and len(first.id) == 16
        assert first.json == expected
        assert broadcaster.subscriber_count(event.id) == 1


async def test_a_change_committed_elsewhere_arrives_within_a_second(
    app: FastAPI,
    client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    broadcaster: AvailabilityBroadcaster,
    organizer: Account,
    db: asyncpg.Connection,
) -> None:
    event = await make_event(app, organizer.user)
    early_bird, vip, _ = await tiers_of(app, event.id)

    async with open_stream(http, stream_path(event.id)) as stream:
        first = await stream.event()
        before = by_name(first.json)

        started = time.monotonic()
        await hold(db, early_bird.id)
        update = await stream.event(timeout=1.0)
        assert time.monotonic() - started < 1.0
        after = by_name(update.json)
        assert after["Early Bird"]["available"] == before["Early Bird"]["available"] - 1  # type: ignore[operator]
        assert after["VIP"] == before["VIP"]
        assert update.id != first.id

        await db.execute("UPDATE ticket_types SET sold = sold + 2 WHERE id = $1", vip.id)
        update = await stream.event(timeout=1.0)
        assert by_name(update.json)["VIP"]["available"] == 18
        assert update.json == (await client.get(f"/events/{event.id}/availability")).json()


async def test_drafts_stream_only_for_their_organizer(
    app: FastAPI,
    client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    broadcaster: AvailabilityBroadcaster,
    organizer: Account,
    db: asyncpg.Connection,
) -> None:
    draft = await make_event(app, organizer.user, publish=False)
    customer = await make_account(app, client)

    for headers in (None, customer.headers):
        refused = await http.get(stream_path(draft.id), headers=headers)
        assert refused.status_code == 404
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "event_not_found"
    assert broadcaster.subscriber_count() == 0

    tier = (await tiers_of(app, draft.id))[0]
    async with open_stream(http, stream_path(draft.id), organizer.headers) as stream:
        assert by_name((await stream.event()).json)["Early Bird"]["available"] == 100
        await hold(db, tier.id, 3)
        assert by_name((await stream.event(timeout=1.0)).json)["Early Bird"]["available"] == 97


async def test_unknown_event_is_a_404_problem(
    client: httpx.AsyncClient, broadcaster: AvailabilityBroadcaster
) -> None:
    response = await client.get(stream_path(uuid.uuid4()))
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "event_not_found"
    assert (await client.get("/events/not-a-uuid/availability/stream")).status_code == 422
    assert broadcaster.subscriber_count() == 0


async def test_rapid_changes_are_coalesced_and_read_once_for_all_subscribers(
    app: FastAPI,
    http: httpx.AsyncClient,
    broadcaster: AvailabilityBroadcaster,
    organizer: Account,
    db: asyncpg.Connection,
) -> None:
    event = await make_event(app, organizer.user)
    tier = (await tiers_of(app, event.id))[0]  # Early Bird, 100
    path = stream_path(event.id)

    async with (
        open_stream(http, path) as a,
        open_stream(http, path) as b,
        open_stream(http, path) as c,
    ):
        streams = (a, b, c)
        for stream in streams:
            await stream.event()
        reads_before = broadcaster.snapshot_reads

        for _ in range(50):  # fifty separate commits, as fast as they go
            await hold(db, tier.id)

        for stream in streams:
            received = 0
            while True:
                update = await stream.event(timeout=2.0)
                received += 1
                if by_name(update.json)["Early Bird"]["available"] == 50:
                    break
            assert received <= 10, f"{received} events for 50 changes"
        reads = broadcaster.snapshot_reads - reads_before
        assert 1 <= reads <= 10, f"{reads} reads for 50 changes and 3 subscribers"


async def test_notifications_nobody_watches_cost_no_read(
    app: FastAPI, broadcaster: AvailabilityBroadcaster, organizer: Account, db: asyncpg.Connection
) -> None:
    event = await make_event(app, organizer.user)
    tier = (await tiers_of(app, event.id))[0]
    reads, notifications = broadcaster.snapshot_reads, broadcaster.notifications

    await hold(db, tier.id)
    await db.execute("SELECT pg_notify('tiketi_availability', 'not-an-event-id')")

    await eventually(lambda: broadcaster.notifications >= notifications + 2)
    await asyncio.sleep(0.1)
    assert broadcaster.snapshot_reads == reads


async def test_a_disconnected_client_is_unsubscribed(
    app: FastAPI, http: httpx.AsyncClient, broadcaster: AvailabilityBroadcaster, organizer: Account
) -> None:
    event = await make_event(app, organizer.user)
    async with open_stream(http, stream_path(event.id)) as stream:
        await stream.event()
        assert broadcaster.subscriber_count() == 1
    await eventually(lambda: broadcaster.subscriber_count() == 0)
    assert broadcaster.subscriber_count(event.id) == 0


async def test_heartbeats_keep_a_quiet_stream_alive(
    app: FastAPI, http: httpx.AsyncClient, broadcaster: AvailabilityBroadcaster, organizer: Account
) -> None:
    event = await make_event(app, organizer.user)
    async with open_stream(http, stream_path(event.id)) as stream:
        await stream.event()
        for _ in range(2):
            frame = await stream.frame(timeout=1.0)
            assert frame is not None
            assert frame.comment == "ping"
            assert frame.event is None and not frame.data


async def test_open_streams_hold_no_pooled_connection(
    app: FastAPI, http: httpx.AsyncClient, broadcaster: AvailabilityBroadcaster, organizer: Account
) -> None:
    public = await make_event(app, organizer.user)
    draft = await make_event(app, organizer.user, publish=False)
    async with (
        open_stream(http, stream_path(public.id)) as a,
        open_stream(http, stream_path(public.id), organizer.headers) as b,
        open_stream(http, stream_path(draft.id), organizer.headers) as c,
    ):
        for stream in (a, b, c):
            await stream.event()
        assert app.state.engine.pool.checkedout() == 0
        assert broadcaster.subscriber_count() == 3


async def test_the_subscriber_cap_answers_503(
    app: FastAPI,
    client: httpx.AsyncClient,
    broadcaster: AvailabilityBroadcaster,
    organizer: Account,
) -> None:
    event = await make_event(app, organizer.user)
    broadcaster.max_subscribers = 1
    taken = broadcaster.subscribe(event.id)
    try:
        response = await client.get(stream_path(event.id))
        assert response.status_code == 503
        assert response.json()["code"] == "too_many_streams"
        assert response.headers["retry-after"]
        assert broadcaster.subscriber_count() == 1
    finally:
        taken.close()
    assert broadcaster.subscriber_count() == 0


async def test_an_orphaned_subscription_is_released(
    app: FastAPI, broadcaster: AvailabilityBroadcaster, organizer: Account
) -> None:
    """A subscription whose response never ran (the request failed after its handler)."""
    event = await make_event(app, organizer.user)
    orphan = broadcaster.subscribe(event.id)
    orphan.attach_deadline = asyncio.get_running_loop().time()
    await eventually(lambda: orphan.closed and broadcaster.subscriber_count() == 0)


async def test_the_listener_reconnects_and_refreshes_every_stream(
    app: FastAPI,
    http: httpx.AsyncClient,
    broadcaster: AvailabilityBroadcaster,
    organizer: Account,
    db: asyncpg.Connection,
) -> None:
    event = await make_event(app, organizer.user)
    tier = (await tiers_of(app, event.id))[0]
    async with open_stream(http, stream_path(event.id)) as stream:
        await stream.event()
        terminated = await db.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database()",
            LISTENER_APPLICATION_NAME,
        )
        assert terminated == 1
        await hold(db, tier.id, 5)  # while nobody listens: this notification is lost
        update = await stream.event(timeout=3.0)
        assert by_name(update.json)["Early Bird"]["available"] == 95
        assert broadcaster.connects >= 2
        assert broadcaster.listening


async def test_a_failed_snapshot_read_is_retried(
    app: FastAPI,
    http: httpx.AsyncClient,
    broadcaster: AvailabilityBroadcaster,
    organizer: Account,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    event = await make_event(app, organizer.user)
    tier = (await tiers_of(app, event.id))[0]
    failures: list[uuid.UUID] = []
    read = live.read_availability

    async def flaky(session: object, event_id: uuid.UUID) -> object:
        if not failures:
            failures.append(event_id)
            raise ConnectionResetError("the database went away")
        return await read(session, event_id)  # type: ignore[arg-type]

    monkeypatch.setattr(live, "read_availability", flaky)
    async with open_stream(http, stream_path(event.id)) as stream:
        await stream.event()
        await hold(db, tier.id, 2)
        update = await stream.event(timeout=3.0)
        assert by_name(update.json)["Early Bird"]["available"] == 98
    assert failures == [event.id]


async def test_the_app_starts_while_the_database_is_down(app: FastAPI, settings: Settings) -> None:
    """The listener keeps retrying in the background; streams can subscribe meanwhile."""
    down = AvailabilityBroadcaster(
        "postgresql+asyncpg://tiketi@127.0.0.1:1/tiketi",
        app.state.sessionmaker,
        connect_timeout_seconds=1.0,
        reconnect_min_seconds=0.05,
        reconnect_max_seconds=0.1,
    )
    started = time.monotonic()
    await down.start()
    try:
        assert time.monotonic() - started < 2.5
        assert not down.listening
        subscription = down.subscribe(uuid.uuid4())
        assert down.subscriber_count() == 1
        await asyncio.sleep(0.3)  # a few failed attempts, no crash
        subscription.close()
    finally:
        await down.stop()
    assert down.subscriber_count() == 0


async def test_stopping_the_broadcaster_ends_open_streams(
    app: FastAPI, http: httpx.AsyncClient, broadcaster: AvailabilityBroadcaster, organizer: Account
) -> None:
    event = await make_event(app, organizer.user)
    async with open_stream(http, stream_path(event.id)) as stream:
        await stream.event()
        never_started = broadcaster.subscribe(event.id)
        await broadcaster.stop()
        await stream.ended(timeout=2.0)
    assert never_started.closed
    never_started.close()  # late unsubscribes after stop() change nothing
    assert broadcaster.subscriber_count() == 0
    assert not broadcaster.listening
    with pytest.raises(StreamsUnavailable):
        broadcaster.subscribe(event.id)


async def test_server_shutdown_does_not_wait_for_open_streams(
    app: FastAPI,
    http: httpx.AsyncClient,
    live_server: LiveServer,
    broadcaster: AvailabilityBroadcaster,
    organizer: Account,
) -> None:
    """uvicorn drains connections *before* the lifespan shutdown: streams must end on its
    exit signal, not after its graceful timeout (10 s here)."""
    event = await make_event(app, organizer.user)
    async with open_stream(http, stream_path(event.id)) as stream:
        await stream.event()
        started = time.monotonic()
        live_server.server.should_exit = True  # what SIGTERM/SIGINT does
        await stream.ended(timeout=3.0)
        async with asyncio.timeout(3.0):
            await live_server.task
        assert time.monotonic() - started < 3.0
    with pytest.raises(StreamsUnavailable):
        broadcaster.subscribe(event.id)


async def test_a_client_that_stops_reading_is_dropped(
    app: FastAPI,
    client: httpx.AsyncClient,
    broadcaster: AvailabilityBroadcaster,
    organizer: Account,
) -> None:
    """Driven as a raw ASGI call whose `send` never completes (a full TCP window)."""
    event = await make_event(app, organizer.user)
    current = (await client.get(f"/events/{event.id}/availability")).json()
    from tiketi.events.schemas import Availability

    broadcaster.send_timeout_seconds = 0.2
    subscription = broadcaster.subscribe(event.id)
    response = broadcaster.response(subscription, [Availability(**item) for item in current])
    stuck = asyncio.Event()

    async def receive() -> dict[str, object]:
        await stuck.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.body":
            await stuck.wait()

    async with asyncio.timeout(2.0):
        await response({"type": "http", "method": "GET"}, receive, send)  # type: ignore[arg-type]
    assert subscription.closed
    assert broadcaster.subscriber_count() == 0


async def test_a_deleted_event_ends_its_streams(
    app: FastAPI,
    client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    broadcaster: AvailabilityBroadcaster,
    organizer: Account,
    db: asyncpg.Connection,
) -> None:
    draft = await make_event(app, organizer.user, publish=False)
    async with open_stream(http, stream_path(draft.id), organizer.headers) as stream:
        await stream.event()
        deleted = await client.delete(f"/events/{draft.id}", headers=organizer.headers)
        assert deleted.status_code == 204
        await db.execute("SELECT pg_notify('tiketi_availability', $1)", str(draft.id))
        await stream.ended(timeout=2.0)
    await eventually(lambda: broadcaster.subscriber_count() == 0)


async def test_openapi_documents_the_stream(
    client: httpx.AsyncClient, broadcaster: AvailabilityBroadcaster
) -> None:
    schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"]["/events/{event_id}/availability/stream"]["get"]
    assert operation["operationId"] == "events-stream_availability"
    ok = operation["responses"]["200"]["content"]
    assert list(ok) == ["text/event-stream"]
    data = ok["text/event-stream"]["itemSchema"]["properties"]["data"]
    assert data["contentSchema"]["items"] == {"$ref": "#/components/schemas/Availability"}
    assert "Availability" in schema["components"]["schemas"]
    for status in ("401", "404", "422", "503"):
        assert list(operation["responses"][status]["content"]) == ["application/problem+json"]


@pytest.mark.process
async def test_a_stream_on_one_process_sees_changes_made_through_another(
    app: FastAPI,
    client: httpx.AsyncClient,
    database_url: str,
    organizer: Account,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    """A real API process streams; this test process changes inventory through its own API and
    through SQL. Then SIGTERM: the open stream must not hold the shutdown."""
    event = await make_event(app, organizer.user)
    early_bird, vip, _ = await tiers_of(app, event.id)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"DATABASE_URL": database_url, "TIKETI_ENV": "test", "JOBS_ENABLED": "false"}
    command = tiketi_command("serve", "--host", "127.0.0.1", "--port", str(port))
    log = tmp_path / "api.log"
    with running(command, env=env, log=log, base_url=base) as proc:
        async with (
            httpx.AsyncClient(base_url=base, timeout=5.0) as remote,
            open_stream(remote, stream_path(event.id)) as stream,
        ):
            assert by_name((await stream.event()).json)["VIP"]["available"] == 20

            started = time.monotonic()
            patched = await client.patch(
                f"/events/{event.id}/ticket-types/{vip.id}",
                json={"quantity": 30},
                headers=organizer.headers,
            )
            assert patched.status_code == 200
            update = await stream.event(timeout=1.0)
            assert time.monotonic() - started < 1.0
            assert by_name(update.json)["VIP"]["available"] == 30

            started = time.monotonic()
            await hold(db, early_bird.id, 4)
            update = await stream.event(timeout=1.0)
            assert time.monotonic() - started < 1.0
            assert by_name(update.json)["Early Bird"]["available"] == 96

            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            await stream.ended(timeout=5.0)
            async with asyncio.timeout(10):
                while proc.poll() is None:
                    await asyncio.sleep(0.05)
            # `tiketi serve` exits 0; bare uvicorn re-raises the SIGTERM it handled.
            assert proc.returncode in (0, -signal.SIGTERM), log.read_text()[-3000:]
            assert time.monotonic() - started < 5, log.read_text()[-3000:]


def test_frames_parse_as_json() -> None:
    """The reader's contract with the encoder: one `data:` line of compact JSON."""
    from tiketi.events.live import encode_snapshot
    from tiketi.events.schemas import Availability

    item = Availability(
        ticket_type_id=uuid.uuid4(), name="VIP", price=5000, quantity=20, available=3, on_sale=True
    )
    snapshot = encode_snapshot([item])
    lines = snapshot.chunk.decode().split("\n")
    assert lines[0] == f"id: {snapshot.tag}"
    assert lines[1] == "event: availability"
    assert json.loads(lines[2].removeprefix("data: "))[0]["available"] == 3
    assert lines[3:] == ["", ""]
    assert encode_snapshot([item]).tag == snapshot.tag


@pytest.mark.parametrize(
    ("url", "dsn"),
    [
        ("postgresql+asyncpg://u:p@db:5432/tiketi", "postgresql://u:p@db:5432/tiketi"),
        (
            "postgresql+asyncpg://u@db/tiketi?ssl=require&application_name=x",
            "postgresql://u@db/tiketi?sslmode=require&application_name=x",
        ),
        (
            "postgresql+asyncpg://postgres@/tiketi?host=%2Ftmp%2Fpg",
            "postgresql://postgres@/tiketi?host=%2Ftmp%2Fpg",
        ),
    ],
)
def test_the_listener_dsn_speaks_asyncpg(url: str, dsn: str) -> None:
    assert listener_dsn(url) == dsn
