"""The `tiketi` command: dev, serve, worker, migrate, create-admin, seed-demo, daraja-sim."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tiketi.core.observability import configure_logging
from tiketi.core.settings import ConfigurationError, Settings, get_settings

logger = logging.getLogger("tiketi.cli")

DEV_DATABASE = "tiketi"
T = TypeVar("T")


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The configured DATABASE_URL, or the embedded server's (started here, stopped after)."""
    if settings.database_url:
        yield settings.database_url
        return
    from tiketi.core.embedded import ensure_database_sync, start_embedded

    server = start_embedded(settings.data_dir)
    try:
        ensure_database_sync(server.url(), DEV_DATABASE)
        url = server.url(DEV_DATABASE)
        # Child processes (uvicorn workers, the reloader) inherit the embedded URL.
        os.environ["DATABASE_URL"] = url
        get_settings.cache_clear()
        yield url
    finally:
        server.stop()


def _migrate(url: str) -> None:
    from tiketi.core.migrations import upgrade_to_head

    logger.info("migrating the database to head")
    upgrade_to_head(url)


def _exit_cleanly(signum: int, frame: object) -> None:
    """uvicorn re-raises the SIGTERM it handled once its graceful shutdown is done; ending
    with SystemExit(0) instead of dying by the signal lets our context managers stop the
    embedded database and the simulator."""
    raise SystemExit(0)


def _run_uvicorn(host: str, port: int, workers: int, *, log_level: str) -> None:
    import signal

    import uvicorn

    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        "tiketi.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        timeout_graceful_shutdown=20,
        log_level=log_level.lower(),
        log_config=None,
    )


def _run_with_session(
    url: str, settings: Settings, work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]
) -> T:
    from tiketi.core.database import create_engine, create_sessionmaker

    async def run() -> T:
        engine = create_engine(settings, database_url=url)
        try:
            return await work(create_sessionmaker(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _seed_demo(url: str, settings: Settings, *, events: int = 0) -> None:
    from functools import partial

    from tiketi.demo import seed_demo

    _run_with_session(url, settings, partial(seed_demo, generate_events=events))


@contextmanager
def daraja_simulator(settings: Settings, api_port: int) -> Iterator[None]:
    """With MPESA_ENV=simulator, run the local Daraja next to the API (a child process)."""
    import subprocess
    from urllib.parse import urlsplit

    from tiketi.core.settings import MpesaEnvironment

    if settings.mpesa_env is not MpesaEnvironment.simulator:
        yield
        return
    parts = urlsplit(settings.mpesa_base_url or "http://127.0.0.1:8001")
    os.environ.setdefault("MPESA_CALLBACK_BASE_URL", f"http://127.0.0.1:{api_port}")
    get_settings.cache_clear()
    command = [
        sys.executable,
        "-m",
        "tiketi",
        "daraja-sim",
        "--host",
        parts.hostname or "127.0.0.1",
        "--port",
        str(parts.port or 8001),
        "--callback-delay",
        str(settings.mpesa_simulator_callback_delay_seconds),
    ]
    child = subprocess.Popen(command)  # noqa: S603 - our own command
    try:
        yield
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    if settings.is_production:
        print("tiketi dev is for development; use `tiketi serve` in production", file=sys.stderr)
        return 2
    with database(settings) as url, daraja_simulator(settings, args.port):
        _migrate(url)
        _seed_demo(url, settings)
        print(
            f"\n  tiketi is starting on http://{args.host}:{args.port}  "
            f"(API docs: http://{args.host}:{args.port}/docs)\n",
            file=sys.stderr,
        )
        _run_uvicorn(args.host, args.port, 1, log_level=settings.log_level)
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    with database(settings) as url:
        if args.migrate:
            _migrate(url)
        _run_uvicorn(args.host, args.port, args.workers, log_level=settings.log_level)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Background jobs only (hold expiry, payment reconciliation), no HTTP."""
    import signal

    from tiketi.core.database import create_engine, create_sessionmaker
    from tiketi.core.jobs import JobRunner
    from tiketi.jobs import application_jobs

    async def run(url: str) -> None:
        import httpx

        from tiketi.payments.gateway import build_gateway
        from tiketi.payments.service import PaymentService

        engine = create_engine(settings, database_url=url)
        sessions = create_sessionmaker(engine)
        http = httpx.AsyncClient(limits=httpx.Limits(max_connections=20))
        payments = PaymentService(sessions, build_gateway(settings, http), settings)
        runner = JobRunner(
            sessions, application_jobs(payments), interval=settings.jobs_interval_seconds
        )
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runner.start()
        logger.info("worker started", extra={"interval": settings.jobs_interval_seconds})
        await stop.wait()
        await runner.stop()
        await http.aclose()
        await engine.dispose()

    with database(settings) as url:
        asyncio.run(run(url))
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    with database(settings) as url:
        _migrate(url)
    print("database is at the latest migration", file=sys.stderr)
    return 0


def cmd_daraja_sim(args: argparse.Namespace, settings: Settings) -> int:
    from tiketi.payments.mpesa.simulator import run_simulator, simulator_allowed

    if not simulator_allowed(settings.tiketi_env.value):
        print("the Daraja simulator is disabled in production", file=sys.stderr)
        return 2
    run_simulator(args.host, args.port, args.callback_delay, log_level="warning")
    return 0


def cmd_seed_demo(args: argparse.Namespace, settings: Settings) -> int:
    if settings.is_production:
        print("refusing to seed demo data in production", file=sys.stderr)
        return 2
    with database(settings) as url:
        _seed_demo(url, settings, events=args.events)
    print("demo data ready (accounts: see README)", file=sys.stderr)
    return 0


def cmd_create_admin(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from tiketi.core.errors import TiketiError
    from tiketi.users.schemas import UserCreate
    from tiketi.users.service import UserService

    password = args.password or os.environ.get("TIKETI_ADMIN_PASSWORD")
    if not password and sys.stdin.isatty():
        password = getpass.getpass("Password for the new admin: ")
    try:
        data = (
            UserCreate(
                email=args.email,
                password=password or "",
                first_name=args.first_name,
                last_name=args.last_name,
                phone_number=args.phone,
            )
            if password
            else None
        )
    except ValidationError as exc:
        print(f"tiketi: invalid admin details: {exc}", file=sys.stderr)
        return 2

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
        async with sessionmaker() as session, session.begin():
            user = await UserService(session).ensure_admin(
                email=args.email, password=password, data=data
            )
            return user.email

    with database(settings) as url:
        try:
            email = _run_with_session(url, settings, work)
        except TiketiError as exc:
            print(f"tiketi: {exc.detail}", file=sys.stderr)
            return 2
    print(f"{email} is an admin", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tiketi", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser(
        "dev", help="run locally: embedded PostgreSQL (if DATABASE_URL is unset), demo data, API"
    )
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.set_defaults(handler=cmd_dev)

    serve = sub.add_parser("serve", help="run the API server (production)")
    serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server binds all interfaces
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--migrate", action="store_true", help="upgrade the database before serving")
    serve.set_defaults(handler=cmd_serve)

    worker = sub.add_parser("worker", help="run the background jobs only (no HTTP)")
    worker.set_defaults(handler=cmd_worker)

    migrate = sub.add_parser("migrate", help="upgrade the database schema to the latest migration")
    migrate.set_defaults(handler=cmd_migrate)

    sim = sub.add_parser("daraja-sim", help="run the local M-Pesa Daraja simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8001)
    sim.add_argument(
        "--callback-delay", type=float, default=3.0, help="seconds before the callback is sent"
    )
    sim.set_defaults(handler=cmd_daraja_sim)

    seed = sub.add_parser("seed-demo", help="add demo accounts and events (development only)")
    seed.add_argument(
        "--events",
        type=int,
        default=0,
        metavar="N",
        help="also generate N realistic published events (e.g. 100000 to try search at scale)",
    )
    seed.set_defaults(handler=cmd_seed_demo)

    admin = sub.add_parser("create-admin", help="create the first admin (or promote an account)")
    admin.add_argument("--email", required=True)
    admin.add_argument("--password", help="or TIKETI_ADMIN_PASSWORD, or asked at a prompt")
    admin.add_argument("--first-name", default="Admin")
    admin.add_argument("--last-name", default="Tiketi")
    admin.add_argument("--phone", default="0700000000")
    admin.set_defaults(handler=cmd_create_admin)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        print(f"tiketi: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, json_lines=settings.log_json)
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    try:
        code = handler(args, settings)
    except KeyboardInterrupt:  # Ctrl-C after a clean shutdown: not an error
        code = 0
    raise SystemExit(code)
