"""Retry decisions for both ports' errors (placeholder until the ports classify them)."""

from __future__ import annotations


def is_retryable(exc: BaseException) -> bool:
    return bool(getattr(exc, "retryable", True))


def retry_after_of(exc: BaseException) -> float | None:
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) else None
