from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from tiketi.core.repository import Repository, escape_like, keyset_page
from tiketi.users.models import Role, User


class UserRepository(Repository[User]):
    model = User

    async def get_by_email(self, email: str) -> User | None:
        result = await self.session.execute(select(User).where(User.email == email))
        return result.scalar_one_or_none()

    async def insert(self, **values: object) -> User | None:
        """The new user, or None when the email is taken (decided by the unique index)."""
        stmt = (
            insert(User)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[User.email])
            .returning(User)
        )
        result = await self.session.execute(stmt)
        return result.scalar_one_or_none()

    async def bump_token_version(self, user: User) -> None:
        await self.session.execute(
            update(User).where(User.id == user.id).values(token_version=User.token_version + 1)
        )
        await self.session.refresh(user)

    async def list(
        self, *, role: Role | None, query: str | None, cursor: str | None, limit: int
    ) -> tuple[list[User], str | None]:
        stmt = select(User)
        if role is not None:
            stmt = stmt.where(User.role == role.value)
        if query:
            pattern = "%" + escape_like(query) + "%"
            stmt = stmt.where(
                or_(
                    User.email.ilike(pattern, escape="\\"),
                    func.concat(User.first_name, " ", User.last_name).ilike(pattern, escape="\\"),
                )
            )
        return await keyset_page(
            self.session,
            stmt,
            order=[User.created_at, User.id],
            key_types=(datetime, uuid.UUID),
            row_key=lambda u: [u.created_at, u.id],
            cursor=cursor,
            limit=limit,
            descending=True,
        )
