from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from tiketi.core.schemas import Input


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int = Field(description="Seconds until the access token expires")


class RefreshRequest(Input):
    refresh_token: Annotated[str, Field(min_length=1, max_length=512)]
