from tiketi.core.errors import Forbidden, TooManyRequests, Unauthorized


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    keeps_changes = True  # the failed attempt is counted

    def __init__(self) -> None:
        super().__init__("Email or password is wrong", code=self.code)


class InvalidRefreshToken(Unauthorized):
    code = "invalid_refresh_token"
    keeps_changes = True  # a replayed token's family stays revoked

    def __init__(self) -> None:
        super().__init__("The refresh token is invalid, expired or already used", code=self.code)


class InvalidAccessToken(Unauthorized):
    code = "invalid_token"

    def __init__(self, detail: str = "The access token is invalid or expired") -> None:
        super().__init__(detail, code=self.code)


class NotAuthenticated(Unauthorized):
    code = "not_authenticated"

    def __init__(self) -> None:
        super().__init__("Sign in: send `Authorization: Bearer <access token>`", code=self.code)


class RoleRequired(Forbidden):
    code = "forbidden"


class LoginThrottled(TooManyRequests):
    code = "too_many_attempts"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many failed sign-in attempts; try again in {retry_after} seconds",
            retry_after=retry_after,
            code=self.code,
        )
