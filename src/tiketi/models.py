"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from tiketi.core.database import Base

metadata = Base.metadata

__all__ = ["Base", "metadata"]
