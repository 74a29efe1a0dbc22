"""The whole purchase path over real HTTP: the API served by uvicorn, the Daraja simulator
served by uvicorn, callbacks travelling between them on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import make_settings
from tests.process.helpers import free_port
from tiketi.main import create_app
from tiketi.payments.mpesa.simulator import SimulatorApp, create_simulator_app, serve_in_background

CALLBACK_TOKEN = "test-callback-token-0123456789-abcdefghij"


@dataclass
class Stack:
    app: FastAPI
    api_url: str
    client: httpx.AsyncClient
    sim: SimulatorApp
    sim_url: str


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Stack]:
    sim = create_simulator_app(callback_delay=0.2)
    async with serve_in_background(sim) as sim_url:
        port = free_port()
        api_url = f"http://127.0.0.1:{port}"
        settings = make_settings(
            database_url,
            mpesa_base_url=sim_url,
            mpesa_callback_base_url=api_url,
            mpesa_callback_token=CALLBACK_TOKEN,
            mpesa_read_timeout_seconds=1.0,
            mpesa_total_timeout_seconds=2.0,
            payment_reconcile_after_seconds=1,
        )
        app = create_app(settings)
        async with (
            serve_in_background(app, port=port) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            yield Stack(app=app, api_url=url, client=client, sim=sim, sim_url=sim_url)


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
