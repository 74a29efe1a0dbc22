"""Start real `tiketi` processes and talk HTTP to them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tiketi_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tiketi", *args]


def wait_ready(base_url: str, *, timeout: float = 60.0, path: str = "/health/ready") -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(base_url + path, timeout=2)
            if response.status_code == 200:
                return
            last = response.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{base_url}{path} not ready after {timeout}s (last: {last!r})")


@contextmanager
def running(
    args: list[str], *, env: dict[str, str], log: Path, base_url: str, timeout: float = 60.0
) -> Iterator[subprocess.Popen[bytes]]:
    full_env = {**os.environ, **env}
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=full_env, stdout=out, stderr=subprocess.STDOUT)
        try:
            try:
                wait_ready(base_url, timeout=timeout)
            except TimeoutError as exc:
                proc.kill()
                raise AssertionError(f"{exc}\n--- log ---\n{log.read_text()[-4000:]}") from exc
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
