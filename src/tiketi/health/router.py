"""Liveness, readiness and metrics for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from tiketi.core.errors import problem_responses
from tiketi.health.service import HealthService

router = APIRouter(tags=["health"])


class Liveness(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    database: str
    migrations: str


@router.get("/health/live", response_model=Liveness)
async def live() -> Liveness:
    """The process is up and serving (no dependencies checked)."""
    return Liveness(status="ok")


@router.get("/health/ready", response_model=Readiness, responses=problem_responses(503))
async def ready(request: Request, response: Response) -> Readiness:
    """200 when the database answers and its schema is at the latest migration, else 503."""
    report = await HealthService(request.app.state.engine).readiness()
    if report.status != "ok":
        response.status_code = 503
    return Readiness(status=report.status, database=report.database, migrations=report.migrations)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus exposition"}},
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: requests and latency by route template and status, DB pool usage."""
    data = generate_latest(request.app.state.metrics.registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)
