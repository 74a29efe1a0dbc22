from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine


class HealthRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def applied_revisions(self) -> frozenset[str]:
        async with self.engine.connect() as conn:
            try:
                rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
            except ProgrammingError:  # no alembic_version table: never migrated
                return frozenset()
            return frozenset(str(r[0]) for r in rows)
