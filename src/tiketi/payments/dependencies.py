from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tiketi.payments.service import PaymentService


async def get_payment_service(request: Request) -> PaymentService:
    state = request.app.state
    return PaymentService(state.sessionmaker, state.mpesa, state.settings)


PaymentServiceDep = Annotated[PaymentService, Depends(get_payment_service)]
