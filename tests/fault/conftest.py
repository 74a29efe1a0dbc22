"""Crash and fault tests: real processes killed, stopped and restarted on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.servers import Processes, processes_in


def pytest_configure(config: pytest.Config) -> None:
    # Until the marker joins pyproject.toml's list (which --strict-markers reads).
    config.addinivalue_line(
        "markers", "fault: crash and fault-injection tests (kill, stop, restart processes)"
    )


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Start processes through this; whatever still runs at the end is stopped (or killed)."""
    with processes_in(tmp_path / "logs") as registry:
        yield registry
