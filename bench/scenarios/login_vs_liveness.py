"""Scenario 4 — does a storm of sign-ins starve the event loop?

A liveness probe (one connection, one `GET /health/live` every 20 ms, like an orchestrator's
probe but denser) runs first against the idle server, then while 20 clients sign in
continuously (`POST /auth/token`, OAuth2 form, valid credentials) for ~15 s. Argon2id costs
tens of milliseconds of CPU per sign-in; it runs in worker threads, so the loop should keep
answering. Goal: the probe's p99 under the storm stays within 3x its idle p99.

Also reported: sign-ins per second, and the argon2 cost per sign-in measured in this process
(`tiketi.core.security.hash_password` / `verify_password`), which bounds the sign-in rate at
about cores / verify time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.core import Context, ScenarioResult, connect
from bench.http import Connection, LoadResult, render, run_load
from bench.infra import ApiConfig, CpuWindow, process_tree, scratch_name
from bench.seed import PASSWORD, create_users
from bench.stats import ms, summarize

NAME = "login_vs_liveness"
LOGIN_CLIENTS = 20
PROBE_INTERVAL = 0.02
GOAL_FACTOR = 3.0


async def probe(port: int, seconds: float) -> list[float]:
    """Sequential liveness requests at a fixed pace; their latencies."""
    connection = Connection(port)
    await connection.open()
    request = render("GET", "/health/live")
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        async with asyncio.timeout(seconds + 30):
            while loop.time() < deadline:
                started = time.perf_counter()
                response = await connection.request(request)
                elapsed = time.perf_counter() - started
                if response.status == 200:
                    latencies.append(elapsed)
                await asyncio.sleep(max(0.0, PROBE_INTERVAL - elapsed))
    finally:
        await connection.close()
    return latencies


async def hash_costs(samples: int) -> dict[str, float]:
    from tiketi.core.security import hash_password, verify_password

    hashed = await hash_password(PASSWORD)
    t0 = time.perf_counter()
    for _ in range(samples):
        await hash_password(PASSWORD)
    t1 = time.perf_counter()
    for _ in range(samples):
        await verify_password(PASSWORD, hashed)
    t2 = time.perf_counter()
    return {
        "hash_ms": round((t1 - t0) / samples * 1000, 2),
        "verify_ms": round((t2 - t1) / samples * 1000, 2),
    }


async def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(
        NAME,
        measures=(
            f"GET /health/live p99 while {LOGIN_CLIENTS} clients sign in continuously, vs idle"
        ),
        figure_label="liveness p99 under sign-in load",
        baseline_label="liveness p99 idle",
    )
    costs = await hash_costs(ctx.pick(10, 20))
    database = scratch_name("login")
    dsn = await ctx.database(database)
    async with connect(dsn) as conn:
        accounts = await create_users(conn, LOGIN_CLIENTS, prefix="signin")
    config = ApiConfig(database_url=ctx.server.url(database))
    api = await ctx.api(config, name=f"{NAME}-tiketi")
    assert api.port is not None

    idle_seconds = ctx.pick(5.0, 10.0)
    storm_seconds = 15.0
    idle = await probe(api.port, idle_seconds)

    requests = [
        render("POST", "/auth/token", form={"username": a.email, "password": PASSWORD})
        for a in accounts
    ]
    cpu = CpuWindow(process_tree(api.pid)).start()
    storm_task = asyncio.create_task(
        run_load(
            api.port,
            requests,
            concurrency=LOGIN_CLIENTS,
            total=100_000,
            max_seconds=storm_seconds + 1.0,
        )
    )
    await asyncio.sleep(1.0)  # let the storm build up before probing
    busy = await probe(api.port, storm_seconds - 1.0)
    storm: LoadResult = await storm_task
    cpu.stop()

    idle_latency, busy_latency = summarize(idle), summarize(busy)
    factor = busy_latency.p99 / idle_latency.p99 if idle_latency.p99 else float("nan")
    logins_per_s = storm.statuses.get(200, 0) / storm.wall_seconds
    result.figure = ms(busy_latency.p99)
    result.baseline = ms(idle_latency.p99)
    result.ratio = round(factor, 2)
    result.figure_text = (
        f"p99 {ms(busy_latency.p99)} ms (p50 {ms(busy_latency.p50)} ms) under "
        f"{logins_per_s:.1f} sign-ins/s (p50 {ms(storm.latency().p50)} / "
        f"p99 {ms(storm.latency().p99)} ms)"
    )
    result.baseline_text = (
        f"idle p99 {ms(idle_latency.p99)} ms (p50 {ms(idle_latency.p50)} ms); argon2 "
        f"verify {costs['verify_ms']} ms, hash {costs['hash_ms']} ms per call"
    )
    result.client_cpu = (
        f"{storm.client_cpu_seconds / storm.wall_seconds:.0%} of a core (storm + probe)"
    )
    non_200 = storm.completed - storm.statuses.get(200, 0)
    details: dict[str, Any] = {
        "login_clients": LOGIN_CLIENTS,
        "probe_interval_ms": PROBE_INTERVAL * 1000,
        "idle_probe_ms": idle_latency.as_ms(),
        "busy_probe_ms": busy_latency.as_ms(),
        "p99_factor": result.ratio,
        "logins": storm.summary(),
        "logins_per_s": round(logins_per_s, 1),
        "login_non_200": non_200,
        "argon2_in_process": costs,
        "server": cpu.summary(storm.wall_seconds),
        "server_cpu_ms_per_login": round(cpu.server_cpu / max(1, storm.completed) * 1000, 1),
    }
    result.details.update(details)
    result.goal(f"liveness p99 ≤ {GOAL_FACTOR:.0f}x idle", factor <= GOAL_FACTOR)
    result.goal("every sign-in 200", non_200 == 0 and not storm.errors)
    return result
