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


async def test_hashing_concurrency_leaves_a_core_to_the_event_loop(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Argon2 releases the GIL: unbounded threads would starve the loop (liveness p99)."""
    import os
    import threading
    import time

    from tiketi.core import security

    running = 0
    peak = 0
    lock = threading.Lock()

    def slow_hash(password: str) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return "$argon2id$fake"

    monkeypatch.setattr(security.password_context, "hash", slow_hash)
    import asyncio

    await asyncio.gather(*[security.hash_password("x" * 10) for _ in range(12)])
    assert peak == max(1, (os.cpu_count() or 2) - 1)


async def test_hashing_threads_yield_the_cpu_to_the_event_loop(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Hashing runs at a lower priority than the loop's thread, which keeps its own."""
    import os
    import threading

    from tiketi.core import security

    seen: list[int] = []

    def spy_hash(password: str) -> str:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return "$argon2id$fake"

    loop_priority = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    monkeypatch.setattr(security.password_context, "hash", spy_hash)
    await security.hash_password("Tiketi-pass-2026")
    assert seen and seen[0] >= security.HASHING_NICENESS
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == loop_priority
