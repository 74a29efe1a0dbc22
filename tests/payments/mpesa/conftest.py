"""Real-HTTP harness for the M-Pesa tests.

One simulator and one callback receiver, each served by uvicorn on a free 127.0.0.1 port in
the session's event loop, are shared by all tests (starting and stopping servers per test
costs more than the tests). Isolation comes from a full simulator reset before each test and
a fresh callback token per test: a test only ever sees the callbacks sent to its own URL.
Tests that need a differently built simulator start their own with `start_simulator`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tiketi.payments.mpesa.client import DarajaClient, DarajaTimeouts
from tiketi.payments.mpesa.schemas import CALLBACK_ACK
from tiketi.payments.mpesa.simulator import (
    PendingStyle,
    SimulatorApp,
    create_simulator_app,
    serve_in_background,
    simulator_client_config,
)

CALLBACK_DELAY = 0.05
FAST_TIMEOUTS = DarajaTimeouts(connect=1.0, read=2.0, write=1.0, pool=1.0, total=4.0)
CALLBACK_PATH = "/payments/callbacks/stk/"


@dataclass
class ReceivedCallback:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class CallbackServer:
    """Plays our API's callback route: records every POST and acknowledges like Daraja wants."""

    base_url: str = ""
    received: list[ReceivedCallback] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: Request) -> Response:
        self.received.append(
            ReceivedCallback(request.url.path, dict(request.headers), await request.body())
        )
        self.arrived.set()
        return JSONResponse(CALLBACK_ACK)

    def app(self) -> Starlette:
        return Starlette(routes=[Route(CALLBACK_PATH + "{token}", self.handle, methods=["POST"])])


@dataclass
class CallbackReceiver:
    """One test's view of the callback server: its own URL, its own callbacks."""

    server: CallbackServer
    token: str = field(default_factory=lambda: secrets.token_urlsafe(12))

    @property
    def callback_url(self) -> str:
        return f"{self.server.base_url}{CALLBACK_PATH}{self.token}"

    @property
    def received(self) -> list[ReceivedCallback]:
        path = CALLBACK_PATH + self.token
        return [c for c in self.server.received if c.path == path]

    async def wait_for(self, count: int, *, within_seconds: float = 3.0) -> list[ReceivedCallback]:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_seconds):
                while len(self.received) < count:
                    self.server.arrived.clear()
                    await self.server.arrived.wait()
        return self.received


@dataclass
class RunningSimulator:
    app: SimulatorApp
    base_url: str


SimulatorFactory = Callable[..., Awaitable[RunningSimulator]]


@pytest.fixture(scope="session")
async def callback_server() -> AsyncIterator[CallbackServer]:
    server = CallbackServer()
    async with serve_in_background(server.app()) as base_url:
        server.base_url = base_url
        yield server


@pytest.fixture
def receiver(callback_server: CallbackServer) -> CallbackReceiver:
    return CallbackReceiver(callback_server)


@pytest.fixture(scope="session")
async def shared_simulator() -> AsyncIterator[RunningSimulator]:
    app = create_simulator_app(callback_delay=CALLBACK_DELAY)
    async with serve_in_background(app) as base_url:
        yield RunningSimulator(app, base_url)


@pytest.fixture
def sim(shared_simulator: RunningSimulator) -> RunningSimulator:
    simulator = shared_simulator.app.simulator
    simulator.reset(full=True)
    simulator.behaviour.callback_delay = CALLBACK_DELAY
    simulator.behaviour.query_pending_style = "4999"
    return shared_simulator


@pytest.fixture
async def start_simulator() -> AsyncIterator[SimulatorFactory]:
    """Start simulators with custom construction; all of them stop at the end of the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            *,
            callback_delay: float = CALLBACK_DELAY,
            query_pending_style: PendingStyle = "4999",
            **kwargs: Any,
        ) -> RunningSimulator:
            app = create_simulator_app(
                callback_delay=callback_delay, query_pending_style=query_pending_style, **kwargs
            )
            base_url = await stack.enter_async_context(serve_in_background(app))
            return RunningSimulator(app, base_url)

        yield start


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # One client for the whole run, as in production (one per process): creating one loads
    # the CA bundle, which costs more than most of these tests.
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def daraja(sim: RunningSimulator, http: httpx.AsyncClient) -> DarajaClient:
    return DarajaClient(http, simulator_client_config(sim.base_url, timeouts=FAST_TIMEOUTS))
