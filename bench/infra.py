"""What the benchmark starts and stops: a scratch PostgreSQL database, server processes.

Everything started here is registered on an `AsyncExitStack` and stopped on the way out,
also on Ctrl-C or an error. Child processes additionally get PR_SET_PDEATHSIG, so even a
benchmark killed with SIGKILL does not leave servers behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench.http import LOOPBACK, fetch, render

ROOT = Path(__file__).resolve().parent.parent
WORK_DIR = ROOT / "bench" / ".work"
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
SCRATCH_PREFIX = "tiketi_bench"
# Several sessions may benchmark on one machine at once: every name this run creates (scratch
# databases, log folder) carries its process id, and leftovers of dead runs are removed.
RUN_ID = str(os.getpid())
LOG_DIR = WORK_DIR / "logs" / RUN_ID


def scratch_name(short: str) -> str:
    return f"{SCRATCH_PREFIX}_{RUN_ID}_{short}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_SAFE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


# -- the database ----------------------------------------------------------------------------


@dataclass
class DatabaseServer:
    """A PostgreSQL server we may create scratch databases on."""

    admin_dsn: str  # asyncpg DSN of the maintenance database
    kind: str  # "local" (127.0.0.1:5432) or "embedded"
    version: str = ""
    _embedded: Any = None
    created: list[str] = field(default_factory=list)

    def dsn(self, name: str) -> str:
        """asyncpg DSN of database `name` on this server."""
        if self.kind == "embedded":
            url: str = self._embedded.url(name)
            return url.replace("postgresql+asyncpg://", "postgresql://", 1)
        return self.admin_dsn.rsplit("/", 1)[0] + "/" + name

    def url(self, name: str) -> str:
        """SQLAlchemy URL of database `name` (what DATABASE_URL gets)."""
        return self.dsn(name).replace("postgresql://", "postgresql+asyncpg://", 1)

    async def create(self, name: str, *, template: str | None = None) -> str:
        if not _SAFE_NAME.fullmatch(name):
            raise ValueError(f"unsafe database name {name!r}")
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            suffix = f' TEMPLATE "{template}"' if template else ""
            await conn.execute(f'CREATE DATABASE "{name}"{suffix}')
        finally:
            await conn.close()
        self.created.append(name)
        return name

    async def drop(self, name: str) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        if name in self.created:
            self.created.remove(name)


async def _reachable(dsn: str) -> str | None:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def _drop_leftovers(server: DatabaseServer) -> None:
    """Scratch databases of benchmark runs whose process is gone (killed with SIGKILL)."""
    conn = await asyncpg.connect(server.admin_dsn)
    try:
        names = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{SCRATCH_PREFIX}_%"
        )
    finally:
        await conn.close()
    pattern = re.compile(rf"{SCRATCH_PREFIX}_(\d+)_[a-z_]+")
    for row in names:
        match = pattern.fullmatch(row["datname"])
        if match and not _pid_alive(int(match.group(1))):
            with contextlib.suppress(Exception):
                await server.drop(row["datname"])


@contextlib.asynccontextmanager
async def database_server(prefer_local: bool = True) -> AsyncIterator[DatabaseServer]:
    """The local PostgreSQL on 127.0.0.1:5432 if it answers, else the embedded server
    (started here, stopped after). Scratch databases created on it are dropped on exit."""
    server: DatabaseServer
    version = await _reachable(LOCAL_SERVER) if prefer_local else None
    embedded = None
    if version is not None:
        server = DatabaseServer(admin_dsn=LOCAL_SERVER, kind="local", version=version)
    else:
        from tiketi.core.embedded import start_embedded

        embedded = await asyncio.to_thread(start_embedded, WORK_DIR / "embedded")
        dsn = embedded.url("postgres").replace("postgresql+asyncpg://", "postgresql://", 1)
        server = DatabaseServer(admin_dsn=dsn, kind="embedded", _embedded=embedded)
        server.version = await _reachable(dsn) or "?"
    await _drop_leftovers(server)
    try:
        yield server
    finally:
        for name in list(server.created):
            with contextlib.suppress(Exception):
                await server.drop(name)
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


# -- processes -------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def clean_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """Our environment minus every tiketi setting a developer may have exported (so runs are
    comparable), plus `extra`."""
    from tiketi.core.settings import Settings

    names = {name.upper() for name in Settings.model_fields} | {"TIKETI_DATA_DIR"}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    async def stop(self, grace: float = 20.0) -> None:
        """SIGINT (uvicorn's graceful stop), then SIGTERM, then SIGKILL."""
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0)):
            if not self.alive():
                return
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)
            deadline = time.monotonic() + wait
            while self.alive() and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a child
                await asyncio.sleep(0.05)
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()
            await asyncio.to_thread(self.popen.wait, 5)


def start_process(
    name: str, args: Sequence[str], *, env: Mapping[str, str], port: int | None = None
) -> Process:
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            list(args),
            env=dict(env),
            cwd=WORK_DIR,  # no stray .env file from the checkout is read
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children
            preexec_fn=_die_with_parent,  # the child dies with us, even on SIGKILL
        )
    return Process(name=name, popen=popen, log=log, port=port)


async def wait_http(process: Process, path: str, *, within: float = 60.0) -> None:
    """Until `path` answers 200 on the process's port (or the process dies)."""
    assert process.port is not None
    raw = render("GET", path)
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited early:\n{process.tail()}")
        try:
            response = await fetch(process.port, raw, within=2)
            if response.status == 200:
                return
            last = response.status
        except (OSError, TimeoutError, Exception) as exc:
            last = exc
        await asyncio.sleep(0.1)
    raise RuntimeError(
        f"{process.name} not ready after {within}s (last: {last!r}):\n{process.tail()}"
    )


@dataclass
class ApiConfig:
    """The settings every API process of a run gets (secrets are per run, random)."""

    database_url: str
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    callback_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    jwt_issuer: str = "tiketi"
    jwt_audience: str = "tiketi-api"
    access_token_ttl_seconds: int = 3600
    mpesa_port: int = 0  # 0: a port where nothing listens (no job talks to Daraja)

    def env(self, api_port: int, **extra: str) -> dict[str, str]:
        values = {
            "DATABASE_URL": self.database_url,
            "TIKETI_ENV": "test",
            "JWT_SECRET": self.jwt_secret,
            "JWT_ISSUER": self.jwt_issuer,
            "JWT_AUDIENCE": self.jwt_audience,
            "ACCESS_TOKEN_TTL_SECONDS": str(self.access_token_ttl_seconds),
            "JOBS_ENABLED": "false",
            "MPESA_ENV": "simulator",
            "MPESA_BASE_URL": f"http://{LOOPBACK}:{self.mpesa_port or free_port()}",
            "MPESA_CALLBACK_BASE_URL": f"http://{LOOPBACK}:{api_port}",
            "MPESA_CALLBACK_TOKEN": self.callback_token,
            "LOG_LEVEL": "WARNING",
        }
        values.update(extra)
        return clean_environment(values)

    def token_codec(self) -> Any:
        from tiketi.core.security import TokenCodec

        return TokenCodec(
            secret=self.jwt_secret,
            algorithm="HS256",
            issuer=self.jwt_issuer,
            audience=self.jwt_audience,
            ttl_seconds=self.access_token_ttl_seconds,
        )


async def start_api(
    stack: contextlib.AsyncExitStack,
    config: ApiConfig,
    *,
    name: str,
    workers: int,
    src: str | None = None,
    **extra_env: str,
) -> Process:
    """`python -m tiketi serve` on a free loopback port, ready (GET /health/ready is 200).
    `src`: import tiketi from that directory instead (A/B runs against a modified copy)."""
    port = free_port()
    if src:
        extra_env["PYTHONPATH"] = src
    process = start_process(
        name,
        [
            sys.executable,
            "-m",
            "tiketi",
            "serve",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=config.env(port, **extra_env),
        port=port,
    )
    stack.push_async_callback(process.stop)
    await wait_http(process, "/health/ready")
    return process


async def start_daraja_simulator(
    stack: contextlib.AsyncExitStack, *, callback_delay: float, env: Mapping[str, str]
) -> Process:
    port = free_port()
    process = start_process(
        "daraja-sim",
        [
            sys.executable,
            "-m",
            "tiketi",
            "daraja-sim",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--callback-delay",
            str(callback_delay),
        ],
        env=env,
        port=port,
    )
    stack.push_async_callback(process.stop)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"daraja-sim exited early:\n{process.tail()}")
        with contextlib.suppress(OSError):
            _reader, writer = await asyncio.open_connection(LOOPBACK, port)
            writer.close()
            return process
        await asyncio.sleep(0.1)
    raise RuntimeError(f"daraja-sim did not listen on {port}:\n{process.tail()}")


# -- /proc readings --------------------------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (uvicorn's workers)."""
    found = [pid]
    index = 0
    while index < len(found):
        current = found[index]
        index += 1
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of the processes (children that already exited are not counted)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def machine_busy() -> tuple[float, float]:
    """(busy jiffies, total jiffies) of all CPUs, for the share of the machine in use."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return float(total - idle), float(total)


class CpuWindow:
    """CPU used by the server processes and by the whole machine between start() and stop()."""

    def __init__(self, server_pids: Sequence[int] = ()) -> None:
        self.server_pids = list(server_pids)
        self.server_cpu = 0.0
        self.machine_share = 0.0
        self._server_start = 0.0
        self._machine_start = (0.0, 0.0)

    def start(self) -> CpuWindow:
        self._server_start = cpu_seconds(self.server_pids)
        self._machine_start = machine_busy()
        return self

    def stop(self) -> CpuWindow:
        self.server_cpu = cpu_seconds(self.server_pids) - self._server_start
        busy, total = machine_busy()
        elapsed = total - self._machine_start[1]
        self.machine_share = (busy - self._machine_start[0]) / elapsed if elapsed else 0.0
        return self

    def summary(self, wall: float) -> dict[str, float]:
        return {
            "server_cpu_s": round(self.server_cpu, 3),
            "server_cpu_cores": round(self.server_cpu / wall, 3) if wall else 0.0,
            "machine_busy_share": round(self.machine_share, 3),
        }


def machine_info() -> dict[str, Any]:
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu": cpu_model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }
