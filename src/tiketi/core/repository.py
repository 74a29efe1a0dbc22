"""The small generic base every repository stands on. All SQL lives in repositories."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Row, Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from tiketi.core.database import Base
from tiketi.core.pagination import decode_cursor, encode_cursor

ModelT = TypeVar("ModelT", bound=Base)
# Rows and selects of any shape (SQLAlchemy 2.1 types them by their column tuple).
AnyRow = Row[*tuple[Any, ...]]
AnySelect = Select[*tuple[Any, ...]]
RowT = TypeVar("RowT")


class Repository(Generic[ModelT]):
    model: type[ModelT]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, id: uuid.UUID) -> ModelT | None:
        return await self.session.get(self.model, id)

    async def get_for_update(self, id: uuid.UUID) -> ModelT | None:
        return await self.session.get(self.model, id, with_for_update=True, populate_existing=True)

    async def add(self, obj: ModelT) -> ModelT:
        self.session.add(obj)
        await self.session.flush()
        return obj

    async def refresh(self, obj: ModelT) -> ModelT:
        await self.session.refresh(obj)
        return obj


def escape_like(text: str) -> str:
    """User text inside a LIKE pattern matches literally (`%`, `_` and `\\` lose their magic)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def keyset_page(
    session: AsyncSession,
    stmt: Select[Any],
    *,
    order: Sequence[ColumnElement[Any] | InstrumentedAttribute[Any]],
    key_types: Sequence[type | tuple[type, ...]],
    row_key: Callable[[Any], Sequence[Any]],
    cursor: str | None,
    limit: int,
    descending: bool = False,
    scalars: bool = True,
) -> tuple[list[Any], str | None]:
    """One page of `stmt` ordered by `order` (a unique key), after the row `cursor` points at."""
    if cursor is not None:
        values = decode_cursor(cursor, types=key_types)
        key = tuple_(*order)
        stmt = stmt.where(key < tuple_(*values) if descending else key > tuple_(*values))
    stmt = stmt.order_by(*(c.desc() if descending else c.asc() for c in order)).limit(limit + 1)
    result = await session.execute(stmt)
    rows = list(result.scalars().all() if scalars else result.all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(row_key(rows[-1]))
    return rows, next_cursor


__all__ = ["Repository", "keyset_page", "select"]
