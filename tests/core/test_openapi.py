import inspect
from collections import Counter
from collections.abc import Iterator

import httpx
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts


def api_routes(app: FastAPI) -> list[tuple[str, APIRoute]]:
    """Every API route with its full path. FastAPI 0.165 keeps included routers as such in
    `app.routes`, so a plain walk over it sees none of the routers' routes."""
    found = [
        (context.path or "", context.original_route)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
    ]
    assert len(found) > 30, "the walk lost the routers' routes"
    return found


async def test_operation_ids_are_unique_and_readable(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    ids = [op["operationId"] for path in schema["paths"].values() for op in path.values()]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert not duplicates
    for operation_id in ids:
        tag, _, function = operation_id.partition("-")
        assert tag and function, operation_id


def test_every_route_is_tagged_and_typed(app: FastAPI) -> None:
    for path, route in api_routes(app):
        if not route.include_in_schema:
            continue
        assert route.tags, f"{path} has no tag"
        has_model = route.response_model is not None
        response_class = getattr(route.response_class, "value", route.response_class)
        bodyless = route.status_code == 204 or response_class.__name__ != "JSONResponse"
        assert has_model or bodyless, f"{path} {route.methods} has no response model"


async def test_errors_are_documented_as_problem_json(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert "Problem" in schema["components"]["schemas"]
    for path in schema["paths"].values():
        for op in path.values():
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")) and "content" in response:
                    assert set(response["content"]) == {"application/problem+json"}


async def test_docs_pages(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    assert (await client.get("/redoc")).status_code == 200


def test_no_route_or_dependency_runs_in_the_threadpool(app: FastAPI) -> None:
    """FastAPI runs a plain `def` endpoint or dependency in a worker thread on every request:
    a thread hop and two wake-ups, which on the hold path cost ~8% of the API's CPU. Blocking
    work (hashing, QR rendering) is sent to threads explicitly instead."""

    def is_async(call: object) -> bool:
        return (
            inspect.iscoroutinefunction(call)
            or inspect.isasyncgenfunction(call)
            or (
                not inspect.isroutine(call)
                and inspect.iscoroutinefunction(getattr(call, "__call__", None))  # noqa: B004
            )
        )

    def dependencies(dependant: Dependant) -> Iterator[Dependant]:
        for sub in dependant.dependencies:
            yield sub
            yield from dependencies(sub)

    offenders = set()
    for path, route in api_routes(app):
        for dependant in [route.dependant, *dependencies(route.dependant)]:
            if dependant.call is not None and not is_async(dependant.call):
                offenders.add(f"{path}: {getattr(dependant.call, '__qualname__', dependant.call)}")
    # Sign-in's form is FastAPI's own class (its __init__ runs in a thread): one hop next to
    # an argon2 verification, left as FastAPI documents it.
    assert offenders == {"/auth/token: OAuth2PasswordRequestForm"}


async def test_tags_are_described_in_reading_order(client: httpx.AsyncClient) -> None:
    """Routers are included busiest first (matching order); the documentation keeps its own
    order through `openapi_tags`, which must name every tag in use."""
    schema = (await client.get("/openapi.json")).json()
    declared = [tag["name"] for tag in schema["tags"]]
    assert declared[:3] == ["health", "auth", "users"]
    assert all(tag["description"] for tag in schema["tags"])
    used = {op["tags"][0] for path in schema["paths"].values() for op in path.values()}
    assert used <= set(declared)
