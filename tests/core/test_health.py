import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def test_live(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_migrated(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "migrations": "head"}


async def test_not_ready_when_migrations_are_behind(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await session.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    await session.commit()
    response = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["migrations"] == "behind"


async def test_not_ready_when_never_migrated(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await session.execute(text("DROP TABLE alembic_version"))
    await session.commit()
    assert (await client.get("/health/ready")).status_code == 503


async def test_metrics_by_route_template_and_pool(client: httpx.AsyncClient) -> None:
    await client.get("/health/live")
    await client.get("/health/ready")
    await client.get("/no/such/route")
    body = (await client.get("/metrics")).text
    assert 'tiketi_http_requests_total{method="GET",route="/health/live",status="200"} 1.0' in body
    assert 'route="unmatched",status="404"' in body
    assert "tiketi_http_request_duration_seconds_bucket" in body
    assert "tiketi_db_pool_size" in body
    assert "tiketi_db_pool_checked_out" in body


async def test_ready_when_migrated_ahead_by_a_newer_release(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """The release step migrates before old processes are replaced: they must stay ready."""
    await session.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    await session.commit()
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["migrations"] == "ahead"
