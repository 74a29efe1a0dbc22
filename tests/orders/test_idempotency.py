import asyncio

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import counters, make_buyers, make_event, make_user, place_order, tiers_of
from tiketi.users.models import Role


async def _setup(app: FastAPI) -> tuple[object, object, list[tuple[object, dict[str, str]]]]:
    organizer = await make_user(app, role=Role.organizer)
    event = await make_event(app, organizer)
    early = (await tiers_of(app, event.id))[0]
    return event.id, early.id, await make_buyers(app, 2)  # type: ignore[return-value]


async def test_same_key_same_body_replays(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    event_id, tier_id, [(_, alice), (_, bob)] = await _setup(app)
    key = {"Idempotency-Key": "order-7f3k"}
    first = await place_order(client, alice | key, event_id, [(tier_id, 2)])  # type: ignore[arg-type]
    second = await place_order(client, alice | key, event_id, [(tier_id, 2)])  # type: ignore[arg-type]
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert (await counters(app, tier_id))[2] == 2  # type: ignore[arg-type]
    # Keys belong to a user: Bob's identical key is his own, new order.
    other = await place_order(client, bob | key, event_id, [(tier_id, 2)])  # type: ignore[arg-type]
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]
    assert (await session.execute(text("SELECT count(*) FROM orders"))).scalar_one() == 2


async def test_same_key_other_body_is_422(app: FastAPI, client: httpx.AsyncClient) -> None:
    event_id, tier_id, [(_, alice), _] = await _setup(app)
    key = {"Idempotency-Key": "k-1"}
    assert (await place_order(client, alice | key, event_id, [(tier_id, 1)])).status_code == 201  # type: ignore[arg-type]
    clash = await place_order(client, alice | key, event_id, [(tier_id, 3)])  # type: ignore[arg-type]
    assert clash.status_code == 422
    assert clash.json()["code"] == "idempotency_key_reused"
    assert (await counters(app, tier_id))[2] == 1  # type: ignore[arg-type]


async def test_failed_request_stores_nothing(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    event_id, tier_id, [(_, alice), _] = await _setup(app)
    key = {"Idempotency-Key": "retry-me"}
    too_many = await place_order(client, alice | key, event_id, [(tier_id, 50)])  # type: ignore[arg-type]
    assert too_many.status_code == 422  # more than max_per_order
    assert (await session.execute(text("SELECT count(*) FROM idempotency_keys"))).scalar_one() == 0
    assert (await place_order(client, alice | key, event_id, [(tier_id, 1)])).status_code == 201  # type: ignore[arg-type]


async def test_concurrent_duplicates_create_one_order(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    event_id, tier_id, [(_, alice), _] = await _setup(app)
    key = {"Idempotency-Key": "double-tap"}
    responses = await asyncio.gather(
        *[place_order(client, alice | key, event_id, [(tier_id, 1)]) for _ in range(6)]  # type: ignore[arg-type]
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409}
    ids = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(ids) == 1
    conflicts = [r.json()["code"] for r in responses if r.status_code == 409]
    assert set(conflicts) <= {"idempotency_in_progress"}
    assert (await session.execute(text("SELECT count(*) FROM orders"))).scalar_one() == 1
    assert (await counters(app, tier_id))[2] == 1  # type: ignore[arg-type]


async def test_bad_keys_are_refused(app: FastAPI, client: httpx.AsyncClient) -> None:
    event_id, tier_id, [(_, alice), _] = await _setup(app)
    for bad in ("", "x" * 256, "has space"):
        response = await place_order(
            client, alice | {"Idempotency-Key": bad}, event_id, [(tier_id, 1)]
        )  # type: ignore[arg-type]
        assert response.status_code == 422, bad


async def test_expired_keys_are_purged_and_reusable(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    from tiketi.core.jobs import JobRunner
    from tiketi.jobs import application_jobs

    event_id, tier_id, [(_, alice), _] = await _setup(app)
    key = {"Idempotency-Key": "old"}
    await place_order(client, alice | key, event_id, [(tier_id, 1)])  # type: ignore[arg-type]
    await session.execute(
        text("UPDATE idempotency_keys SET expires_at = now() - interval '1 hour'")
    )
    await session.commit()
    reused = await place_order(client, alice | key, event_id, [(tier_id, 2)])  # type: ignore[arg-type]
    assert reused.status_code == 201
    await session.execute(
        text("UPDATE idempotency_keys SET expires_at = now() - interval '1 hour'")
    )
    await session.commit()
    done = await JobRunner(app.state.sessionmaker, application_jobs(), interval=1).run_once()
    assert done["purge_idempotency_keys"] == 1
