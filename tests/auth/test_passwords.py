"""argon2id through passlib (the `libpass` distribution) works with the pinned versions."""

from passlib.context import CryptContext

from tiketi.core.security import (
    ARGON2_MEMORY_KIB,
    hash_password,
    password_context,
    verify_password,
)


async def test_hash_and_verify() -> None:
    hashed = await hash_password("Tiketi-pass-2026")
    assert hashed.startswith("$argon2id$")
    assert f"m={ARGON2_MEMORY_KIB},t=2,p=1" in hashed
    assert (await verify_password("Tiketi-pass-2026", hashed)).valid
    assert not (await verify_password("tiketi-pass-2026", hashed)).valid


async def test_weaker_hashes_upgrade_on_verify() -> None:
    weak = CryptContext(
        schemes=["argon2"], argon2__type="ID", argon2__memory_cost=8192, argon2__time_cost=1
    ).hash("Tiketi-pass-2026")
    check = await verify_password("Tiketi-pass-2026", weak)
    assert check.valid
    assert check.new_hash is not None
    assert password_context.identify(check.new_hash) == "argon2"
    assert f"m={ARGON2_MEMORY_KIB}" in check.new_hash
