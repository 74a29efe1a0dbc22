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
