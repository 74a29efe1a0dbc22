from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Boolean, CheckConstraint, Integer, String, text
from sqlalchemy.dialects.postgresql import CITEXT
from sqlalchemy.orm import Mapped, mapped_column

from tiketi.core.database import Base, Timestamps, UUIDPrimaryKey


class Role(StrEnum):
    customer = "customer"
    organizer = "organizer"
    admin = "admin"


class User(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('customer', 'organizer', 'admin')", name="role"),
        CheckConstraint("phone_number ~ '^254[17][0-9]{8}$'", name="phone_number"),
    )

    email: Mapped[str] = mapped_column(CITEXT(), unique=True)
    phone_number: Mapped[str] = mapped_column(String(12))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), server_default=text("'customer'"))
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # Bumped on password, role or activity change: every token carrying an older value dies.
    token_version: Mapped[int] = mapped_column(Integer, server_default=text("0"))

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"
