"""The models and the migrations describe the same schema (what `alembic check` verifies)."""

import asyncio

from alembic import command

from tiketi.core.migrations import alembic_config, head_revisions


async def test_no_drift_between_models_and_migrations(database_url: str) -> None:
    # `command.check` raises when autogenerate would produce any operation.
    await asyncio.to_thread(command.check, alembic_config(database_url))


async def test_upgrade_is_idempotent(database_url: str) -> None:
    from tiketi.core.migrations import upgrade_to_head

    await asyncio.to_thread(upgrade_to_head, database_url)
    assert len(head_revisions()) == 1
