"""Time formats: the one RFC 3339 parser, Kubernetes ``metav1.Time`` and ``MicroTime``.

**The parser** (:func:`parse_rfc3339`) accepts exactly what Docker (Go's
``time.RFC3339Nano``) and the apiserver emit, and nothing looser:

* ``YYYY-MM-DDTHH:MM:SS``, ASCII digits, an uppercase ``T``;
* an optional fraction of 1 to 9 digits (Go drops trailing zeros, so any length up to
  nanoseconds occurs; a lone ``.`` or a 10th digit is refused);
* ``Z`` (uppercase) or an offset ``+hh:mm`` / ``-hh:mm`` with ``hh`` <= 23, ``mm`` <= 59;
* a real calendar date (no February 30), hours 00-23, minutes and seconds 00-59 (no
  leap second ``:60``), years 0001-9999 as written; the offset may move the instant
  outside that range (it is still returned: callers that format it check the range);
* Docker's zero time ``0001-01-01T00:00:00Z`` ("never") parses to :data:`ZERO_TIME_S`;
  whether it means "absent" is the caller's decision.

No surrounding whitespace, lowercase ``t``/``z``, space separator, ``+hhmm``, basic
format or missing zone: those are not what the producers write, so they are refused.

Why not ``datetime.fromisoformat``: on Python 3.11 it parses a 9-digit fraction but
truncates it to microseconds (the nanoseconds are lost), and it accepts much more than
RFC 3339 (the basic format ``20251122T003407Z``, a space separator, ``+0530``), so its
strictness is not ours.

Pure: standard library only, no I/O. ``dockmirror-trace`` (standard library only)
imports it too.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.toordinal()

#: Unix seconds of Docker's zero time ``0001-01-01T00:00:00Z`` ("never happened").
ZERO_TIME_S = int((datetime(1, 1, 1, tzinfo=UTC) - _EPOCH).total_seconds())
#: Unix seconds of ``9999-12-31T23:59:59Z``, the last second ``metav1.Time`` can show.
MAX_TIME_S = int((datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - _EPOCH).total_seconds())


class Instant(NamedTuple):
    """A parsed instant: Unix ``seconds`` (floor) and ``nanos`` (0..999,999,999)."""

    seconds: int
    nanos: int

    @property
    def ns(self) -> int:
        """Unix nanoseconds."""
        return self.seconds * 1_000_000_000 + self.nanos


def parse_rfc3339(text: object) -> Instant | None:
    """The instant ``text`` names, or None when it is not RFC 3339 as described above.

    Never raises, whatever ``text`` is (``None``, a number, any string).
    """
    if not isinstance(text, str):
        return None
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    if hour > 23 or minute > 59 or second > 59:
        return None
    try:
        days = datetime(year, month, day).toordinal() - _EPOCH_ORDINAL
    except ValueError:  # year 0, month 13, February 30, ...
        return None
    seconds = days * 86_400 + hour * 3600 + minute * 60 + second
    if zone != "Z":
        offset_hours, offset_minutes = int(zone[1:3]), int(zone[4:6])
        if offset_hours > 23 or offset_minutes > 59:
            return None
        offset = offset_hours * 3600 + offset_minutes * 60
        seconds -= offset if zone[0] == "+" else -offset
    nanos = int(fraction.ljust(9, "0")) if fraction else 0
    return Instant(seconds, nanos)


def parse_rfc3339_ns(text: object) -> int | None:
    """Unix nanoseconds of an RFC 3339 string (:func:`parse_rfc3339`), or None."""
    parsed = parse_rfc3339(text)
    return parsed.ns if parsed is not None else None


def kube_time_from_seconds(seconds: int) -> str:
    """``metav1.Time`` text (UTC, whole seconds) for Unix seconds in 0001..9999.

    Raises ``OverflowError`` outside that range (check against :data:`ZERO_TIME_S` and
    :data:`MAX_TIME_S` first).
    """
    moment = _EPOCH + timedelta(seconds=seconds)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z"
    )


def kube_time_from_ns(ns: int) -> str:
    """``metav1.Time`` text for Unix nanoseconds (whole seconds, truncated, UTC)."""
    return kube_time_from_seconds(ns // 1_000_000_000)


def kube_now() -> str:
    """The current time as ``metav1.Time`` text."""
    return kube_time_from_ns(time.time_ns())


def micro_time_from_ns(ns: int) -> str:
    """``metav1.MicroTime`` text (events.k8s.io ``eventTime``): UTC, six fraction
    digits, truncated (integer arithmetic: no float rounding)."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return kube_time_from_seconds(seconds)[:-1] + f".{rest // 1000:06d}Z"
