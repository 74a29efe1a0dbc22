"""Two `tiketi serve` processes on one database, load spread across both: no oversell, live
availability crosses processes, and background jobs (running in both) do each thing once.

The processes and their database are shared by the tests of this module (each test uses its
own event); starting them once keeps the module fast.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import make_settings
from tests.events.conftest import open_stream
from tests.factories import make_buyers, make_event, make_user, place_order, tiers_of
from tests.fault.inventory import assert_inventory_consistent, connect, orders_of_event
from tests.fault.servers import ManagedProcess, processes_in, serve_env
from tiketi.main import create_app
from tiketi.orders.schemas import OrderCreate, OrderLine
from tiketi.orders.service import OrderService
from tiketi.users.models import Role

if TYPE_CHECKING:
    # Imported for the annotation only: pytest would try to collect a `Test*` class.
    from tests.fixtures.database import TestServer

pytestmark = [pytest.mark.fault, pytest.mark.process]

JOBS_INTERVAL = 0.25

# Test instrumentation in this module's own database: every committed status change of an
# order and every committed change of a tier's `held`, with the session that made it.
AUDIT = """
CREATE TABLE fault_audit (
    id bigserial PRIMARY KEY,
    kind text NOT NULL,
    row_id uuid NOT NULL,
    old_status text,
    new_status text,
    held_delta integer,
    backend integer NOT NULL DEFAULT pg_backend_pid(),
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION fault_audit_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status IS DISTINCT FROM NEW.status THEN
        INSERT INTO fault_audit (kind, row_id, old_status, new_status)
        VALUES ('order', NEW.id, OLD.status, NEW.status);
    END IF;
    RETURN NEW;
END $$;
CREATE FUNCTION fault_audit_tier() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.held IS DISTINCT FROM NEW.held THEN
        INSERT INTO fault_audit (kind, row_id, held_delta)
        VALUES ('tier', NEW.id, NEW.held - OLD.held);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fault_audit_order AFTER UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION fault_audit_order();
CREATE TRIGGER fault_audit_tier AFTER UPDATE ON ticket_types
    FOR EACH ROW EXECUTE FUNCTION fault_audit_tier();
"""


@dataclass
class Cluster:
    app: FastAPI  # in-process, for factories and as a third job runner
    database_url: str
    nodes: list[ManagedProcess]

    def clients(self) -> list[httpx.AsyncClient]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        return [
            httpx.AsyncClient(base_url=node.base_url, timeout=30, limits=limits)
            for node in self.nodes
        ]


@pytest.fixture(scope="module")
async def cluster_url(pg: TestServer) -> AsyncIterator[str]:
    name = await pg.create_database()
    url = pg.url(name)
    conn = await connect(url)
    try:
        await conn.execute(AUDIT)
    finally:
        await conn.close()
    try:
        yield url
    finally:
        await pg.drop_database(name)


@pytest.fixture(scope="module")
def cluster_nodes(
    cluster_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ManagedProcess]]:
    env = serve_env(
        cluster_url,
        jobs_enabled="true",
        jobs_interval_seconds=JOBS_INTERVAL,
        db_pool_size=5,
        db_max_overflow=5,
    )
    with processes_in(tmp_path_factory.mktemp("cluster")) as registry:
        nodes = [registry.api("node-a", env), registry.api("node-b", env)]
        for node in nodes:
            node.spawn()
        for node in nodes:
            node.wait_ready(60)
        yield nodes


@pytest.fixture(scope="module")
async def cluster(cluster_url: str, cluster_nodes: list[ManagedProcess]) -> AsyncIterator[Cluster]:
    app = create_app(make_settings(cluster_url))
    async with app.router.lifespan_context(app):
        cluster = Cluster(app, cluster_url, cluster_nodes)
        await _warm_up(cluster)
        yield cluster


async def _warm_up(cluster: Cluster) -> None:
    """Every process opens its whole database pool and prepares the hold on each connection,
    so a race below starts with both processes ready: a process's first holds (new
    connections, first statements) take longer than a warm process needs to sell out a small
    tier — on a busy CI machine one process once sold all 50 tickets before the other had
    answered any, and "both processes sold" failed while nothing was wrong."""
    organizer = await make_user(cluster.app, role=Role.organizer)
    event = await make_event(
        cluster.app, organizer, tiers=[{"name": "Warm-up", "price": 100, "quantity": 1000}]
    )
    tier = (await tiers_of(cluster.app, event.id))[0]
    per_node = 20  # more than a process's pool (db_pool_size + db_max_overflow)
    buyers = await make_buyers(cluster.app, per_node * len(cluster.nodes))
    clients = cluster.clients()
    try:
        responses = await asyncio.gather(
            *(
                place_order(client, headers, event.id, [(tier.id, 1)])
                for (_, headers), client in zip(buyers, itertools.cycle(clients))
            )
        )
    finally:
        for client in clients:
            await client.aclose()
    assert [r.status_code for r in responses] == [201] * len(responses), [
        r.text for r in responses if r.status_code != 201
    ]


def _job_rows(node: ManagedProcess, job: str) -> int:
    """Rows a process reports its job handled (its own JSON log lines)."""
    total = 0
    for line in node.log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"job ran"' in line:
            record = json.loads(line)
            if record.get("job") == job:
                total += int(record.get("rows", 0))
    return total


def _job_failures(node: ManagedProcess) -> list[str]:
    return [line for line in node.log.read_text().splitlines() if '"job failed"' in line]


async def test_a_flash_sale_across_two_processes_never_oversells(cluster: Cluster) -> None:
    organizer = await make_user(cluster.app, role=Role.organizer)
    event = await make_event(
        cluster.app,
        organizer,
        tiers=[
            {"name": "Flash", "price": 800, "quantity": 50, "max_per_order": 2},
            {"name": "VIP", "price": 4000, "quantity": 10, "max_per_order": 2},
        ],
    )
    flash, vip = await tiers_of(cluster.app, event.id)
    buyers = await make_buyers(cluster.app, 160)
    clients = cluster.clients()
    try:
        requests = []
        for i, ((_, headers), client) in enumerate(zip(buyers, itertools.cycle(clients))):
            lines = [(flash.id, 1)] + ([(vip.id, 1)] if i % 4 == 0 else [])
            requests.append(place_order(client, headers, event.id, lines))
        responses = await asyncio.gather(*requests)
    finally:
        for client in clients:
            await client.aclose()

    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, [r.text for r in responses if r.status_code >= 500]
    assert {r.json()["code"] for r in responses if r.status_code == 409} <= {"sold_out"}
    tiers = {t.id: t for t in await assert_inventory_consistent(cluster.database_url, event.id)}
    won = [r.json() for r in responses if r.status_code == 201]
    for tier in (flash, vip):
        granted = sum(
            i["quantity"] for o in won for i in o["items"] if i["ticket_type_id"] == str(tier.id)
        )
        assert tiers[tier.id].held == granted <= tier.quantity
    assert tiers[flash.id].held == flash.quantity, "tickets left unsold with buyers turned away"
    # Both processes sold.
    served = Counter(str(r.url).split("/orders")[0] for r in responses if r.status_code == 201)
    assert len(served) == 2, served
    stored = {o.id for o in await orders_of_event(cluster.database_url, event.id)}
    assert stored == {uuid.UUID(o["id"]) for o in won}


async def test_a_change_through_one_process_reaches_a_stream_on_the_other(
    cluster: Cluster,
) -> None:
    organizer = await make_user(cluster.app, role=Role.organizer)
    event = await make_event(cluster.app, organizer)
    tier = (await tiers_of(cluster.app, event.id))[0]
    buyers = await make_buyers(cluster.app, 2)
    path = f"/events/{event.id}/availability/stream"
    clients = cluster.clients()
    try:
        for (watch, act), (_, headers) in zip(
            [(clients[1], clients[0]), (clients[0], clients[1])], buyers, strict=True
        ):
            async with open_stream(watch, path) as stream:
                before = {i["name"]: i for i in (await stream.event(timeout=5)).json}
                started = time.monotonic()
                response = await place_order(act, headers, event.id, [(tier.id, 3)])
                assert response.status_code == 201, response.text
                while True:
                    update = {i["name"]: i for i in (await stream.event(timeout=3)).json}
                    if update[tier.name]["available"] != before[tier.name]["available"]:
                        break
                assert update[tier.name]["available"] == before[tier.name]["available"] - 3
                assert time.monotonic() - started < 3
    finally:
        for client in clients:
            await client.aclose()


async def test_jobs_in_every_process_expire_each_hold_exactly_once(cluster: Cluster) -> None:
    organizer = await make_user(cluster.app, role=Role.organizer)
    event = await make_event(
        cluster.app,
        organizer,
        tiers=[{"name": "Regular", "price": 1000, "quantity": 2000, "max_per_order": 4}],
    )
    tier = (await tiers_of(cluster.app, event.id))[0]
    buyers = [user for user, _ in await make_buyers(cluster.app, 110)]
    # 100 buyers x 3 orders will lapse; 10 buyers keep one order each. Placed through the
    # service in one transaction: how they were placed does not matter here, only speed.
    placing = [b for b in buyers[:100] for _ in range(3)] + buyers[100:]
    async with cluster.app.state.sessionmaker() as session, session.begin():
        service = OrderService(session, cluster.app.state.settings)
        orders = [
            await service.place(
                buyer,
                OrderCreate(
                    event_id=event.id,
                    items=[OrderLine(ticket_type_id=tier.id, quantity=1 + n % 3)],
                ),
            )
            for n, buyer in enumerate(placing)
        ]
    lapsing, kept = orders[:300], orders[300:]
    kept_quantity = sum(o.items[0].quantity for o in kept)
    lapsing_quantity = sum(o.items[0].quantity for o in lapsing)
    before = {n.name: _job_rows(n, "expire_stale_holds") for n in cluster.nodes}

    conn = await connect(cluster.database_url)
    try:
        await conn.execute("DELETE FROM fault_audit")
        # All at once; and this process joins the race with four concurrent runs of its own.
        await conn.execute(
            "UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = ANY($1)",
            [o.id for o in lapsing],
        )
        jobs = cluster.app.state.jobs
        runs = await asyncio.gather(*(jobs.run_once() for _ in range(4)))
        deadline = time.monotonic() + 15
        while True:
            pending = await conn.fetchval(
                "SELECT count(*) FROM orders WHERE id = ANY($1) AND status = 'pending'",
                [o.id for o in lapsing],
            )
            if pending == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(3 * JOBS_INTERVAL)  # a few more ticks: nothing more may happen
        transitions = await conn.fetch(
            "SELECT row_id, old_status, new_status FROM fault_audit WHERE kind = 'order'"
        )
        released = await conn.fetchval(
            "SELECT coalesce(sum(held_delta), 0) FROM fault_audit"
            " WHERE kind = 'tier' AND row_id = $1",
            tier.id,
        )
    finally:
        await conn.close()

    assert pending == 0
    per_order = Counter(row["row_id"] for row in transitions)
    assert {o.id for o in lapsing} == set(per_order)
    assert set(per_order.values()) == {1}, "an order changed status more than once"
    assert {(r["old_status"], r["new_status"]) for r in transitions} == {("pending", "expired")}
    assert released == -lapsing_quantity
    (state,) = await assert_inventory_consistent(cluster.database_url, event.id)
    assert state.held == kept_quantity and state.sold == 0
    for node in cluster.nodes:
        assert not _job_failures(node), node.tail()
    # Every runner's own count of what it expired adds up to the orders, once each.
    here = sum(run["expire_stale_holds"] for run in runs)
    there = [_job_rows(n, "expire_stale_holds") - before[n.name] for n in cluster.nodes]
    assert here + sum(there) == len(lapsing), (here, there)
