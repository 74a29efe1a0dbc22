"""A release runs `tiketi migrate` before the new code is rolled out: meanwhile the running
(old) processes face a schema one migration ahead of their own head. They must stay ready, or
the load balancer takes every one of them out at once."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

pytestmark = pytest.mark.fault


async def test_ready_at_head(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["migrations"] == "head"


async def test_not_ready_when_never_migrated(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await session.execute(text("DELETE FROM alembic_version"))
    await session.commit()
    response = await client.get("/health/ready")
    assert response.status_code == 503


async def test_still_ready_when_the_next_release_migrated_first(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await session.execute(text("UPDATE alembic_version SET version_num = '29991231_0099_next'"))
    await session.commit()
    response = await client.get("/health/ready")
    assert response.status_code == 200, response.json()
