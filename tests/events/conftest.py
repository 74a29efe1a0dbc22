"""Wiring for the live availability tests: the stream route, a broadcaster with short timers, a
real uvicorn server on loopback (httpx's ASGI transport buffers whole responses, so streams need
a real server) and a small SSE reader."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from tests.process.helpers import free_port
from tiketi.core.settings import Settings
from tiketi.events.live import AvailabilityBroadcaster


@pytest.fixture
async def broadcaster(app: FastAPI, settings: Settings) -> AsyncIterator[AvailabilityBroadcaster]:
    """The app's broadcaster, replaced by one with test-sized timers."""
    existing: AvailabilityBroadcaster | None = getattr(app.state, "availability", None)
    if existing is not None:
        await existing.stop()
    live = AvailabilityBroadcaster.from_settings(
        settings,
        app.state.sessionmaker,
        heartbeat_seconds=0.2,
        coalesce_seconds=0.05,
        send_timeout_seconds=2.0,
        keepalive_seconds=1.0,
        reconnect_min_seconds=0.2,
        reconnect_max_seconds=1.0,
    )
    await live.start()
    assert live.listening
    app.state.availability = live
    try:
        yield live
    finally:
        await live.stop()


@dataclass
class LiveServer:
    base_url: str
    server: uvicorn.Server
    task: asyncio.Task[None]


@pytest.fixture
async def live_server(
    app: FastAPI, broadcaster: AvailabilityBroadcaster
) -> AsyncIterator[LiveServer]:
    """uvicorn (httptools, like `tiketi serve`) serving the test app on a loopback port."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",  # the `app` fixture runs the lifespan
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", server, task)
    finally:
        server.should_exit = True
        async with asyncio.timeout(15):
            await task


@pytest.fixture
async def http(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=5.0) as client:
        yield client


@dataclass
class Frame:
    """One SSE block: fields of an event, or a comment (a heartbeat)."""

    event: str | None = None
    id: str | None = None
    retry: int | None = None
    data: list[str] = field(default_factory=list)
    comment: str | None = None

    @property
    def json(self) -> Any:
        return json.loads("\n".join(self.data))


class EventStream:
    """Reads an SSE response in a background task, so timeouts never break the stream."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.frames: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._pump = asyncio.create_task(self._read())

    async def _read(self) -> None:
        frame = Frame()
        try:
            async for line in self.response.aiter_lines():
                if line == "":
                    self.frames.put_nowait(frame)
                    frame = Frame()
                elif line.startswith(":"):
                    frame.comment = line[1:].strip()
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "event":
                        frame.event = value
                    elif name == "id":
                        frame.id = value
                    elif name == "retry":
                        frame.retry = int(value)
                    elif name == "data":
                        frame.data.append(value)
        except httpx.HTTPError:
            pass
        finally:
            self.frames.put_nowait(None)

    async def frame(self, timeout: float = 2.0) -> Frame | None:
        """The next block (None once the stream ended)."""
        async with asyncio.timeout(timeout):
            return await self.frames.get()

    async def event(self, timeout: float = 2.0) -> Frame:
        """The next event, skipping heartbeats."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.frames.get()
                assert frame is not None, "the stream ended"
                if frame.comment is None:
                    return frame

    async def ended(self, timeout: float = 2.0) -> None:
        async with asyncio.timeout(timeout):
            while await self.frames.get() is not None:
                pass

    async def aclose(self) -> None:
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None
) -> AsyncIterator[EventStream]:
    async with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        stream = EventStream(response)
        try:
            yield stream
        finally:
            await stream.aclose()
