"""`Idempotency-Key` for writes that move money: the same key and body replay the first
response for 24 hours; the same key with another body is 422; a concurrent duplicate is 409.

The stored response is written in the request's own transaction, so it exists exactly when
the work it describes was committed; a failed request stores nothing and may be retried.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Header
from pydantic import BaseModel
from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, func, select, text
from sqlalchemy.dialects.postgresql import JSONB, UUID, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tiketi.core.database import Base
from tiketi.core.errors import Conflict, InvalidInput

TTL = timedelta(hours=24)

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique string (e.g. a UUID): retrying with it never repeats the work",
    ),
]


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_expires_at", "expires_at"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    scope: Mapped[str] = mapped_column(String(100))
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IdempotencyKeyReused(InvalidInput):
    code = "idempotency_key_reused"

    def default_detail(self) -> str:
        return "This Idempotency-Key was used with a different request"


class IdempotencyInProgress(Conflict):
    code = "idempotency_in_progress"

    def default_detail(self) -> str:
        return "A request with this Idempotency-Key is still being processed; retry shortly"


@dataclass(frozen=True)
class Replay:
    status: int
    body: dict[str, Any]


def request_fingerprint(scope: str, body: BaseModel) -> str:
    canonical = json.dumps(
        {"scope": scope, "body": body.model_dump(mode="json")},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def try_lock(self, user_id: uuid.UUID, key: str) -> bool:
        """A transaction-scoped advisory lock on (user, key): a concurrent duplicate sees False."""
        result = await self.session.execute(
            select(func.pg_try_advisory_xact_lock(func.hashtextextended(f"{user_id}:{key}", 0)))
        )
        return bool(result.scalar_one())

    async def find(self, user_id: uuid.UUID, key: str) -> IdempotencyRecord | None:
        result = await self.session.execute(
            select(IdempotencyRecord).where(
                IdempotencyRecord.user_id == user_id,
                IdempotencyRecord.key == key,
                IdempotencyRecord.expires_at > func.now(),
            )
        )
        return result.scalar_one_or_none()

    async def store(
        self,
        *,
        user_id: uuid.UUID,
        key: str,
        scope: str,
        request_hash: str,
        status: int,
        body: dict[str, Any],
    ) -> None:
        stmt = insert(IdempotencyRecord).values(
            user_id=user_id,
            key=key,
            scope=scope,
            request_hash=request_hash,
            response_status=status,
            response_body=body,
            expires_at=func.now() + TTL,
        )
        excluded = stmt.excluded
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[IdempotencyRecord.user_id, IdempotencyRecord.key],
                set_={
                    "scope": excluded.scope,
                    "request_hash": excluded.request_hash,
                    "response_status": excluded.response_status,
                    "response_body": excluded.response_body,
                    "created_at": func.now(),
                    "expires_at": excluded.expires_at,
                },
            )
        )

    async def purge_expired(self) -> int:
        result = await self.session.execute(
            text("DELETE FROM idempotency_keys WHERE expires_at < now()")
        )
        return int(getattr(result, "rowcount", 0) or 0)


async def run_idempotent(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    key: str | None,
    scope: str,
    request: BaseModel,
    status: int,
    work: Callable[[], Awaitable[BaseModel]],
) -> tuple[int, dict[str, Any], bool]:
    """Run `work` once per (user, key): returns (status, JSON body, replayed?)."""
    if key is None:
        result = await work()
        return status, result.model_dump(mode="json"), False
    repo = IdempotencyRepository(session)
    fingerprint = request_fingerprint(scope, request)
    if not await repo.try_lock(user_id, key):
        raise IdempotencyInProgress()
    stored = await repo.find(user_id, key)
    if stored is not None:
        if stored.request_hash != fingerprint:
            raise IdempotencyKeyReused()
        return stored.response_status, stored.response_body, True
    result = await work()
    body = result.model_dump(mode="json")
    await repo.store(
        user_id=user_id, key=key, scope=scope, request_hash=fingerprint, status=status, body=body
    )
    return status, body, False
