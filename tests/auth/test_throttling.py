import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import PASSWORD, login, make_user


async def test_account_throttled_after_repeated_failures(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(app)
    limit = app.state.settings.login_max_failures_per_account
    for _ in range(limit):
        assert (await login(client, user.email, "wrong-password-x")).status_code == 401
    blocked = await login(client, user.email, PASSWORD)
    assert blocked.status_code == 429
    assert blocked.json()["code"] == "too_many_attempts"
    assert 1 <= int(blocked.headers["retry-after"]) <= 901

    # Not forever: once the window has passed, the real owner gets in.
    await session.execute(
        text("UPDATE login_throttles SET window_started_at = now() - interval '1 hour'")
    )
    await session.commit()
    assert (await login(client, user.email, PASSWORD)).status_code == 200


async def test_unknown_emails_count_against_the_address(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    limit = app.state.settings.login_max_failures_per_address
    for i in range(limit):
        assert (await login(client, f"ghost{i}@example.com", "whatever-123")).status_code == 401
    user = await make_user(app)
    assert (await login(client, user.email, PASSWORD)).status_code == 429


async def test_success_resets_the_account_counter(app: FastAPI, client: httpx.AsyncClient) -> None:
    user = await make_user(app)
    limit = app.state.settings.login_max_failures_per_account
    for _ in range(limit - 1):
        await login(client, user.email, "wrong-password-x")
    assert (await login(client, user.email, PASSWORD)).status_code == 200
    for _ in range(limit - 1):
        await login(client, user.email, "wrong-password-x")
    assert (await login(client, user.email, PASSWORD)).status_code == 200


async def test_old_auth_records_are_purged(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    from tiketi.core.jobs import JobRunner
    from tiketi.jobs import application_jobs

    user = await make_user(app)
    await login(client, user.email, "wrong-password-x")
    assert (await login(client, user.email, PASSWORD)).status_code == 200
    await session.execute(
        text("UPDATE login_throttles SET window_started_at = now() - interval '2 days'")
    )
    await session.execute(text("UPDATE refresh_tokens SET expires_at = now() - interval '8 days'"))
    await session.commit()
    done = await JobRunner(app.state.sessionmaker, application_jobs(), interval=1).run_once()
    assert done["purge_auth_records"] == 3  # two throttle keys and one refresh token
    left = await session.execute(
        text(
            "SELECT (SELECT count(*) FROM login_throttles) + (SELECT count(*) FROM refresh_tokens)"
        )
    )
    assert left.scalar_one() == 0
