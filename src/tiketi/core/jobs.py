"""Background jobs: run in every API process (and alone in `tiketi worker`).

Each job is one short transaction over rows claimed with `FOR UPDATE SKIP LOCKED`, so any
number of processes may run them at once without doing the same work twice, and nothing is
lost by a restart: the state lives in the tables, not in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

logger = logging.getLogger("tiketi.jobs")

Sessions = async_sessionmaker[AsyncSession]
# A job gets the sessionmaker and opens its own short transactions: a job that calls out to
# another system (Daraja) must not hold a database transaction open while it waits.
JobFn = Callable[[Sessions], Awaitable[int]]


def transactional(work: Callable[[AsyncSession], Awaitable[int]]) -> JobFn:
    """A job that is one transaction."""

    async def run(sessions: Sessions) -> int:
        async with sessions() as session, session.begin():
            return await work(session)

    return run


@dataclass(frozen=True)
class Job:
    name: str
    run: JobFn
    # Run again at once while a batch came back full (a backlog), up to this many times.
    max_batches_per_tick: int = 20
    batch_size: int | None = None


class JobRunner:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        jobs: Sequence[Job],
        *,
        interval: float,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.jobs = list(jobs)
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def run_once(self) -> dict[str, int]:
        """Run every job until its backlog is drained (bounded); returns rows handled per job."""
        done: dict[str, int] = {}
        for job in self.jobs:
            total = 0
            for _ in range(job.max_batches_per_tick):
                try:
                    handled = await job.run(self.sessionmaker)
                except Exception:
                    logger.exception("job failed", extra={"job": job.name})
                    break
                total += handled
                if job.batch_size is None or handled < job.batch_size:
                    break
            done[job.name] = total
            if total:
                logger.info("job ran", extra={"job": job.name, "rows": total})
        return done

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            await self.run_once()
            # Jitter keeps many processes from waking in lockstep.
            delay = self.interval * random.uniform(0.8, 1.2)  # noqa: S311 - not security
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="tiketi-jobs")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=10)
            self._task = None

    async def run_forever(self) -> None:
        self.start()
        assert self._task is not None
        await self._task
