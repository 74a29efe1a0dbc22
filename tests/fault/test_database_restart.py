"""PostgreSQL restarts under load: the API answers 503 fast while it is down and recovers by
itself (same process, no restart) once it is back.

Runs on a private PostgreSQL started for the test, never on the shared test server.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import make_settings
from tests.factories import make_buyers, make_event, make_user, tiers_of
from tests.fault.private_pg import PrivatePostgres
from tests.fault.servers import Processes, serve_env
from tests.fault.waits import until
from tiketi.core.embedded import ensure_database, to_asyncpg_dsn
from tiketi.core.migrations import upgrade_to_head
from tiketi.main import create_app
from tiketi.users.models import Role

pytestmark = [pytest.mark.fault, pytest.mark.process]

CONNECT_TIMEOUT = 2.0
POOL_SIZE = 2
MAX_OVERFLOW = 2
# "Fast": the connect timeout plus a margin for the request itself on a loaded machine; a
# hang is far beyond this (the client gives up after 15 s, a statement after 15 s).
FAIL_FAST_SECONDS = CONNECT_TIMEOUT + 3.0
# Every step waits for what it needs to see, never for a fixed time: traffic before the
# outage, this many 503s in each phase of it, this many successes in a row after it.
WARM_CALLS = 30
CALLS_PER_PHASE = 6
RECOVERED_STREAK = 30


@dataclass
class Call:
    kind: str
    started: float
    ended: float
    status: int | None
    content_type: str = ""
    code: str | None = None
    error: str | None = None

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class Seeded:
    event_id: str
    tier_id: str
    buyers: list[dict[str, str]]


@pytest.fixture(
    params=[
        pytest.param("tcp"),
        pytest.param("unix"),
    ]
)
def private_pg(request: pytest.FixtureRequest, pg_home: Path) -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(pg_home / "pg", tcp=request.param == "tcp")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def private_url(private_pg: PrivatePostgres) -> str:
    await ensure_database(private_pg.url("postgres"), "tiketi")
    url = private_pg.url("tiketi")
    await asyncio.to_thread(upgrade_to_head, url)
    return url


async def _seed(url: str) -> Seeded:
    app = create_app(make_settings(url))
    async with app.router.lifespan_context(app):
        organizer = await make_user(app, role=Role.organizer)
        event = await make_event(
            app, organizer, tiers=[{"name": "Regular", "price": 500, "quantity": 10_000}]
        )
        tier_id = str((await tiers_of(app, event.id))[0].id)
        buyers = [headers for _, headers in await make_buyers(app, 120)]
    return Seeded(str(event.id), tier_id, buyers)


async def _load(
    client: httpx.AsyncClient,
    seeded: Seeded,
    calls: list[Call],
    stop: asyncio.Event,
) -> None:
    """Steady traffic: a public read, an authenticated read and a write, round robin."""
    buyers = itertools.cycle(seeded.buyers)
    kinds = itertools.cycle(["event", "orders", "hold"])
    while not stop.is_set():
        kind = next(kinds)
        started = time.monotonic()
        try:
            if kind == "event":
                response = await client.get(f"/events/{seeded.event_id}")
            elif kind == "orders":
                response = await client.get("/orders", headers=next(buyers))
            else:
                body = {
                    "event_id": seeded.event_id,
                    "items": [{"ticket_type_id": seeded.tier_id, "quantity": 1}],
                }
                response = await client.post("/orders", json=body, headers=next(buyers))
        except httpx.HTTPError as exc:
            calls.append(Call(kind, started, time.monotonic(), None, error=repr(exc)))
        else:
            content_type = response.headers.get("content-type", "")
            code = response.json().get("code") if "json" in content_type else None
            code = code if response.status_code >= 400 else None
            calls.append(
                Call(kind, started, time.monotonic(), response.status_code, content_type, code)
            )
        await asyncio.sleep(0.05)


def _describe(calls: list[Call]) -> list[tuple[str, float, int | None, str | None, str | None]]:
    return [(c.kind, round(c.seconds, 2), c.status, c.code, c.error) for c in calls]


def _refused_since(calls: list[Call], moment: float) -> int:
    return sum(1 for c in calls if c.started >= moment and c.status == 503)


def _streak_since(calls: list[Call], moment: float) -> int:
    """Successes in a row at the end of the traffic started after `moment` (in end order)."""
    streak = 0
    for call in reversed(calls):
        if call.started < moment or call.status not in (200, 201):
            break
        streak += 1
    return streak


async def _refuses_new_sessions(url: str) -> bool:
    """True once the server answers a new session with 57P03 (shutting down)."""
    try:
        conn = await asyncpg.connect(to_asyncpg_dsn(url), timeout=CONNECT_TIMEOUT)
    except asyncpg.CannotConnectNowError:
        return True
    await conn.close()
    return False


async def _no_session_of_the_api(admin: asyncpg.Connection) -> bool:
    """End the API's sessions (waiting for each to exit); true once there was none left."""
    ended = await admin.fetch(
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
        " WHERE application_name LIKE 'tiketi%'"
    )
    return not ended


async def test_the_api_survives_a_database_restart(
    private_pg: PrivatePostgres, private_url: str, processes: Processes
) -> None:
    seeded = await _seed(private_url)
    # A small pool: under this load every connection has been used when the database dies.
    env = serve_env(
        private_url,
        db_connect_timeout_seconds=CONNECT_TIMEOUT,
        db_pool_timeout_seconds=CONNECT_TIMEOUT,
        db_pool_size=POOL_SIZE,
        db_max_overflow=MAX_OVERFLOW,
        max_pending_orders_per_user=10,
        # Every call must reach the database: an anonymous event page served from the
        # per-process cache (up to a second old) would answer 200 through the outage.
        public_cache_seconds=0,
    )
    api = processes.api("api", env)
    await asyncio.to_thread(api.start)
    pid = api.pid

    calls: list[Call] = []
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=api.base_url, timeout=15) as client:
        workers = [asyncio.create_task(_load(client, seeded, calls, stop)) for _ in range(3)]
        try:
            await until(lambda: len(calls) >= WARM_CALLS, "traffic before the outage")
            assert all(c.status in (200, 201) for c in calls), _describe(calls)

            # The shutdown as a managed database does it: new sessions are refused while the
            # open ones are ended (here: the API's, at once), then the server stops.
            admin = await asyncpg.connect(to_asyncpg_dsn(private_url))
            try:
                await asyncio.to_thread(private_pg.begin_smart_shutdown)
                await until(lambda: _refuses_new_sessions(private_url), "57P03 for new sessions")
                await until(lambda: _no_session_of_the_api(admin), "the API's sessions ended")
                # From here the API has no session and cannot open one: the outage has begun.
                down_at = time.monotonic()
                await until(
                    lambda: _refused_since(calls, down_at) >= CALLS_PER_PHASE,
                    "503s while new sessions are refused",
                    describe=lambda: _describe(calls[-10:]),
                )
            finally:
                await asyncio.to_thread(private_pg.stop)
                admin.terminate()
            stopped_at = time.monotonic()
            await until(
                lambda: _refused_since(calls, stopped_at) >= CALLS_PER_PHASE,
                "503s while the server is stopped",
                describe=lambda: _describe(calls[-10:]),
            )
            async with httpx.AsyncClient(base_url=api.base_url, timeout=15) as probe:
                live = await probe.get("/health/live")
                ready = await probe.get("/health/ready")
            restart_at = time.monotonic()
            await asyncio.to_thread(private_pg.start)
            up_at = time.monotonic()  # accepting sessions again (pg_ctl -w returned)

            await until(
                lambda: _streak_since(calls, up_at) >= RECOVERED_STREAK,
                f"{RECOVERED_STREAK} successes in a row after the restart",
                describe=lambda: _describe([c for c in calls if c.started >= up_at][-10:]),
            )
        finally:
            stop.set()
            async with asyncio.timeout(60):
                await asyncio.gather(*workers)

    assert api.running() and api.pid == pid, "the API process did not survive"
    assert live.status_code == 200, "liveness must not depend on the database"
    assert ready.status_code == 503, ready.text

    # Never a 500, never a hang, never a dropped connection: while the database is away
    # every request is a quick 503 problem.
    assert not [c for c in calls if c.status is None], _describe(calls)
    assert not [c for c in calls if c.status == 500], api.tail()
    slow = [c for c in calls if c.seconds > FAIL_FAST_SECONDS]
    assert not slow, _describe(slow)
    failed = [c for c in calls if c.status not in (200, 201)]
    assert failed, "no request failed while the database was down"
    for call in failed:
        assert call.status == 503, _describe([call])
        assert call.content_type.startswith("application/problem+json"), call.content_type
        assert call.code == "database_unavailable", _describe([call])
    # The outage: from the moment the API had no session and could open none, until the
    # restart was asked for (pg_ctl only notices the server is up a little after it is:
    # requests in between may already succeed, so they belong to no window).
    during = [c for c in calls if down_at <= c.started and c.ended <= restart_at]
    assert len(during) >= 2 * CALLS_PER_PHASE, _describe(during)
    assert all(c.status == 503 for c in during), _describe(during)

    # Recovered by itself, in the same process: at most the requests that drew a connection
    # opened before the outage (one per pool slot) may still fail after the restart; then
    # every request succeeds (RECOVERED_STREAK in a row, waited for above).
    after = [c for c in calls if c.started >= up_at]
    stale = [c for c in after if c.status == 503]
    assert len(stale) <= POOL_SIZE + MAX_OVERFLOW, _describe(after)
    async with httpx.AsyncClient(base_url=api.base_url, timeout=15) as client:
        assert (await client.get("/health/ready")).status_code == 200
