"""What a scenario gets (a context) and gives back (a result)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import asyncpg

from bench.infra import ApiConfig, DatabaseServer, Process, start_api

T = TypeVar("T")


@dataclass
class Goal:
    text: str
    met: bool | None  # None: not measured


@dataclass
class ScenarioResult:
    name: str
    status: str = "ok"  # ok | skipped | failed
    measures: str = ""
    figure_label: str = ""
    figure: float | None = None
    baseline_label: str = ""
    baseline: float | None = None
    ratio: float | None = None
    figure_text: str = ""  # the table cell: the figure with its latencies
    baseline_text: str = ""
    client_cpu: str = ""  # what the load generator itself used while measuring
    goals: list[Goal] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def goal(self, text: str, met: bool | None) -> None:
        self.goals.append(Goal(text, met))

    @property
    def goals_met(self) -> bool | None:
        measured = [g.met for g in self.goals if g.met is not None]
        if self.status != "ok" or not measured:
            return None
        return all(measured)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["goals_met"] = self.goals_met
        cleaned: dict[str, Any] = _finite(data)
        return cleaned


def _finite(value: Any) -> Any:
    """JSON has no NaN: unmeasurable numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@dataclass
class Context:
    """Shared by the scenarios of one run; `stack` belongs to the running scenario."""

    quick: bool
    workers: int
    server: DatabaseServer
    template: str
    stack: contextlib.AsyncExitStack
    log: Callable[[str], None]
    src: str | None = None  # --src: the tiketi package the API servers import

    def pick(self, quick: T, full: T) -> T:
        return quick if self.quick else full

    async def database(self, name: str) -> str:
        """A fresh copy of the migrated template, dropped when the scenario ends; its DSN."""
        await self.server.create(name, template=self.template)
        self.stack.push_async_callback(self.server.drop, name)
        return self.server.dsn(name)

    async def api(
        self, config: ApiConfig, *, name: str, workers: int | None = None, **env: str
    ) -> Process:
        return await start_api(
            self.stack, config, name=name, workers=workers or self.workers, src=self.src, **env
        )


@contextlib.asynccontextmanager
async def connect(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn, server_settings={"application_name": "tiketi-bench"})
    try:
        yield conn
    finally:
        await conn.close()


Scenario = Callable[[Context], Awaitable[ScenarioResult]]


async def checkpoint(dsn: str) -> None:
    """Start a timed phase with the WAL flushed. Seeding (above all the search catalogue) and
    earlier phases write enough WAL to force a checkpoint (`max_wal_size`) in the middle of the
    next phase otherwise, and its writes slow whichever side is being measured then: it
    stalled commits on both sides of the callback scenario for 0.2-0.5 s, and in a full run
    the side measured right after the catalogue was built."""
    async with connect(dsn) as conn:
        await conn.execute("CHECKPOINT")
