from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tiketi.core.database import SessionDep
from tiketi.orders.service import OrderPlacement, OrderService


async def get_order_service(request: Request, session: SessionDep) -> OrderService:
    state = request.app.state
    return OrderService(session, state.settings, state.sold_out)


OrderServiceDep = Annotated[OrderService, Depends(get_order_service)]


async def get_order_placement(request: Request) -> OrderPlacement:
    """`POST /orders` takes its connection itself (no request session): see OrderPlacement."""
    state = request.app.state
    return OrderPlacement(
        autocommit_engine=state.autocommit_engine,
        sessionmaker=state.sessionmaker,
        queue=state.connection_queue,
        settings=state.settings,
        codec=state.token_codec,
        sold_out=state.sold_out,
    )


OrderPlacementDep = Annotated[OrderPlacement, Depends(get_order_placement)]
