"""QueryModelRoute serves a query-parameter model exactly as FastAPI's own route does: same
values, same defaults, same 422 bodies, same OpenAPI document — only cheaper."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Query, Request, Response
from pydantic import BaseModel, Field

from tiketi.core.errors import install_error_handlers
from tiketi.core.routing import QueryModelRoute
from tiketi.search.schemas import SearchParams


class Lenient(BaseModel):
    """Unknown parameters ignored (pydantic's default), a repeatable int, a required field."""

    name: str
    counts: list[int] = Field(default_factory=list)
    labels: Sequence[str] | None = None
    codes: frozenset[str] = frozenset()
    flag: bool = False


async def search(params: Annotated[SearchParams, Query()], request: Request) -> Response:
    return Response(params.model_dump_json(), media_type="application/json")


async def lenient(params: Annotated[Lenient, Query()], request: Request) -> Response:
    return Response(params.model_dump_json(), media_type="application/json")


def _app(endpoint: Callable[..., Awaitable[Response]]) -> FastAPI:
    """The same endpoint twice: /plain on FastAPI's route, /fast on QueryModelRoute."""
    app = FastAPI()
    install_error_handlers(app)
    plain = APIRouter()
    plain.add_api_route("/plain", endpoint, methods=["GET"])
    fast = APIRouter(route_class=QueryModelRoute)
    fast.add_api_route("/fast", endpoint, methods=["GET"])
    app.include_router(plain)
    app.include_router(fast)
    return app


SEARCH_QUERIES = [
    "",
    "q=jazz",
    "q=jazz&q=reggae",  # a scalar given twice: the last one
    "q=%20%20",
    "q=" + "x" * 201,
    "tags=a,b&tags=c",
    "tags=",
    "tags=" + ",".join(f"t{n}" for n in range(11)),
    "city=Nairobi&category=music&sort=price&limit=50",
    "category=Music",
    "category=",
    "sort=cheapest",
    "limit=0",
    "limit=101",
    "limit=ten",
    "min_price=2000&max_price=100",
    "min_price=-1",
    "max_price=1.5",
    "date_from=2026-12-24&date_to=2026-12-01",
    "date_from=2026-12-24T18:00:00",
    "date_from=2026-12-24T18:00:00%2B03:00",
    "date_from=0.5",
    "free=yes",
    "free=maybe",
    "unknown=1",
    "unknown=1&unknown=2&other=x",
    "q=jazz&unknown=1&limit=0",
    "cursor=" + "c" * 1025,
    "q=%00drop",
]

LENIENT_QUERIES = [
    "",
    "name=a",
    "name=a&counts=1&counts=2",
    "name=a&labels=x&labels=y&codes=p&codes=q&codes=p",
    "name=a&labels=x",
    "name=a&counts=x",
    "name=a&name=b&flag=true&extra=1",
    "counts=1",
]


@pytest.mark.parametrize(
    ("endpoint", "queries"),
    [(search, SEARCH_QUERIES), (lenient, LENIENT_QUERIES)],
    ids=["SearchParams", "Lenient"],
)
async def test_answers_are_fastapis_own(
    endpoint: Callable[..., Awaitable[Response]], queries: list[str]
) -> None:
    statuses = set()
    transport = httpx.ASGITransport(app=_app(endpoint))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for query in queries:
            plain = await client.get(f"/plain?{query}")
            fast = await client.get(f"/fast?{query}")
            assert (fast.status_code, fast.json()) == (plain.status_code, plain.json()), query
            assert fast.headers["content-type"] == plain.headers["content-type"], query
            statuses.add(fast.status_code)
    assert statuses == {200, 422}  # both outcomes compared


def test_the_document_is_fastapis_own() -> None:
    paths = _app(search).openapi()["paths"]
    assert paths["/fast"]["get"]["parameters"] == paths["/plain"]["get"]["parameters"]
    assert [p["name"] for p in paths["/fast"]["get"]["parameters"]] == list(
        SearchParams.model_fields
    )


async def with_an_int(params: Annotated[Lenient, Query()], request: Request, x: int) -> Response:
    raise AssertionError


async def without_request(params: Annotated[Lenient, Query()]) -> Response:
    raise AssertionError


async def two_models(
    a: Annotated[Lenient, Query()], b: Annotated[SearchParams, Query()], request: Request
) -> Response:
    raise AssertionError


def test_an_endpoint_taking_anything_else_is_refused_when_the_app_is_built() -> None:
    for endpoint in (with_an_int, without_request, two_models):
        router = APIRouter(route_class=QueryModelRoute)
        with pytest.raises(TypeError):
            router.add_api_route("/x", endpoint, methods=["GET"])
