"""Password hashing (argon2id through passlib) and token primitives (JWT, opaque secrets)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from jose import JWTError, jwk, jwt
from passlib.context import CryptContext

# OWASP's minimum for argon2id is m=19 MiB, t=2, p=1; we use exactly that floor plus a little
# memory. Raising these makes existing hashes `needs_update`, and they upgrade on next login.
ARGON2_MEMORY_KIB = 19_456
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1

password_context = CryptContext(
    schemes=["argon2"],
    argon2__type="ID",
    argon2__memory_cost=ARGON2_MEMORY_KIB,
    argon2__time_cost=ARGON2_TIME_COST,
    argon2__parallelism=ARGON2_PARALLELISM,
)


T = TypeVar("T")
HASHING_NICENESS = 10


def _lower_priority() -> None:
    """Initializer of the hashing threads: a lower CPU priority, so when the cores are busy
    the event loop's thread (probes, reads, the money path) goes first and sign-ins wait a
    little. Measured under a sign-in storm: liveness p99 2.2x -> 1.4x its idle value at the
    same sign-in rate (docs/benchmarks.md). Linux schedules threads individually: this
    touches no other thread."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not permitted
        native_id = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, native_id)
        os.setpriority(os.PRIO_PROCESS, native_id, max(current, HASHING_NICENESS))


# At most cores - 1 hashes at once: argon2 releases the GIL, so twenty concurrent sign-ins in
# twenty threads would starve the event loop's own thread of CPU (measured: liveness p99 22x
# its idle value). Queued sign-ins wait for a hashing thread; everything else flows.
_hashing = ThreadPoolExecutor(
    max_workers=max(1, (os.cpu_count() or 2) - 1),
    thread_name_prefix="tiketi-hashing",
    initializer=_lower_priority,
)


async def _in_hashing_thread(function: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_hashing, function)


async def hash_password(password: str) -> str:
    """Argon2id in a hashing thread: ~30 ms of CPU that must not stall the event loop."""
    result: str = await _in_hashing_thread(lambda: password_context.hash(password))
    return result


@dataclass(frozen=True)
class PasswordCheck:
    valid: bool
    new_hash: str | None  # set when the stored hash used outdated parameters


async def verify_password(password: str, stored_hash: str) -> PasswordCheck:
    def _verify() -> PasswordCheck:
        _lower_priority()
        valid, new_hash = password_context.verify_and_update(password, stored_hash)
        return PasswordCheck(bool(valid), new_hash)

    return await _in_hashing_thread(_verify)


_dummy_hash: str | None = None


async def burn_password_check(password: str) -> None:
    """Spend the time of a real verification, so unknown emails answer like wrong passwords."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = await hash_password(secrets.token_urlsafe(16))
    await verify_password(password, _dummy_hash)


def new_opaque_token() -> str:
    """256 bits of randomness, URL-safe."""
    return secrets.token_urlsafe(32)


def digest_token(token: str) -> str:
    """What we store instead of a bearer secret: a leaked table grants nothing."""
    return hashlib.sha256(token.encode()).hexdigest()


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    role: str
    token_version: int
    expires_at: datetime


class TokenCodec:
    """Access tokens: HS256 JWTs with pinned algorithm, required claims and a token type."""

    TOKEN_TYPE = "access"  # noqa: S105 - a claim value, not a secret

    def __init__(
        self, *, secret: str, algorithm: str, issuer: str, audience: str, ttl_seconds: int
    ) -> None:
        self.secret = secret
        self.algorithm = algorithm
        # Verification gets the key object, built once: given the secret as a string, jose
        # first tries to read it as a JSON key set and then builds the key, on every request
        # (a third of a token check).
        self._verification_key = jwk.construct(secret, algorithm)
        self.issuer = issuer
        self.audience = audience
        self.ttl = timedelta(seconds=ttl_seconds)

    def issue(self, *, user_id: uuid.UUID, role: str, token_version: int) -> tuple[str, int]:
        now = datetime.now(UTC)
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "role": role,
            "ver": token_version,
            "typ": self.TOKEN_TYPE,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": int(now.timestamp()),
            "exp": int((now + self.ttl).timestamp()),
            "jti": uuid.uuid4().hex,
        }
        token: str = jwt.encode(claims, self.secret, algorithm=self.algorithm)
        return token, int(self.ttl.total_seconds())

    def decode(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._verification_key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require_exp": True,
                    "require_iat": True,
                    "require_sub": True,
                    "require_iss": True,
                    "require_aud": True,
                },
            )
            if claims.get("typ") != self.TOKEN_TYPE:
                raise InvalidToken("wrong token type")
            version = claims.get("ver")
            role = claims.get("role")
            if not isinstance(version, int) or isinstance(version, bool):
                raise InvalidToken("missing token version")
            if not isinstance(role, str):
                raise InvalidToken("missing role")
            return AccessClaims(
                user_id=uuid.UUID(str(claims["sub"])),
                role=role,
                token_version=version,
                expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            )
        except (JWTError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidToken(str(exc)) from exc
