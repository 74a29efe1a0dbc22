"""Real `tiketi` processes (API servers, the Daraja simulator, a private PostgreSQL) that a
test can start, kill, stop and restart, and that are always cleaned up.

Every process is registered with a `Processes` registry (the `processes` fixture); its
teardown kills whatever is still running, so a failing test never leaves a server behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from tests.process.helpers import free_port, tiketi_command

# Outbound Daraja calls of a server that should never make any go to a closed loopback port
# (never to a developer's `tiketi dev` simulator on 8001).
NOWHERE = "http://127.0.0.1:9"


def serve_env(database_url: str, **extra: object) -> dict[str, str]:
    """The environment of a `tiketi serve` process on the test database."""
    env = {
        "DATABASE_URL": database_url,
        "TIKETI_ENV": "test",
        "JOBS_ENABLED": "false",
        "LOG_JSON": "true",
        "MPESA_BASE_URL": NOWHERE,
    }
    env.update({key.upper(): str(value) for key, value in extra.items()})
    return env


@dataclass
class ManagedProcess:
    """One child process, restartable, its output appended to `log`."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    ready_path: str | None = "/health/ready"
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _out: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        """Start the process without waiting for it (use `wait_ready`)."""
        assert not self.running(), f"{self.name} is already running"
        self._close_log()
        self._out = self.log.open("ab")
        self._out.write(f"\n===== start #{self.starts + 1} =====\n".encode())
        self._out.flush()
        self.proc = subprocess.Popen(
            self.args,
            env={**os.environ, **self.env},
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        self.starts += 1

    def start(self, timeout: float = 60.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        if self.ready_path is None:
            return
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if not self.running():
                raise AssertionError(f"{self.name} exited early\n{self.tail()}")
            try:
                response = httpx.get(self.base_url + self.ready_path, timeout=2)
                if response.status_code == 200:
                    return
                last = response.status_code
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready after {timeout}s ({last!r})\n{self.tail()}")

    async def async_wait_ready(self, timeout: float = 60.0) -> None:
        """`wait_ready` that lets the test's event loop run (for in-process servers)."""
        if self.ready_path is None:
            return
        deadline = time.monotonic() + timeout
        last: object = None
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if not self.running():
                    raise AssertionError(f"{self.name} exited early\n{self.tail()}")
                try:
                    response = await client.get(self.base_url + self.ready_path)
                    if response.status_code == 200:
                        return
                    last = response.status_code
                except httpx.HTTPError as exc:
                    last = exc
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} not ready after {timeout}s ({last!r})\n{self.tail()}")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, open connections are cut."""
        if self.running():
            assert self.proc is not None
            self.proc.kill()
        self.wait(10)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    async def async_wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} still running after {timeout}s")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def stop(self, timeout: float = 15.0) -> None:
        """SIGINT, then SIGKILL if it does not exit in time. Idempotent."""
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close_log()

    def tail(self, chars: int = 4000) -> str:
        if self._out is not None:
            self._out.flush()
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return f"--- {self.name} log ({self.log}) ---\n{text[-chars:]}"

    def _close_log(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


class Processes:
    """Everything a test started; `close()` stops whatever still runs."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[ManagedProcess] = []

    def api(
        self,
        name: str,
        env: dict[str, str],
        *,
        port: int | None = None,
        workers: int = 1,
        extra_args: tuple[str, ...] = (),
    ) -> ManagedProcess:
        """A `tiketi serve` process (not started yet)."""
        port = port or free_port()
        args = tiketi_command(
            "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)
        )
        args += extra_args
        return self._add(ManagedProcess(name, args, env, self.log_dir / f"{name}.log", port))

    def simulator(self, name: str = "daraja", *, callback_delay: float = 1.0) -> ManagedProcess:
        """A `tiketi daraja-sim` process (not started yet)."""
        port = free_port()
        args = tiketi_command(
            "daraja-sim",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--callback-delay",
            str(callback_delay),
        )
        env = {"TIKETI_ENV": "test"}
        process = ManagedProcess(name, args, env, self.log_dir / f"{name}.log", port)
        process.ready_path = "/__sim/requests"
        return self._add(process)

    def worker(self, name: str, env: dict[str, str]) -> ManagedProcess:
        """A `tiketi worker` process (background jobs only; no HTTP)."""
        process = ManagedProcess(name, tiketi_command("worker"), env, self.log_dir / f"{name}.log")
        process.ready_path = None
        return self._add(process)

    def _add(self, process: ManagedProcess) -> ManagedProcess:
        self.started.append(process)
        return process

    def close(self) -> None:
        for process in reversed(self.started):
            with contextlib.suppress(Exception):
                process.stop(timeout=10)


@contextlib.contextmanager
def processes_in(log_dir: Path) -> Iterator[Processes]:
    log_dir.mkdir(parents=True, exist_ok=True)
    registry = Processes(log_dir)
    try:
        yield registry
    finally:
        registry.close()
