"""OPENTELEMETRY: FastAPI's native OpenTelemetry reports requests to a configured provider
only when the setting is on (tiketi's own metrics and logs need none of it)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from opentelemetry import trace

from tests.conftest import make_settings
from tiketi.main import create_app


class RecordingTracer(trace.NoOpTracer):
    def __init__(self, spans: list[str]) -> None:
        self.spans = spans

    def start_span(self, name: str, *args: Any, **kwargs: Any) -> trace.Span:
        self.spans.append(name)
        return super().start_span(name, *args, **kwargs)


class RecordingTracerProvider(trace.TracerProvider):
    """Stands in for an SDK's provider, as `opentelemetry-instrument` would install one."""

    def __init__(self) -> None:
        self.spans: list[str] = []

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return RecordingTracer(self.spans)


@pytest.mark.parametrize("enabled", [False, True])
async def test_requests_reach_a_configured_tracer_only_when_enabled(
    database_url: str, monkeypatch: pytest.MonkeyPatch, enabled: bool
) -> None:
    provider = RecordingTracerProvider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    app = create_app(make_settings(database_url, opentelemetry=enabled))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        assert (await client.get("/health/live")).status_code == 200
    assert (provider.spans != []) is enabled, provider.spans
