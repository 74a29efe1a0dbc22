"""Scenario 1 — `GET /events/{id}` throughput against a raw Starlette + asyncpg endpoint.

Both servers run under uvicorn with the same worker count and answer the same JSON from the
same two statements (the raw app captures them from tiketi's EventRepository). The ratio is
therefore the price of the framework layers: FastAPI routing and dependency injection, the
request-scoped session (pool checkout with pre-ping, BEGIN/COMMIT), pydantic models, the
request middleware. Goal: tiketi ≥ 0.6x raw.
"""

from __future__ import annotations

import json
from typing import Any

from bench.core import Context, ScenarioResult, connect
from bench.http import fetch, render
from bench.infra import ApiConfig, scratch_name
from bench.scenarios.common import Measured, app_pool_per_process, measure_http, start_raw_app
from bench.seed import create_event, create_users
from bench.stats import median, ms, ratio

NAME = "event_read"
GOAL = 0.6
CONCURRENCY = 50


async def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(
        NAME,
        measures="GET /events/{id} (event + 3 tiers + availability), anonymous, keep-alive",
        figure_label="tiketi req/s",
        baseline_label="raw Starlette+asyncpg req/s",
    )
    database = scratch_name("event_read")
    dsn = await ctx.database(database)
    async with connect(dsn) as conn:
        (organizer,) = await create_users(conn, 1, prefix="organizer", role="organizer")
        event = await create_event(
            conn,
            organizer.id,
            title="Nairobi Jazz Festival",
            tiers=[
                ("Early Bird", 1500, 100, 10),
                ("VIP", 5000, 20, 4),
                ("Regular", 2500, 300, 10),
            ],
        )
    config = ApiConfig(database_url=ctx.server.url(database))
    api = await ctx.api(config, name=f"{NAME}-tiketi")
    raw = await start_raw_app(ctx, dsn=dsn, workers=ctx.workers, pool_size=app_pool_per_process())
    request = render("GET", f"/events/{event.id}")

    assert api.port is not None
    assert raw.port is not None
    ours = await fetch(api.port, request)
    theirs = await fetch(raw.port, request)
    if ours.status != 200 or theirs.status != 200:
        raise RuntimeError(f"GET /events/{{id}}: tiketi {ours.status}, raw {theirs.status}")
    same = json.loads(ours.body) == json.loads(theirs.body)
    result.details["same_json"] = same
    if not same:
        result.notes.append("the raw app's JSON differs from tiketi's (see details.json_diff)")
        result.details["json_diff"] = _diff(json.loads(ours.body), json.loads(theirs.body))

    rounds = ctx.pick(1, 3)
    seconds = ctx.pick(6.0, 15.0)
    warmup = ctx.pick(1.0, 3.0)
    tiketi_runs: list[Measured] = []
    raw_runs: list[Measured] = []
    for n in range(rounds):
        # Alternate the order, so neither side always runs on a warmer machine.
        order = [("tiketi", api), ("raw", raw)] if n % 2 == 0 else [("raw", raw), ("tiketi", api)]
        for side, process in order:
            measured = await measure_http(
                process,
                [request],
                concurrency=CONCURRENCY,
                total=10_000_000,
                max_seconds=seconds,
                warmup_seconds=warmup,
            )
            (tiketi_runs if side == "tiketi" else raw_runs).append(measured)
            ctx.log(
                f"  round {n + 1} {side:6}: {measured.load.throughput:8.0f} req/s  "
                f"p50 {ms(measured.load.latency().p50)} ms  "
                f"p99 {ms(measured.load.latency().p99)} ms  "
                f"(client CPU {measured.load.client_cpu_seconds / measured.load.wall_seconds:.0%}"
                f" of a core)"
            )

    tiketi_rps = median([m.load.throughput for m in tiketi_runs])
    raw_rps = median([m.load.throughput for m in raw_runs])
    result.figure, result.baseline = round(tiketi_rps, 1), round(raw_rps, 1)
    result.ratio = round(ratio(tiketi_rps, raw_rps), 3)
    tiketi_best = _median_run(tiketi_runs)
    raw_best = _median_run(raw_runs)
    result.details.update(
        {
            "rounds": rounds,
            "seconds_per_round": seconds,
            "concurrency": CONCURRENCY,
            "workers": ctx.workers,
            "tiketi": [m.summary() for m in tiketi_runs],
            "raw": [m.summary() for m in raw_runs],
            "tiketi_p50_ms": ms(tiketi_best.load.latency().p50),
            "tiketi_p99_ms": ms(tiketi_best.load.latency().p99),
            "raw_p50_ms": ms(raw_best.load.latency().p50),
            "raw_p99_ms": ms(raw_best.load.latency().p99),
            "tiketi_server_cpu_ms_per_request": _cpu_per_request(tiketi_runs),
            "raw_server_cpu_ms_per_request": _cpu_per_request(raw_runs),
        }
    )
    result.figure_text = (
        f"{tiketi_rps:,.0f} req/s (p50 {ms(tiketi_best.load.latency().p50)} / "
        f"p99 {ms(tiketi_best.load.latency().p99)} ms)"
    )
    result.baseline_text = (
        f"{raw_rps:,.0f} req/s (p50 {ms(raw_best.load.latency().p50)} / "
        f"p99 {ms(raw_best.load.latency().p99)} ms)"
    )
    result.client_cpu = _client_cpu(tiketi_runs + raw_runs)
    errors = sum(m.load.server_errors + sum(m.load.errors.values()) for m in tiketi_runs)
    non_200 = sum(m.load.completed - m.load.statuses.get(200, 0) for m in tiketi_runs)
    result.details["tiketi_non_200"] = non_200
    result.goal(f"tiketi ≥ {GOAL}x raw", result.ratio >= GOAL)
    result.goal("no errors", errors == 0 and non_200 == 0)
    return result


def _median_run(runs: list[Measured]) -> Measured:
    ordered = sorted(runs, key=lambda m: m.load.throughput)
    return ordered[len(ordered) // 2]


def _client_cpu(runs: list[Measured]) -> str:
    shares = [m.load.client_cpu_seconds / m.load.wall_seconds for m in runs if m.load.wall_seconds]
    return f"{min(shares):.0%}-{max(shares):.0%} of a core" if shares else ""


def _cpu_per_request(runs: list[Measured]) -> float:
    cpu = sum(m.cpu.server_cpu for m in runs)
    done = sum(m.load.completed for m in runs)
    return round(cpu / done * 1000, 3) if done else 0.0


def _diff(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    keys = set(ours) | set(theirs)
    return {k: [ours.get(k), theirs.get(k)] for k in sorted(keys) if ours.get(k) != theirs.get(k)}
