"""Wait for what a test can observe, never for a fixed time.

A fault test that sleeps for "long enough" is a guess about the machine's speed: on a busy
CI runner it guesses wrong. These helpers poll a condition until it holds, with a deadline
generous enough to never be the reason a healthy run fails; when it does expire, the message
says what never happened.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

# Far beyond what any step takes on a loaded 2-core runner: expiring means "never happened".
DEADLINE_SECONDS = 60.0


async def until(
    condition: Callable[[], bool | Awaitable[bool]],
    what: str,
    *,
    timeout: float = DEADLINE_SECONDS,
    interval: float = 0.02,
    describe: Callable[[], object] | None = None,
) -> float:
    """Poll `condition` (plain or async) until it is true; return the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            detail = f": {describe()!r}" if describe is not None else ""
            raise AssertionError(f"not within {timeout:.0f}s: {what}{detail}")
        await asyncio.sleep(interval)
