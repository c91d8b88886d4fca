"""Polling with a deadline: the only sanctioned way for tests to wait for something."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """Raised when a condition did not become true before its deadline."""


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` until it returns a truthy value; return that value.

    Raises :class:`WaitTimeout` (an AssertionError) naming ``message``, the last value and the
    last ignored exception if ``timeout`` seconds pass first. Exceptions listed in ``ignore``
    count as "not yet"; any other exception propagates immediately.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    last_exc: BaseException | None = None
    while True:
        try:
            last = predicate()
            last_exc = None
            if last:
                return last
        except ignore as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f"last value: {last!r}"
            if last_exc is not None:
                detail += f"; last error: {last_exc!r}"
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {message} ({detail})")
        time.sleep(interval)
