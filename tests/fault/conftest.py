"""Crash and fault tests: real processes killed, stopped and restarted on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.servers import Processes, processes_in


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Start processes through this; whatever still runs at the end is stopped (or killed)."""
    with processes_in(tmp_path / "logs") as registry:
        yield registry
