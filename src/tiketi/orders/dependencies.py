from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tiketi.core.database import SessionDep, run_in_autocommit
from tiketi.core.idempotency import IdempotencyKeyHeader
from tiketi.orders.service import OrderService


async def get_order_service(request: Request, session: SessionDep) -> OrderService:
    state = request.app.state
    return OrderService(session, state.settings, state.sold_out)


OrderServiceDep = Annotated[OrderService, Depends(get_order_service)]


async def get_placement_key(
    session: SessionDep, idempotency_key: IdempotencyKeyHeader = None
) -> str | None:
    """The `Idempotency-Key` of a `POST /orders`. Without one, the request's session commits
    statement by statement (autocommit, set before anything reads): the caller's token and the
    tiers are plain reads, and the placement is one statement that commits itself on the
    server (`OrderService.place(own_transaction=True)`). With a key, the placement and the
    stored response share one transaction."""
    if idempotency_key is None:
        await run_in_autocommit(session)
    return idempotency_key


PlacementKey = Annotated[str | None, Depends(get_placement_key)]
