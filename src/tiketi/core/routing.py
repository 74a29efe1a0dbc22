"""A route class for hot GET endpoints whose whole input is one query-parameter model."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Coroutine, Sequence, Set
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class QueryModelRoute(APIRoute):
    """A route whose endpoint takes a query-parameter model (`Annotated[Model, Query()]`) and
    the `Request`, and returns a `Response`.

    FastAPI still reads the signature, so the OpenAPI document (every parameter, its schema
    and description) is exactly what a plain route gives. Only serving differs: the query
    string is validated by one `Model.model_validate` call instead of FastAPI's extraction
    field by field and its dependency solving, which cost ~12% of a search's CPU in the
    benchmark (docs/search.md, "The query model in one call"). Values, defaults, unknown
    parameters and 422 errors are the same as FastAPI's (tests/core/test_routing.py compares
    the two on one model, request for request).
    """

    def get_route_handler(self) -> Handler:
        endpoint = self.endpoint
        model_arg, model, request_arg = _endpoint_arguments(self)
        sequences = frozenset(
            name for name, field in model.model_fields.items() if _is_sequence(field.annotation)
        )

        async def handler(request: Request) -> Response:
            values = _query_values(request.query_params, model.model_fields, sequences)
            try:
                params = model.model_validate(values)
            except ValidationError as exc:
                raise RequestValidationError(
                    [
                        {**error, "loc": ("query", *error["loc"])}
                        for error in exc.errors(include_url=False)
                    ]
                ) from None
            response: Response = await endpoint(**{model_arg: params, request_arg: request})
            return response

        return handler


def _endpoint_arguments(route: APIRoute) -> tuple[str, type[BaseModel], str]:
    """The names of the endpoint's model and request arguments, and the model, as FastAPI
    read them from the signature (a route whose endpoint takes anything else fails when the
    app is built, not at the first call)."""
    dependant = route.dependant
    others = (
        dependant.path_params,
        dependant.header_params,
        dependant.cookie_params,
        dependant.body_params,
        dependant.dependencies,
    )
    fields = dependant.query_params
    model = fields[0].field_info.annotation if len(fields) == 1 else None
    request_arg = dependant.request_param_name
    if (
        any(others)
        or not (inspect.isclass(model) and issubclass(model, BaseModel))
        or request_arg is None
    ):
        raise TypeError(f"{route.path}: the endpoint must take one query model and the request")
    if any(f.alias or f.validation_alias for f in model.model_fields.values()):
        raise TypeError(f"{model.__qualname__}: aliases are not read from the query string")
    return fields[0].name, model, request_arg


def _is_sequence(annotation: Any) -> bool:
    """`list[str] | None` and the like: a parameter that may repeat (`?tags=a&tags=b`)."""
    origin = typing.get_origin(annotation)
    if inspect.isclass(origin) and issubclass(origin, Sequence | Set):
        return not issubclass(origin, str | bytes)
    return any(_is_sequence(arg) for arg in typing.get_args(annotation) if arg is not type(None))


def _query_values(
    query: QueryParams, fields: typing.Mapping[str, Any], sequences: frozenset[str]
) -> dict[str, Any]:
    """The query string as FastAPI hands it to a parameter model: a repeatable field gets
    every value, another field its last one; an unknown name keeps its value (its values if
    it repeats), for the model's `extra` policy to judge."""
    values: dict[str, Any] = {}
    extras: dict[str, list[str]] = {}
    for key, value in query.multi_items():
        if key in sequences:
            values.setdefault(key, []).append(value)
        elif key in fields:
            values[key] = value
        else:
            extras.setdefault(key, []).append(value)
    for key, found in extras.items():
        values[key] = found[0] if len(found) == 1 else found
    return values
