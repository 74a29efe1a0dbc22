"""Each shape's statement is compiled once and sent as driver SQL (`repository._compiled`)."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

from tiketi.search.repository import MatchMode, _compiled, _Shape, _statement
from tiketi.search.schemas import SearchSort

DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
SHAPE = _Shape(
    sort=SearchSort.relevance,
    modes=(MatchMode.fulltext, MatchMode.fuzzy),
    fuzzy_words=2,
    city=True,
    tags=True,
    min_price=True,
)


VALUES = {
    "now": "NOW",
    "as_of": "AS_OF",
    "limit": 21,
    "first_limit": 21,
    "q": "jazz night",
    "excluded": "",
    "fuzzy": "jazz night",
    "fuzzy_words": ["jazz", "night"],
    "city": "Nairobi",
    "tags": ["outdoor"],
    "min_price": 500,
}


def test_the_text_and_arguments_are_what_sqlalchemy_would_send() -> None:
    values = dict(VALUES)
    compiled = _compiled(SHAPE, DIALECT)
    reference = _statement(SHAPE).compile(dialect=DIALECT)
    assert compiled.sql == reference.string
    expected = reference.construct_params(values)
    assert reference.positiontup is not None
    assert compiled.arguments(values) == tuple(expected[name] for name in reference.positiontup)


def test_a_value_the_request_must_give_is_never_bound_as_null() -> None:
    compiled = _compiled(SHAPE, DIALECT)
    values = {name: value for name, value in VALUES.items() if name != "min_price"}
    with pytest.raises(KeyError, match="min_price"):
        compiled.arguments(values)
