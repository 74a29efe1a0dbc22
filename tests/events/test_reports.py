import csv
import io

import httpx
from fastapi import FastAPI

from tests.factories import make_account, make_event, pay_order, place_order, tiers_of
from tiketi.users.models import Role


async def _sold_event(app: FastAPI, client: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    organizer = await make_account(app, client, Role.organizer)
    event = await make_event(app, organizer.user)
    early, vip, regular = await tiers_of(app, event.id)
    alice = await make_account(app, client, first_name="=HYPERLINK(1)", last_name="Otieno")
    bob = await make_account(app, client, first_name="Bob", last_name="Mwangi")
    paid = (await place_order(client, alice.headers, event.id, [(early.id, 2), (vip.id, 1)])).json()
    await pay_order(app, paid["id"])
    await place_order(client, bob.headers, event.id, [(regular.id, 3)])  # pending only
    order = (await client.get(f"/orders/{paid['id']}", headers=alice.headers)).json()
    code = order["tickets"][0]["code"]
    scan = {"event_id": str(event.id), "code": code}
    assert (
        await client.post("/tickets/check-in", json=scan, headers=organizer.headers)
    ).status_code == 200
    return organizer, event, (early, vip, regular), order


async def test_sales_report(app: FastAPI, client: httpx.AsyncClient) -> None:
    organizer, event, _, _ = await _sold_event(app, client)
    report = (await client.get(f"/events/{event.id}/sales", headers=organizer.headers)).json()
    by_name = {t["name"]: t for t in report["ticket_types"]}
    assert (by_name["Early Bird"]["sold"], by_name["Early Bird"]["revenue"]) == (2, 3000)
    assert (by_name["VIP"]["sold"], by_name["VIP"]["revenue"]) == (1, 5000)
    assert (by_name["Regular"]["held"], by_name["Regular"]["revenue"]) == (3, 0)
    assert sum(t["checked_in"] for t in report["ticket_types"]) == 1
    totals = report["totals"]
    assert totals["revenue"] == 8000
    assert totals["sold"] == 3
    assert totals["held"] == 3
    assert totals["paid_orders"] == 1
    assert report["currency"] == "KES"


async def test_reports_are_for_the_owner_and_admins(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    _, event, _, _ = await _sold_event(app, client)
    rival = await make_account(app, client, Role.organizer)
    customer = await make_account(app, client)
    admin = await make_account(app, client, Role.admin)
    for path in (f"/events/{event.id}/sales", f"/events/{event.id}/attendees"):
        assert (await client.get(path, headers=rival.headers)).status_code == 404
        assert (await client.get(path, headers=customer.headers)).status_code == 403
        assert (await client.get(path)).status_code == 401
        assert (await client.get(path, headers=admin.headers)).status_code == 200


async def test_attendees_pages_and_csv(app: FastAPI, client: httpx.AsyncClient) -> None:
    organizer, event, _, order = await _sold_event(app, client)
    page1 = (
        await client.get(
            f"/events/{event.id}/attendees", params={"limit": 2}, headers=organizer.headers
        )
    ).json()
    page2 = (
        await client.get(
            f"/events/{event.id}/attendees",
            params={"limit": 2, "cursor": page1["next_cursor"]},
            headers=organizer.headers,
        )
    ).json()
    everyone = page1["items"] + page2["items"]
    assert len(everyone) == 3
    assert page2["next_cursor"] is None
    first = everyone[0]
    assert set(first) == {
        "ticket_id",
        "code_suffix",
        "ticket_type",
        "holder_name",
        "holder_email",
        "status",
        "checked_in_at",
    }
    codes = {t["code"] for t in order["tickets"]}
    assert all(any(c.endswith(a["code_suffix"]) for c in codes) for a in everyone)
    assert all(a["code_suffix"] not in codes for a in everyone)  # never the whole code
    checked = (
        await client.get(
            f"/events/{event.id}/attendees",
            params={"status": "checked_in"},
            headers=organizer.headers,
        )
    ).json()
    assert len(checked["items"]) == 1

    response = await client.get(
        f"/events/{event.id}/attendees", params={"format": "csv"}, headers=organizer.headers
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == [
        "ticket_id",
        "code_suffix",
        "ticket_type",
        "holder_name",
        "holder_email",
        "status",
        "checked_in_at",
    ]
    assert len(rows) == 4
    # A holder name that is a spreadsheet formula is neutralised.
    assert all(not row[3].startswith("=") for row in rows[1:])
    assert any(row[3].startswith("'=HYPERLINK") for row in rows[1:])
    bad = await client.get(
        f"/events/{event.id}/attendees", params={"format": "xml"}, headers=organizer.headers
    )
    assert bad.status_code == 422
