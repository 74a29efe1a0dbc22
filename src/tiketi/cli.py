"""The `tiketi` command: dev, serve, worker, migrate, create-admin, seed-demo, daraja-sim."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tiketi.core.observability import configure_logging
from tiketi.core.settings import ConfigurationError, Settings, get_settings

logger = logging.getLogger("tiketi.cli")

DEV_DATABASE = "tiketi"


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


def _run_uvicorn(host: str, port: int, workers: int, *, log_level: str) -> None:
    import uvicorn

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


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    with database(settings) as url:
        _migrate(url)
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


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    with database(settings) as url:
        _migrate(url)
    print("database is at the latest migration", file=sys.stderr)
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

    migrate = sub.add_parser("migrate", help="upgrade the database schema to the latest migration")
    migrate.set_defaults(handler=cmd_migrate)
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
    raise SystemExit(handler(args, settings))
