from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from tiketi.core.security import hash_password, verify_password
from tiketi.users.exceptions import (
    CannotChangeSelf,
    EmailTaken,
    UserNotFound,
    WeakPassword,
    WrongPassword,
)
from tiketi.users.models import Role, User
from tiketi.users.repository import UserRepository
from tiketi.users.schemas import PasswordChange, UserAdminUpdate, UserCreate, UserUpdateMe


def check_password_policy(password: str, email: str) -> None:
    """Length is checked by the schema (8..128, before hashing); this adds what needs context."""
    if password.strip().lower() == email.strip().lower():
        raise WeakPassword("The password must not be your email address")
    if len(set(password)) < 3:
        raise WeakPassword("The password is too simple")


class UserService:
    def __init__(self, session: AsyncSession) -> None:
        self.users = UserRepository(session)

    async def register(self, data: UserCreate, *, role: Role | None = None) -> User:
        """Open an account. Self-registration may choose customer or organizer, never admin."""
        email = str(data.email).lower()
        check_password_policy(data.password, email)
        user = await self.users.insert(
            email=email,
            password_hash=await hash_password(data.password),
            first_name=data.first_name,
            last_name=data.last_name,
            phone_number=data.phone_number,
            role=(role or Role(data.role)).value,
        )
        if user is None:
            raise EmailTaken()
        return user

    async def get(self, user_id: uuid.UUID) -> User:
        user = await self.users.get(user_id)
        if user is None:
            raise UserNotFound()
        return user

    async def update_profile(self, user: User, data: UserUpdateMe) -> User:
        for field, value in data.model_dump(exclude_unset=True, exclude_none=True).items():
            setattr(user, field, value)
        await self.users.session.flush()
        return user

    async def change_password(self, user: User, data: PasswordChange) -> None:
        """Needs the current password; revokes every token issued before."""
        check = await verify_password(data.current_password, user.password_hash)
        if not check.valid:
            raise WrongPassword()
        check_password_policy(data.new_password, user.email)
        user.password_hash = await hash_password(data.new_password)
        await self.users.session.flush()
        await self.users.bump_token_version(user)

    async def list(
        self, *, role: Role | None, query: str | None, cursor: str | None, limit: int
    ) -> tuple[list[User], str | None]:
        return await self.users.list(role=role, query=query, cursor=cursor, limit=limit)

    async def admin_update(self, actor: User, user_id: uuid.UUID, data: UserAdminUpdate) -> User:
        """Role and activity changes revoke the user's tokens at once."""
        user = await self.get(user_id)
        changed = False
        if data.role is not None and data.role.value != user.role:
            if user.id == actor.id:
                raise CannotChangeSelf()
            user.role = data.role.value
            changed = True
        if data.is_active is not None and data.is_active != user.is_active:
            if user.id == actor.id:
                raise CannotChangeSelf()
            user.is_active = data.is_active
            changed = True
        if changed:
            await self.users.session.flush()
            await self.users.bump_token_version(user)
        return user

    async def ensure_admin(
        self, *, email: str, password: str | None, data: UserCreate | None
    ) -> User:
        """`tiketi create-admin`: create the admin, or promote an existing account."""
        existing = await self.users.get_by_email(email.lower())
        if existing is not None:
            if existing.role != Role.admin.value:
                existing.role = Role.admin.value
                await self.users.session.flush()
                await self.users.bump_token_version(existing)
            if password:
                check_password_policy(password, existing.email)
                existing.password_hash = await hash_password(password)
                await self.users.session.flush()
            return existing
        if data is None:
            raise WeakPassword("A password is needed to create a new admin")
        return await self.register(data, role=Role.admin)
