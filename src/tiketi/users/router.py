from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Response

from tiketi.auth.dependencies import AdminUser, CurrentUser
from tiketi.core.database import SessionDep
from tiketi.core.errors import problem_responses
from tiketi.core.pagination import CursorQuery, LimitQuery, Page
from tiketi.users.models import Role
from tiketi.users.schemas import PasswordChange, UserAdminUpdate, UserCreate, UserRead, UserUpdateMe
from tiketi.users.service import UserService

router = APIRouter(prefix="/users", tags=["users"])


@router.post("", status_code=201, response_model=UserRead, responses=problem_responses(409))
async def register(body: UserCreate, session: SessionDep) -> UserRead:
    """Open an account (customer by default, or organizer)."""
    user = await UserService(session).register(body)
    return UserRead.model_validate(user)


@router.get("/me", response_model=UserRead, responses=problem_responses(401))
async def read_me(user: CurrentUser) -> UserRead:
    return UserRead.model_validate(user)


@router.patch("/me", response_model=UserRead, responses=problem_responses(401))
async def update_me(body: UserUpdateMe, user: CurrentUser, session: SessionDep) -> UserRead:
    return UserRead.model_validate(await UserService(session).update_profile(user, body))


@router.post(
    "/me/password", status_code=204, response_class=Response, responses=problem_responses(401)
)
async def change_password(body: PasswordChange, user: CurrentUser, session: SessionDep) -> Response:
    """Change the password; every existing token stops working."""
    await UserService(session).change_password(user, body)
    return Response(status_code=204)


@router.get("", response_model=Page[UserRead], responses=problem_responses(401, 403))
async def list_users(
    admin: AdminUser,
    session: SessionDep,
    role: Role | None = None,
    q: str | None = Query(default=None, max_length=100, description="Search name or email"),
    limit: LimitQuery = 20,
    cursor: CursorQuery = None,
) -> Page[UserRead]:
    users, next_cursor = await UserService(session).list(
        role=role, query=q, cursor=cursor, limit=limit
    )
    return Page(items=[UserRead.model_validate(u) for u in users], next_cursor=next_cursor)


@router.get("/{user_id}", response_model=UserRead, responses=problem_responses(401, 403, 404))
async def read_user(user_id: uuid.UUID, admin: AdminUser, session: SessionDep) -> UserRead:
    return UserRead.model_validate(await UserService(session).get(user_id))


@router.patch(
    "/{user_id}", response_model=UserRead, responses=problem_responses(401, 403, 404, 409)
)
async def update_user(
    user_id: uuid.UUID, body: UserAdminUpdate, admin: AdminUser, session: SessionDep
) -> UserRead:
    """Change a user's role or deactivate them; their tokens are revoked at once."""
    return UserRead.model_validate(await UserService(session).admin_update(admin, user_id, body))
