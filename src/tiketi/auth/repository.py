from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from tiketi.auth.models import LoginThrottle, RefreshToken


@dataclass(frozen=True)
class ClaimedToken:
    user_id: uuid.UUID
    family_id: uuid.UUID
    token_version: int


class RefreshTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        *,
        user_id: uuid.UUID,
        family_id: uuid.UUID,
        token_hash: str,
        token_version: int,
        ttl: timedelta,
    ) -> None:
        await self.session.execute(
            insert(RefreshToken).values(
                user_id=user_id,
                family_id=family_id,
                token_hash=token_hash,
                token_version=token_version,
                expires_at=func.now() + ttl,
            )
        )

    async def claim(self, token_hash: str) -> ClaimedToken | None:
        """Spend a live token atomically: of two concurrent claims exactly one gets the row."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.token_hash == token_hash,
                RefreshToken.used_at.is_(None),
                RefreshToken.revoked_at.is_(None),
                RefreshToken.expires_at > func.now(),
            )
            .values(used_at=func.now())
            .returning(RefreshToken.user_id, RefreshToken.family_id, RefreshToken.token_version)
        )
        row = result.one_or_none()
        return ClaimedToken(row.user_id, row.family_id, row.token_version) if row else None

    async def find(self, token_hash: str) -> RefreshToken | None:
        result = await self.session.execute(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash)
        )
        return result.scalar_one_or_none()

    async def revoke_family(self, family_id: uuid.UUID) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )

    async def purge_expired(self, older_than: timedelta) -> int:
        """Refresh tokens past their expiry (plus a grace period kept for reuse detection)."""
        result = await self.session.execute(
            delete(RefreshToken)
            .where(RefreshToken.expires_at < func.now() - older_than)
            .returning(RefreshToken.id)
        )
        return len(result.all())

    async def revoke_user(self, user_id: uuid.UUID) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )


class LoginThrottleRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def blocked_for(self, keys: list[tuple[str, int]], window: timedelta) -> int:
        """Seconds until the first over-limit key's window ends (0: not blocked)."""
        names = [k for k, _ in keys]
        limits = dict(keys)
        rows = await self.session.execute(
            select(
                LoginThrottle.key,
                LoginThrottle.failures,
                func.extract("epoch", LoginThrottle.window_started_at + window - func.now()),
            ).where(LoginThrottle.key.in_(names))
        )
        wait = 0
        for key, failures, remaining in rows:
            if remaining is not None and remaining > 0 and failures >= limits[key]:
                wait = max(wait, int(remaining) + 1)
        return wait

    async def record_failure(self, keys: list[str], window: timedelta) -> None:
        """Count a failure; a key whose window has passed starts a fresh window."""
        expired = LoginThrottle.window_started_at < func.now() - window
        for key in keys:
            stmt = insert(LoginThrottle).values(key=key, failures=1, window_started_at=func.now())
            stmt = stmt.on_conflict_do_update(
                index_elements=[LoginThrottle.key],
                set_={
                    "failures": case((expired, 1), else_=LoginThrottle.failures + 1),
                    "window_started_at": case(
                        (expired, func.now()), else_=LoginThrottle.window_started_at
                    ),
                },
            )
            await self.session.execute(stmt)

    async def clear(self, key: str) -> None:
        await self.session.execute(
            update(LoginThrottle).where(LoginThrottle.key == key).values(failures=0)
        )

    async def purge_older_than(self, age: timedelta) -> int:
        """Counters whose window ended long ago: they block nobody any more."""
        result = await self.session.execute(
            delete(LoginThrottle)
            .where(LoginThrottle.window_started_at < func.now() - age)
            .returning(LoginThrottle.key)
        )
        return len(result.all())
