from collections import Counter

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute


async def test_operation_ids_are_unique_and_readable(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    ids = [op["operationId"] for path in schema["paths"].values() for op in path.values()]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert not duplicates
    for operation_id in ids:
        tag, _, function = operation_id.partition("-")
        assert tag and function, operation_id


def test_every_route_is_tagged_and_typed(app: FastAPI) -> None:
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        assert route.tags, f"{route.path} has no tag"
        has_model = route.response_model is not None
        bodyless = route.status_code == 204 or route.response_class.__name__ != "JSONResponse"
        assert has_model or bodyless, f"{route.path} {route.methods} has no response model"


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
