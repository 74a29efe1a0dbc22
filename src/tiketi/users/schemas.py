from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    Strict,
    StringConstraints,
)

from tiketi.core.phone import normalize_msisdn
from tiketi.core.schemas import Input
from tiketi.users.models import Role

PASSWORD_MIN = 8
PASSWORD_MAX = 128

PhoneNumber = Annotated[
    str,
    Field(max_length=32, examples=["0712345678"]),
    AfterValidator(normalize_msisdn),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Password = Annotated[str, Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)]
Email = Annotated[EmailStr, Field(max_length=254)]


class UserCreate(Input):
    email: Email
    password: Password
    first_name: Name
    last_name: Name
    phone_number: PhoneNumber
    role: Literal["customer", "organizer"] = "customer"


class UserUpdateMe(Input):
    first_name: Name | None = None
    last_name: Name | None = None
    phone_number: PhoneNumber | None = None


class PasswordChange(Input):
    current_password: Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX)]
    new_password: Password


class UserAdminUpdate(Input):
    role: Annotated[Role, Strict(False)] | None = None
    is_active: bool | None = None


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    first_name: str
    last_name: str
    phone_number: str
    role: Role
    is_active: bool
    created_at: datetime
