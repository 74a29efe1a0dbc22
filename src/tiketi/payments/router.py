from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tiketi.auth.dependencies import CurrentUserDetached
from tiketi.core.errors import problem_responses
from tiketi.core.idempotency import IdempotencyKeyHeader
from tiketi.core.pagination import CursorQuery, LimitQuery, Page
from tiketi.payments.dependencies import PaymentServiceDep
from tiketi.payments.models import PaymentStatus
from tiketi.payments.schemas import CallbackAck, PaymentCreate, PaymentRead

router = APIRouter(prefix="/payments", tags=["payments"])

# The acknowledgement never varies: rendered once, not validated and serialized per callback.
_CALLBACK_ACK_BODY = CallbackAck().model_dump_json().encode()


@router.post(
    "/mpesa",
    status_code=202,
    response_model=PaymentRead,
    responses=problem_responses(401, 404, 409, 422, 502, 503),
)
async def pay_with_mpesa(
    body: PaymentCreate,
    user: CurrentUserDetached,
    payments: PaymentServiceDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Send an M-Pesa PIN prompt (STK push) for a pending order's total to the payer's
    phone. The payment stays `pending` until M-Pesa reports the outcome; poll
    `GET /payments/{id}` or the order."""
    payment, replayed = await payments.initiate(user, body, idempotency_key=idempotency_key)
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(payment.model_dump(mode="json"), status_code=202, headers=headers)


@router.get("", response_model=Page[PaymentRead], responses=problem_responses(401))
async def list_payments(
    user: CurrentUserDetached,
    payments: PaymentServiceDep,
    status: PaymentStatus | None = None,
    limit: LimitQuery = 20,
    cursor: CursorQuery = None,
) -> Page[PaymentRead]:
    """Your payments, newest first (admins: everyone's, filterable by status)."""
    items, next_cursor = await payments.page(user, status=status, cursor=cursor, limit=limit)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/{payment_id}", response_model=PaymentRead, responses=problem_responses(401, 404))
async def read_payment(
    payment_id: uuid.UUID, user: CurrentUserDetached, payments: PaymentServiceDep
) -> PaymentRead:
    return await payments.get(payment_id, user)


@router.post(
    "/callbacks/stk/{token}",
    response_model=CallbackAck,
    responses=problem_responses(400, 403, 404, 413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
            "description": "Daraja's STK callback body, exactly as Safaricom sends it",
        }
    },
)
async def stk_callback(token: str, request: Request, payments: PaymentServiceDep) -> Response:
    """Safaricom's STK callback. The path token authenticates it; the body is stored before
    anything else; only a pending payment we started can change."""
    source_ip = request.client.host if request.client else None
    payments.check_callback_access(token, source_ip)
    await payments.settle_stk_callback(await request.body(), source_ip=source_ip)
    return Response(_CALLBACK_ACK_BODY, media_type="application/json")
