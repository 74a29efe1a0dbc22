from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tiketi.core.database import SessionDep
from tiketi.orders.service import OrderService


async def get_order_service(request: Request, session: SessionDep) -> OrderService:
    state = request.app.state
    return OrderService(session, state.settings, state.sold_out)


OrderServiceDep = Annotated[OrderService, Depends(get_order_service)]
