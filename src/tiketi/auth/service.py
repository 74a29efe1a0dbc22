from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from tiketi.auth.exceptions import (
    InvalidAccessToken,
    InvalidCredentials,
    InvalidRefreshToken,
    LoginThrottled,
)
from tiketi.auth.repository import LoginThrottleRepository, RefreshTokenRepository
from tiketi.auth.schemas import TokenPair
from tiketi.core.errors import Forbidden
from tiketi.core.security import (
    AccessClaims,
    InvalidToken,
    TokenCodec,
    burn_password_check,
    digest_token,
    new_opaque_token,
    verify_password,
)
from tiketi.core.settings import Settings
from tiketi.users.models import User
from tiketi.users.repository import UserRepository


def decode_access_token(codec: TokenCodec, access_token: str) -> AccessClaims:
    """The claims of an access token with a valid signature, unexpired (else 401); whether
    its version is still current is for the database to say."""
    try:
        return codec.decode(access_token)
    except InvalidToken:
        raise InvalidAccessToken() from None


class AccountDisabled(Forbidden):
    code = "account_disabled"

    def default_detail(self) -> str:
        return "This account is deactivated; contact support"


class AuthService:
    """Sign-in, token rotation and sign-out.

    Failed attempts and revoked token families are written in the request's transaction and
    answered with errors marked `keeps_changes`, so they are committed, not rolled back.
    """

    def __init__(self, session: AsyncSession, settings: Settings, codec: TokenCodec) -> None:
        self.session = session
        self.settings = settings
        self.codec = codec
        self.users = UserRepository(session)
        self.tokens = RefreshTokenRepository(session)
        self.window = timedelta(seconds=settings.login_throttle_window_seconds)

    async def login(self, *, email: str, password: str, client_address: str) -> TokenPair:
        """Same answer and about the same time for an unknown email and a wrong password."""
        email = email.strip().lower()
        account_key = f"account:{email}"
        address_key = f"address:{client_address}"
        keys = [
            (account_key, self.settings.login_max_failures_per_account),
            (address_key, self.settings.login_max_failures_per_address),
        ]
        wait = await LoginThrottleRepository(self.session).blocked_for(keys, self.window)
        if wait:
            raise LoginThrottled(wait)

        user = await self.users.get_by_email(email) if len(email) <= 254 else None
        if user is None:
            await burn_password_check(password)
            await self._record_failure([account_key, address_key])
            raise InvalidCredentials()
        check = await verify_password(password, user.password_hash)
        if not check.valid:
            await self._record_failure([account_key, address_key])
            raise InvalidCredentials()
        if not user.is_active:
            raise AccountDisabled()
        if check.new_hash is not None:
            user.password_hash = check.new_hash
        await LoginThrottleRepository(self.session).clear(account_key)
        return await self._issue(user, family_id=uuid.uuid4())

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate: the presented token is spent; a spent token presented again kills its family."""
        token_hash = digest_token(refresh_token)
        claimed = await self.tokens.claim(token_hash)
        if claimed is None:
            known = await self.tokens.find(token_hash)
            if known is not None and known.used_at is not None:
                await self.tokens.revoke_family(known.family_id)
            raise InvalidRefreshToken()
        user = await self.users.get(claimed.user_id)
        if user is None or not user.is_active or user.token_version != claimed.token_version:
            # Nothing to revoke: a family minted under an older token version (or for a
            # deactivated user) fails this same check on every future attempt.
            raise InvalidRefreshToken()
        return await self._issue(user, family_id=claimed.family_id)

    async def logout(self, refresh_token: str) -> None:
        """Ends the session the refresh token belongs to; unknown tokens are ignored."""
        known = await self.tokens.find(digest_token(refresh_token))
        if known is not None:
            await self.tokens.revoke_family(known.family_id)

    async def authenticate(self, access_token: str) -> User:
        """The user behind a valid access token whose version is still current."""
        return await self.user_for(decode_access_token(self.codec, access_token))

    async def user_for(self, claims: AccessClaims) -> User:
        """The user behind decoded access token claims, if their version is still current."""
        user = await self.users.get(claims.user_id)
        if user is None or user.token_version != claims.token_version:
            raise InvalidAccessToken("The access token has been revoked")
        if not user.is_active:
            raise InvalidAccessToken("This account is deactivated")
        return user

    async def _issue(self, user: User, *, family_id: uuid.UUID) -> TokenPair:
        refresh = new_opaque_token()
        await self.tokens.add(
            user_id=user.id,
            family_id=family_id,
            token_hash=digest_token(refresh),
            token_version=user.token_version,
            ttl=timedelta(seconds=self.settings.refresh_token_ttl_seconds),
        )
        access, expires_in = self.codec.issue(
            user_id=user.id, role=user.role, token_version=user.token_version
        )
        return TokenPair(access_token=access, refresh_token=refresh, expires_in=expires_in)

    async def _record_failure(self, keys: list[str]) -> None:
        await LoginThrottleRepository(self.session).record_failure(keys, self.window)
