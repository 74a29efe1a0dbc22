from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from tiketi.core.migrations import head_revisions, known_revisions
from tiketi.health.repository import HealthRepository

READY_TIMEOUT_SECONDS = 3.0


@dataclass
class ReadinessReport:
    status: str
    database: str
    migrations: str


class HealthService:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def readiness(self) -> ReadinessReport:
        """Ready means: the database answers within a few seconds and is migrated to head."""
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                revisions = await HealthRepository(self.engine).applied_revisions()
        except Exception:  # any failure to reach the database is "not ready", not a 500
            return ReadinessReport("unavailable", "unreachable", "unknown")
        if revisions == head_revisions():
            return ReadinessReport("ok", "ok", "head")
        if revisions and not revisions <= known_revisions():
            # Migrated by a newer release (the step before a rolling deploy): migrations are
            # additive, so this process keeps serving until it is replaced.
            return ReadinessReport("ok", "ok", "ahead")
        return ReadinessReport("unavailable", "ok", "behind")
