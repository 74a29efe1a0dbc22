from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import OAuth2PasswordRequestForm

from tiketi.auth.dependencies import AuthServiceDep
from tiketi.auth.schemas import RefreshRequest, TokenPair
from tiketi.core.errors import problem_responses

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/token", response_model=TokenPair, responses=problem_responses(401, 403, 429))
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    auth: AuthServiceDep,
) -> TokenPair:
    """Sign in with email (`username`) and password (OAuth2 password flow)."""
    address = request.client.host if request.client else "unknown"
    return await auth.login(email=form.username, password=form.password, client_address=address)


@router.post("/refresh", response_model=TokenPair, responses=problem_responses(401))
async def refresh(body: RefreshRequest, auth: AuthServiceDep) -> TokenPair:
    """Trade a refresh token for a new pair; the presented token is spent."""
    return await auth.refresh(body.refresh_token)


@router.post("/logout", status_code=204, response_class=Response)
async def logout(body: RefreshRequest, auth: AuthServiceDep) -> Response:
    """End the session (the refresh token's whole family)."""
    await auth.logout(body.refresh_token)
    return Response(status_code=204)
