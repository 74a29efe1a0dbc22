import asyncio

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import counters, make_buyers, make_event, make_user, place_order, tiers_of
from tiketi.core.jobs import Job, JobRunner, transactional
from tiketi.jobs import application_jobs, expire_stale_holds
from tiketi.users.models import Role


async def _orders(
    app: FastAPI, client: httpx.AsyncClient, n: int
) -> tuple[object, list[str], list[dict[str, str]]]:
    organizer = await make_user(app, role=Role.organizer)
    event = await make_event(app, organizer)
    early = (await tiers_of(app, event.id))[0]
    buyers = await make_buyers(app, n)
    ids = []
    for _, headers in buyers:
        response = await place_order(client, headers, event.id, [(early.id, 2)])
        ids.append(response.json()["id"])
    return early.id, ids, [headers for _, headers in buyers]


async def test_expiry_releases_each_hold_once(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    tier_id, ids, owners = await _orders(app, client, 5)
    assert (await counters(app, tier_id))[2] == 10  # type: ignore[arg-type]
    await session.execute(
        text("UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = ANY(:ids)"),
        {"ids": ids[:3]},
    )
    await session.commit()
    runner = JobRunner(app.state.sessionmaker, application_jobs(), interval=1)
    assert (await runner.run_once())["expire_stale_holds"] == 3
    assert (await runner.run_once())["expire_stale_holds"] == 0
    assert (await counters(app, tier_id))[2] == 4  # type: ignore[arg-type]
    statuses = dict((await session.execute(text("SELECT id::text, status FROM orders"))).all())
    assert sorted(statuses[i] for i in ids) == ["expired"] * 3 + ["pending"] * 2
    # An expired order can no longer be cancelled (nothing is released twice).
    late_cancel = await client.post(f"/orders/{ids[0]}/cancel", headers=owners[0])
    assert late_cancel.status_code == 409
    assert (await counters(app, tier_id))[2] == 4  # type: ignore[arg-type]


async def test_racing_workers_release_exactly_once(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    tier_id, _, _ = await _orders(app, client, 40)
    await session.execute(text("UPDATE orders SET expires_at = now() - interval '1 second'"))
    await session.commit()
    # Small batches so the workers really interleave over the same rows.
    jobs = [Job("expire", transactional(expire_stale_holds), batch_size=None)]
    runners = [JobRunner(app.state.sessionmaker, jobs, interval=1) for _ in range(6)]
    results = await asyncio.gather(*[r.run_once() for r in runners for _ in range(3)])
    assert sum(r["expire"] for r in results) == 40
    assert await counters(app, tier_id) == (100, 0, 0)  # type: ignore[arg-type]


async def test_jobs_run_in_the_background_of_the_app(
    database_url: str,
) -> None:
    from tests.conftest import make_settings
    from tiketi.main import create_app

    app = create_app(make_settings(database_url, jobs_enabled=True, jobs_interval_seconds=0.1))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            tier_id, _, _ = await _orders(app, client, 2)
            async with app.state.sessionmaker() as session:
                await session.execute(
                    text("UPDATE orders SET expires_at = now() - interval '1 second'")
                )
                await session.commit()
            for _ in range(50):
                if (await counters(app, tier_id))[2] == 0:  # type: ignore[arg-type]
                    break
                await asyncio.sleep(0.1)
            assert (await counters(app, tier_id))[2] == 0  # type: ignore[arg-type]
