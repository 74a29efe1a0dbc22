"""Running Alembic from code: `tiketi migrate`, `tiketi dev`, the tests and /health/ready."""

from __future__ import annotations

import asyncio
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def _script_location() -> Path:
    installed = _PACKAGE_DIR / "_alembic"  # wheels carry the migrations inside the package
    if installed.is_dir():
        return installed
    return _PACKAGE_DIR.parent.parent / "alembic"  # a source checkout (editable install)


def alembic_config(database_url: str) -> Config:
    ini = _script_location().parent / "alembic.ini"
    config = Config(str(ini)) if ini.is_file() else Config()
    config.set_main_option("script_location", str(_script_location()))
    config.attributes["database_url"] = database_url
    config.attributes["skip_logging"] = True
    return config


def upgrade_to_head(database_url: str) -> None:
    """Blocking; runs its own event loop. From async code call it in a thread."""
    command.upgrade(alembic_config(database_url), "head")


async def upgrade_to_head_async(database_url: str) -> None:
    await asyncio.to_thread(upgrade_to_head, database_url)


@lru_cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("postgresql+asyncpg://unused/"))


def head_revisions() -> frozenset[str]:
    return frozenset(_script().get_heads())


@lru_cache
def known_revisions() -> frozenset[str]:
    return frozenset(rev.revision for rev in _script().walk_revisions())
