"""JSON answers serialized once, by pydantic.

A handler that returns a model makes FastAPI validate it again against `response_model`,
turn it into dicts and `json.dumps` those: three passes over every item of a page. For hot
reads (search pages, the cached event document) the model is already what the contract
says, so it is encoded straight to bytes; the route keeps `response_model` for the document.
"""

from __future__ import annotations

from pydantic import BaseModel
from starlette.responses import Response


def to_json(model: BaseModel) -> bytes:
    return type(model).__pydantic_serializer__.to_json(model, by_alias=True)


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    return Response(to_json(model), status_code=status_code, media_type="application/json")
