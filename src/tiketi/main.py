"""The application factory: settings, lifespan resources, middleware, error handlers, routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

import tiketi
from tiketi.auth.router import router as auth_router
from tiketi.core.database import ConnectionQueue, create_engine, create_sessionmaker
from tiketi.core.errors import (
    PROBLEM_MEDIA_TYPE,
    Problem,
    install_error_handlers,
    problem_responses,
)
from tiketi.core.jobs import JobRunner
from tiketi.core.observability import Metrics, RequestContextMiddleware
from tiketi.core.security import TokenCodec
from tiketi.core.settings import Settings, get_settings
from tiketi.events.cache import public_event_cache
from tiketi.events.live import AvailabilityBroadcaster
from tiketi.events.router import categories_router
from tiketi.events.router import router as events_router
from tiketi.events.stream_router import router as events_stream_router
from tiketi.health.router import router as health_router
from tiketi.jobs import application_jobs
from tiketi.orders.router import router as orders_router
from tiketi.orders.sold_out import SoldOutTiers
from tiketi.payments.gateway import build_gateway
from tiketi.payments.router import router as payments_router
from tiketi.payments.service import PaymentService
from tiketi.search.router import router as search_router
from tiketi.tickets.router import router as tickets_router
from tiketi.users.router import router as users_router

DESCRIPTION = """
Tiketi sells event tickets in Kenya: organizers publish events with ticket tiers, customers
hold tickets, pay with M-Pesa (STK push) and receive QR tickets that are scanned once at the gate.

Errors are `application/problem+json` with a stable `code`. Lists are keyset-paginated
(`limit`, `cursor` → `next_cursor`). Use **Authorize** with your email and password.
"""


OPENAPI_TAGS = [
    {"name": "health", "description": "Liveness and readiness probes."},
    {"name": "auth", "description": "Sign in (OAuth2 password flow), refresh, sign out."},
    {"name": "users", "description": "Accounts: register, your profile, admin user management."},
    {"name": "categories", "description": "Event categories."},
    {"name": "events", "description": "Events and their ticket tiers; live availability (SSE)."},
    {"name": "orders", "description": "Hold tickets, read and cancel your orders."},
    {"name": "tickets", "description": "Your tickets, their QR codes, gate check-in."},
    {"name": "payments", "description": "M-Pesa STK push and Daraja's callbacks."},
    {"name": "search", "description": "Full-text search with filters over published events."},
]


def operation_id(route: APIRoute) -> str:
    """Stable `<tag>-<function>` ids, so generated clients get readable method names."""
    tag = str(route.tags[0]) if route.tags else "default"
    return f"{tag}-{route.name}"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.engine = engine
        # The same pool, each connection in autocommit while checked out (set and reset
        # without a round trip): for a request whose work is one statement (a hold; a search
        # goes to the driver directly, `driver_connection`).
        app.state.autocommit_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.connection_queue = ConnectionQueue.from_settings(settings)
        availability = AvailabilityBroadcaster.from_settings(settings, app.state.sessionmaker)
        app.state.public_events = public_event_cache(settings, app.state.sessionmaker)
        availability.on_change(app.state.public_events.forget)
        app.state.sold_out = SoldOutTiers(ttl_seconds=settings.public_cache_seconds)
        availability.on_change(app.state.sold_out.forget)
        await availability.start()
        app.state.availability = availability
        metrics.watch_engine(engine)
        # One HTTP client per process for Daraja (connection reuse, bounded pool).
        http = httpx.AsyncClient(limits=httpx.Limits(max_connections=50))
        app.state.mpesa = build_gateway(settings, http)
        runner = JobRunner(
            app.state.sessionmaker,
            application_jobs(PaymentService(app.state.sessionmaker, app.state.mpesa, settings)),
            interval=settings.jobs_interval_seconds,
        )
        app.state.jobs = runner
        if settings.jobs_enabled:
            runner.start()
        try:
            yield
        finally:
            await availability.stop()  # first: its reads use the engine
            await runner.stop()
            await http.aclose()
            await engine.dispose()

    app = FastAPI(
        title="tiketi",
        version=tiketi.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        responses=problem_responses(400, 422),
        openapi_tags=OPENAPI_TAGS,
        telemetry=None
        if settings.opentelemetry
        else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.token_codec = TokenCodec(
        secret=settings.jwt_secret,
        algorithm=settings.jwt_algorithm,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_ttl_seconds,
    )
    install_error_handlers(app)

    # Routes are matched in this order, one pattern after another: the busiest first (a
    # sold-out answer in a flash sale spent 17% of its CPU matching when /orders came 7th;
    # a search behind four routers spent ~3% more than second). The documentation's order
    # is OPENAPI_TAGS'.
    app.include_router(orders_router)
    app.include_router(search_router)
    app.include_router(events_router)
    app.include_router(payments_router)
    app.include_router(events_stream_router)
    app.include_router(tickets_router)
    app.include_router(health_router)
    app.include_router(auth_router)
    app.include_router(users_router)
    app.include_router(categories_router)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials and "*" not in settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(
        RequestContextMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes
    )
    _install_openapi(app)
    return app


def _install_openapi(app: FastAPI) -> None:
    """Error responses are documented as `application/problem+json` only (what we send)."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = default_openapi()
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if status[:1] in "45" and PROBLEM_MEDIA_TYPE in content:
                        for media_type in [m for m in content if m != PROBLEM_MEDIA_TYPE]:
                            del content[media_type]
        schema.setdefault("components", {}).setdefault("schemas", {}).setdefault(
            "Problem", Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
