"""How each way of not reaching PostgreSQL is answered: always a quick 503 problem, never a 500.

Deterministic companions of the restart test: each failure is produced on purpose (a closed
port, a missing socket, a server that refuses new sessions the way PostgreSQL does while it
shuts down or starts up) against the in-process app.
"""

from __future__ import annotations

import asyncio
import struct
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from tests.process.helpers import free_port
from tiketi.main import create_app

pytestmark = pytest.mark.fault

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


def _error_response(sqlstate: str, message: str) -> bytes:
    fields = b"".join(
        kind + value.encode() + b"\0"
        for kind, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


async def _refuse_sessions(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Speak just enough of the protocol to refuse the session like a postmaster that is
    shutting down: decline SSL/GSS, then FATAL 57P03 to the startup message."""
    try:
        while True:
            (length,) = struct.unpack("!i", await reader.readexactly(4))
            payload = await reader.readexactly(length - 4)
            (code,) = struct.unpack("!i", payload[:4])
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                writer.write(b"N")
                await writer.drain()
                continue
            writer.write(_error_response("57P03", "the database system is shutting down"))
            await writer.drain()
            return
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        writer.close()


@pytest.fixture
async def shutting_down_server() -> AsyncIterator[str]:
    server = await asyncio.start_server(_refuse_sessions, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"postgresql+asyncpg://tiketi@127.0.0.1:{port}/tiketi"


async def _get_event(database_url: str) -> tuple[httpx.Response, float]:
    app = create_app(make_settings(database_url, db_connect_timeout_seconds=2.0))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            started = time.monotonic()
            response = await client.get(f"/events/{uuid.uuid4()}")
            return response, time.monotonic() - started


def _assert_unavailable(response: httpx.Response, seconds: float) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "database_unavailable"
    assert response.headers["retry-after"]
    assert seconds < 3.0


async def test_a_refused_tcp_connection_answers_503() -> None:
    response, seconds = await _get_event(f"postgresql+asyncpg://tiketi@127.0.0.1:{free_port()}/x")
    _assert_unavailable(response, seconds)


async def test_a_server_refusing_new_sessions_answers_503(shutting_down_server: str) -> None:
    response, seconds = await _get_event(shutting_down_server)
    _assert_unavailable(response, seconds)


async def test_a_missing_unix_socket_answers_503(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://postgres@/tiketi?host={tmp_path / 'no-server-here'}"
    response, seconds = await _get_event(url)
    _assert_unavailable(response, seconds)
