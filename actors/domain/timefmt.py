"""Time formats shared by the actors: Kubernetes ``metav1.Time`` and Docker RFC 3339.

Kubernetes stores date-times in UTC at whole seconds, fraction truncated (docs/contract.md §2.5);
Docker reports nanosecond RFC 3339 strings that Python 3.11's ``fromisoformat`` cannot
parse (more than six fraction digits), so the fraction is handled by hand.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|z|[+-]\d\d:\d\d)$"
)


def parse_rfc3339_ns(text: str | None) -> int | None:
    """Unix nanoseconds of an RFC 3339 string, or None when it does not parse."""
    if not isinstance(text, str):
        return None
    match = _RFC3339.match(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        base = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError:
        return None
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        base -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    nanos = int((fraction or "0")[:9].ljust(9, "0"))
    seconds = int((base - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    return seconds * 1_000_000_000 + nanos


def kube_time_from_ns(ns: int) -> str:
    """``metav1.Time`` text for Unix nanoseconds (whole seconds, truncated, UTC)."""
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def kube_now() -> str:
    """The current time as ``metav1.Time`` text."""
    return kube_time_from_ns(time.time_ns())


def micro_time_from_ns(ns: int) -> str:
    """``metav1.MicroTime`` text (events.k8s.io ``eventTime``)."""
    dt = datetime.fromtimestamp(ns / 1_000_000_000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
