"""The scenarios, in the order `python -m bench` runs them."""

from __future__ import annotations

from bench.core import Scenario
from bench.scenarios import (
    callback_settlement,
    event_read,
    flash_sale,
    login_vs_liveness,
    search,
    sse_fanout,
)

SCENARIOS: dict[str, Scenario] = {
    "event_read": event_read.run,
    "flash_sale": flash_sale.run,
    "callback_settlement": callback_settlement.run,
    "login_vs_liveness": login_vs_liveness.run,
    "sse_fanout": sse_fanout.run,
    "search": search.run,
}
