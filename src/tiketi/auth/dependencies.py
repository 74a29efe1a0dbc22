"""Who is calling: `CurrentUser`, `OrganizerUser`, `AdminUser` for every router."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from tiketi.auth.exceptions import NotAuthenticated, RoleRequired
from tiketi.auth.service import AuthService, decode_access_token
from tiketi.core.database import SessionDep
from tiketi.core.security import AccessClaims, TokenCodec
from tiketi.users.models import Role, User

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)
BearerToken = Annotated[str | None, Depends(oauth2_scheme)]
"""The bearer token if one was sent, unchecked: for routes that answer anonymous callers
without touching the database and authenticate the others themselves."""


def get_token_codec(request: Request) -> TokenCodec:
    codec: TokenCodec = request.app.state.token_codec
    return codec


async def get_auth_service(request: Request, session: SessionDep) -> AuthService:
    return AuthService(session, request.app.state.settings, get_token_codec(request))


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]


async def get_current_user(auth: AuthServiceDep, token: BearerToken) -> User:
    if not token:
        raise NotAuthenticated()
    return await auth.authenticate(token)


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_caller_claims(request: Request, token: BearerToken) -> AccessClaims:
    """The bearer token's claims, its signature and expiry checked here; whether it is still
    current (not revoked, user active) is checked by the route's own statement. For `POST
    /orders`, whose one statement does that while it holds the tickets."""
    if not token:
        raise NotAuthenticated()
    return decode_access_token(get_token_codec(request), token)


CallerClaims = Annotated[AccessClaims, Depends(get_caller_claims)]


async def get_organizer(user: CurrentUser) -> User:
    if user.role not in (Role.organizer.value, Role.admin.value):
        raise RoleRequired("Only organizers can do this")
    return user


async def get_admin(user: CurrentUser) -> User:
    if user.role != Role.admin.value:
        raise RoleRequired("Only admins can do this")
    return user


OrganizerUser = Annotated[User, Depends(get_organizer)]
AdminUser = Annotated[User, Depends(get_admin)]


def is_admin(user: User) -> bool:
    return user.role == Role.admin.value


async def get_optional_user(auth: AuthServiceDep, token: BearerToken) -> User | None:
    """Public routes that show more to owners: anonymous is fine, a bad token is still 401."""
    if not token:
        return None
    return await auth.authenticate(token)


OptionalUser = Annotated[User | None, Depends(get_optional_user)]


async def authenticate(request: Request, session: AsyncSession, token: str) -> User:
    """The user behind `token` (401 if it is invalid), read through `session`."""
    state = request.app.state
    return await AuthService(session, state.settings, get_token_codec(request)).authenticate(token)


async def get_current_user_detached(request: Request, token: BearerToken) -> User:
    """`CurrentUser` through its own short session, released before the handler runs: for
    routes that then wait on another system (an STK push) without holding a connection."""
    if not token:
        raise NotAuthenticated()
    async with request.app.state.sessionmaker() as session:
        return await authenticate(request, session, token)


CurrentUserDetached = Annotated[User, Depends(get_current_user_detached)]
