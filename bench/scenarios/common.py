"""Helpers shared by scenarios: timed HTTP load with CPU accounting, the raw baseline app."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.core import Context
from bench.http import LoadResult, OnResponse, run_load
from bench.infra import (
    ROOT,
    CpuWindow,
    Process,
    clean_environment,
    free_port,
    process_tree,
    start_process,
    wait_http,
)


@dataclass
class Measured:
    load: LoadResult
    cpu: CpuWindow

    def summary(self) -> dict[str, Any]:
        return {**self.load.summary(), **self.cpu.summary(self.load.wall_seconds)}


async def measure_http(
    process: Process,
    requests: Sequence[bytes] | Callable[[int], bytes],
    *,
    concurrency: int,
    total: int,
    max_seconds: float,
    warmup_seconds: float = 0.0,
    on_response: OnResponse | None = None,
) -> Measured:
    """A warm-up (discarded), then the measured run with the server's and the machine's CPU."""
    assert process.port is not None
    if warmup_seconds > 0:
        await run_load(
            process.port,
            requests,
            concurrency=concurrency,
            total=total,
            max_seconds=warmup_seconds,
        )
    cpu = CpuWindow(process_tree(process.pid)).start()
    load = await run_load(
        process.port,
        requests,
        concurrency=concurrency,
        total=total,
        max_seconds=max_seconds,
        on_response=on_response,
    )
    cpu.stop()
    return Measured(load, cpu)


async def start_raw_app(ctx: Context, *, dsn: str, workers: int, pool_size: int) -> Process:
    """bench/raw_app.py under uvicorn, configured like `tiketi serve` (uvloop, httptools,
    same worker count, warnings only, no access log)."""
    port = free_port()
    env = clean_environment(
        {
            "BENCH_RAW_DSN": dsn,
            "BENCH_RAW_POOL": str(pool_size),
            "PYTHONPATH": str(ROOT),
        }
    )
    process = start_process(
        "event_read-raw",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.raw_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        port=port,
    )
    ctx.stack.push_async_callback(process.stop)
    await wait_http(process, "/health/live")
    return process


def app_pool_per_process() -> int:
    """Connections one API process may open: DB_POOL_SIZE + DB_MAX_OVERFLOW (defaults)."""
    from tiketi.core.settings import Settings

    fields = Settings.model_fields
    return int(fields["db_pool_size"].default) + int(fields["db_max_overflow"].default)
