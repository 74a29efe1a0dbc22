import pytest

from tiketi.cli import build_parser, main


def test_migrate_in_process(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tiketi.core.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["migrate"])
        assert exit_info.value.code == 0
    finally:
        get_settings.cache_clear()


def test_parser_knows_the_commands() -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "--port", "9000", "--workers", "3"])
    assert (args.port, args.workers, args.host) == (9000, 3, "0.0.0.0")
    with pytest.raises(SystemExit):
        parser.parse_args(["nonsense"])


def _run(argv: list[str]) -> int | str | None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from tiketi.core.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("TIKETI_ADMIN_PASSWORD", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("cli_env")
async def test_create_admin_then_login(client) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    code = await asyncio.to_thread(
        _run, ["create-admin", "--email", "Root@Example.com", "--password", "very-secret-99"]
    )
    assert code == 0
    response = await client.post(
        "/auth/token", data={"username": "root@example.com", "password": "very-secret-99"}
    )
    assert response.status_code == 200
    # Promoting again is idempotent; a new admin without a password is refused.
    assert await asyncio.to_thread(_run, ["create-admin", "--email", "root@example.com"]) == 0
    assert await asyncio.to_thread(_run, ["create-admin", "--email", "new@example.com"]) == 2
    short = ["create-admin", "--email", "x@example.com", "--password", "short"]
    assert await asyncio.to_thread(_run, short) == 2


@pytest.mark.usefixtures("cli_env")
async def test_seed_demo_is_idempotent(client) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from tiketi.demo import DEMO_ACCOUNTS, DEMO_PASSWORD

    assert await asyncio.to_thread(_run, ["seed-demo"]) == 0
    assert await asyncio.to_thread(_run, ["seed-demo"]) == 0
    for account in DEMO_ACCOUNTS:
        response = await client.post(
            "/auth/token", data={"username": account.email, "password": DEMO_PASSWORD}
        )
        assert response.status_code == 200
