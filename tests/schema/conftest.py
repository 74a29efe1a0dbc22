"""A live API for schema fuzzing: `tiketi serve` on its own database, with the Daraja simulator
and real objects (accounts of every role, events, tiers, orders, a ticket, a payment) that
generated requests can name in their paths and bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import make_settings
from tests.factories import (
    make_account,
    make_event,
    make_user,
    pay_order,
    place_order,
    tiers_of,
)
from tests.fault.servers import ManagedProcess, processes_in, serve_env
from tests.process.helpers import free_port
from tiketi.main import create_app
from tiketi.users.models import Role

if TYPE_CHECKING:
    # For the annotation only: pytest would try to collect a `Test*` class.
    from tests.fixtures.database import TestServer

CALLBACK_TOKEN = "schema-callback-token-0123456789-abcdefghij"


def pytest_configure(config: pytest.Config) -> None:
    # Until the marker joins pyproject.toml's list (which --strict-markers reads).
    config.addinivalue_line(
        "markers", "schema: OpenAPI conformance fuzzing (schemathesis) against a live server"
    )


@dataclass
class Known:
    """Real objects in the live database, by what they are for."""

    event: str = ""  # published, with tiers and orders
    tiers: list[str] = field(default_factory=list)
    draft_event: str = ""  # to publish or delete
    doomed_event: str = ""  # published, nothing sold: to cancel, delete, strip of tiers
    doomed_tiers: list[str] = field(default_factory=list)
    order: str = ""  # the customer's, pending
    paid_order: str = ""  # the customer's, paid, with tickets
    ticket: str = ""
    ticket_code: str = ""
    payment: str = ""
    user: str = ""  # a spare customer the admin may change
    email: str = ""  # the customer's, to sign in with
    callback_token: str = CALLBACK_TOKEN


@dataclass
class LiveApi:
    base_url: str
    headers: dict[str, dict[str, str]]  # role -> Authorization header
    known: Known
    api: ManagedProcess
    session: object = None  # a requests.Session, shared by every call


@pytest.fixture(scope="module")
async def schema_database(pg: TestServer) -> AsyncIterator[str]:
    name = await pg.create_database()
    try:
        yield pg.url(name)
    finally:
        await pg.drop_database(name)


@pytest.fixture(scope="module")
async def seeded(schema_database: str) -> tuple[Known, dict[str, dict[str, str]]]:
    app = create_app(make_settings(schema_database))
    known = Known()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://seed") as client:
            customer = await make_account(app, client)
            known.email = customer.email
            organizer = await make_account(app, client, Role.organizer)
            admin = await make_account(app, client, Role.admin)
            known.user = str((await make_user(app)).id)

            event = await make_event(app, organizer.user)
            known.event = str(event.id)
            tiers = await tiers_of(app, event.id)
            known.tiers = [str(t.id) for t in tiers]
            known.draft_event = str((await make_event(app, organizer.user, publish=False)).id)
            doomed = await make_event(app, organizer.user, title="Doomed")
            known.doomed_event = str(doomed.id)
            known.doomed_tiers = [str(t.id) for t in await tiers_of(app, doomed.id)]

            pending = await place_order(client, customer.headers, event.id, [(tiers[0].id, 1)])
            known.order = pending.json()["id"]
            paid = await place_order(client, customer.headers, event.id, [(tiers[1].id, 1)])
            known.paid_order = paid.json()["id"]
            await pay_order(app, known.paid_order)
            ticket = (await client.get("/tickets", headers=customer.headers)).json()["items"][0]
            known.ticket, known.ticket_code = ticket["id"], ticket["code"]
    headers = {"customer": customer.headers, "organizer": organizer.headers, "admin": admin.headers}
    return known, headers


@pytest.fixture(scope="module")
def live_api(
    schema_database: str,
    seeded: tuple[Known, dict[str, dict[str, str]]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveApi]:
    import requests

    known, headers = seeded
    with processes_in(tmp_path_factory.mktemp("schema")) as registry:
        sim = registry.simulator(callback_delay=0.5)
        sim.start(30)
        port = free_port()
        env = serve_env(
            schema_database,
            mpesa_base_url=sim.base_url,
            mpesa_callback_base_url=f"http://127.0.0.1:{port}",
            mpesa_callback_token=CALLBACK_TOKEN,
            mpesa_read_timeout_seconds=2,
            mpesa_total_timeout_seconds=4,
            # Generated requests place many orders; the caps are not under test here.
            max_pending_orders_per_user=100_000,
            max_tickets_per_event_per_user=1_000_000,
            log_level="WARNING",
        )
        api = registry.api("api", env, port=port)
        api.start(60)
        # A payment through the live API (the simulator answers, its callback settles it).
        with httpx.Client(base_url=api.base_url, timeout=10) as client:
            order = client.post(
                "/orders",
                json={
                    "event_id": known.event,
                    "items": [{"ticket_type_id": known.tiers[2], "quantity": 1}],
                },
                headers=headers["customer"],
            )
            assert order.status_code == 201, order.text
            payment = client.post(
                "/payments/mpesa",
                json={"order_id": order.json()["id"]},
                headers=headers["customer"],
            )
            assert payment.status_code == 202, payment.text
            known.payment = payment.json()["id"]
        with requests.Session() as session:
            yield LiveApi(api.base_url, headers, known, api, session)
