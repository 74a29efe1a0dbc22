from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from tiketi.auth.dependencies import CallerClaims, CurrentUser
from tiketi.core.errors import problem_responses
from tiketi.core.idempotency import IdempotencyKeyHeader
from tiketi.core.pagination import CursorQuery, LimitQuery, Page
from tiketi.orders.dependencies import OrderPlacementDep, OrderServiceDep
from tiketi.orders.schemas import OrderCreate, OrderRead

router = APIRouter(prefix="/orders", tags=["orders"])


@router.post(
    "",
    status_code=201,
    response_model=OrderRead,
    responses=problem_responses(401, 404, 409, 422),
)
async def place_order(
    body: OrderCreate,
    caller: CallerClaims,
    placement: OrderPlacementDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Hold tickets until `expires_at` (pay with POST /payments/mpesa); free orders come
    back paid, with their tickets."""
    status, payload, replayed = await placement.place(caller, body, idempotency_key)
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(payload, status_code=status, headers=headers)


@router.get("", response_model=Page[OrderRead], responses=problem_responses(401))
async def list_orders(
    user: CurrentUser, orders: OrderServiceDep, limit: LimitQuery = 20, cursor: CursorQuery = None
) -> Page[OrderRead]:
    """The caller's orders, newest first."""
    items, next_cursor = await orders.list_mine(user, cursor=cursor, limit=limit)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/{order_id}", response_model=OrderRead, responses=problem_responses(401, 404))
async def read_order(order_id: uuid.UUID, user: CurrentUser, orders: OrderServiceDep) -> OrderRead:
    return await orders.get(order_id, user)


@router.post(
    "/{order_id}/cancel", response_model=OrderRead, responses=problem_responses(401, 404, 409)
)
async def cancel_order(
    order_id: uuid.UUID, user: CurrentUser, orders: OrderServiceDep
) -> OrderRead:
    """Cancel a pending order; its held tickets go back on sale at once."""
    return await orders.cancel(order_id, user)
