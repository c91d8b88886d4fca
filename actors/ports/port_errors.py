"""What both ports' errors have in common: a retry decision and a server-given delay.

Every exception that leaves :mod:`actors.ports.kube_port` or :mod:`actors.ports.docker_port` is a
:class:`PortError` (``KubeError`` and its families, ``DockerError``,
``DockerUnavailable`` and theirs). Callers do not need to know HTTP statuses to decide
what to do next:

* ``retryable``: the same request may succeed later without anyone changing it (a
  connection failure, a timeout, 429, 5xx, a conflict); ``False`` means resending it
  unchanged cannot help (400, 403, 404, 422 ...): report it instead of looping;
* ``retry_after``: seconds the server asked us to wait (``Retry-After`` of a 429 or
  503 answer), else ``None``; the caller's own backoff applies then.

:func:`is_retryable` and :func:`retry_after_of` accept any exception, so a caller can
ask without first checking which port raised it. Pure functions; any thread.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

#: ``Retry-After`` values are clamped to this range (seconds). An answer asking for
#: hours would park a request far beyond the backoff cap; a negative or past date
#: means "now".
RETRY_AFTER_MAX_S = 600.0

#: Statuses whose ``Retry-After`` header we honour (RFC 9110 §10.2.3 defines it for 503
#: and 3xx; RFC 6585 for 429; the apiserver sends it with both 429 and 503).
RETRY_AFTER_STATUSES = (429, 503)


class PortError(Exception):
    """Base of every error a port raises; subclasses set both attributes per instance."""

    retryable: bool = False
    retry_after: float | None = None


def is_retryable(exc: BaseException) -> bool:
    """True when resending the same request later may succeed.

    Port errors carry the decision; any other exception (a bug, not an answer) is not
    retryable: retrying a programming error would only loop.
    """
    return isinstance(exc, PortError) and bool(exc.retryable)


def retry_after_of(exc: BaseException) -> float | None:
    """Seconds the server asked to wait before retrying (clamped), or None."""
    if isinstance(exc, PortError):
        return exc.retry_after
    return None


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Parse a ``Retry-After`` header: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).

    Returns seconds clamped to ``0..RETRY_AFTER_MAX_S``, or None for a missing or
    unreadable value. ``now`` is the wall clock (an HTTP-date is wall-clock time).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)


def header(headers: Mapping[str, Any] | Any, name: str) -> str | None:
    """Case-insensitive header lookup on a dict, ``HTTPHeaderDict`` or similar; None if absent."""
    if headers is None:
        return None
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    value = getter(name)
    if value is None and isinstance(headers, Mapping):
        lowered = name.lower()
        value = next((v for k, v in headers.items() if str(k).lower() == lowered), None)
    return None if value is None else str(value)


def retry_after_from_headers(
    status: int | None, headers: Mapping[str, Any] | Any, *, now: Callable[[], float] = time.time
) -> float | None:
    """``Retry-After`` of a 429/503 answer, parsed and clamped; None for other statuses."""
    if status not in RETRY_AFTER_STATUSES:
        return None
    return parse_retry_after(header(headers, "Retry-After"), now=now)
