"""The one RFC 3339 parser (actors/domain/timefmt.py): its strictness, table- and
property-tested against ``datetime``-based formatting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from actors.domain.timefmt import (
    MAX_TIME_S,
    ZERO_TIME_S,
    Instant,
    kube_time_from_ns,
    kube_time_from_seconds,
    micro_time_from_ns,
    parse_rfc3339,
    parse_rfc3339_ns,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def unix_seconds(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(seconds=1)


def clock_text(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` (``strftime("%Y")`` does not pad years before 1000)."""
    return f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S")


def go_fraction(nanos: int) -> str:
    """The fraction as Go's ``time.RFC3339Nano`` writes it: trailing zeros dropped."""
    return f".{nanos:09d}".rstrip("0").rstrip(".")


def go_zone(offset_minutes: int) -> str:
    if offset_minutes == 0:
        return "Z"
    sign = "+" if offset_minutes > 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


# --- what the producers write ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-11-22T00:34:07Z", Instant(1763771647, 0)),
        ("2025-11-22T00:34:07.5Z", Instant(1763771647, 500_000_000)),
        ("2025-11-22T00:34:07.123456789Z", Instant(1763771647, 123_456_789)),
        ("2025-11-22T00:34:07.000000001Z", Instant(1763771647, 1)),
        ("2025-11-22T02:34:07.25+02:00", Instant(1763771647, 250_000_000)),
        ("2025-11-21T19:04:07-05:30", Instant(1763771647, 0)),
        ("1970-01-01T00:00:00Z", Instant(0, 0)),
        ("1969-12-31T23:59:59.9Z", Instant(-1, 900_000_000)),
        ("0001-01-01T00:00:00Z", Instant(ZERO_TIME_S, 0)),  # Docker's zero time
        ("9999-12-31T23:59:59.999999999Z", Instant(MAX_TIME_S, 999_999_999)),
        ("2024-02-29T12:00:00Z", Instant(1709208000, 0)),  # leap day
        # An offset may move the instant out of 0001..9999: still parsed.
        ("0001-01-01T00:30:00+01:00", Instant(ZERO_TIME_S - 1800, 0)),
        ("9999-12-31T23:30:00-01:00", Instant(MAX_TIME_S + 1801, 0)),
    ],
)
def test_parses_what_docker_and_the_apiserver_write(text: str, expected: Instant) -> None:
    assert parse_rfc3339(text) == expected
    assert parse_rfc3339_ns(text) == expected.ns


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "2025-11-22",  # a date only
        "2025-11-22T00:34:07",  # no zone
        "2025-11-22T00:34Z",  # no seconds
        "2025-11-22 00:34:07Z",  # space separator
        "2025-11-22t00:34:07Z",  # lowercase t
        "2025-11-22T00:34:07z",  # lowercase z
        "2025-11-22T00:34:07+0200",  # offset without colon
        "2025-11-22T00:34:07+02",
        "20251122T003407Z",  # basic format
        "2025-11-22T00:34:07.Z",  # empty fraction
        "2025-11-22T00:34:07.1234567890Z",  # beyond nanoseconds
        "2025-11-22T00:34:07,5Z",  # comma fraction
        "2025-13-22T00:34:07Z",
        "2025-02-30T00:34:07Z",
        "2025-02-29T00:34:07Z",  # not a leap year
        "0000-01-01T00:00:00Z",  # no year 0
        "2025-11-22T24:00:00Z",
        "2025-11-22T00:60:00Z",
        "2025-11-22T00:34:60Z",  # no leap seconds
        "2025-11-22T00:34:07+24:00",
        "2025-11-22T00:34:07+02:60",
        " 2025-11-22T00:34:07Z",
        "2025-11-22T00:34:07Z ",
        "2025-11-22T00:34:07Z\n",
        "\uff12\uff10\uff12\uff15-11-22T00:34:07Z",  # fullwidth digits
        "2025-11-22T00:34:0\u0667Z",  # an Arabic-Indic digit
        "+2025-11-22T00:34:07Z",
        "12025-11-22T00:34:07Z",
    ],
)
def test_refuses_everything_else(text: str) -> None:
    assert parse_rfc3339(text) is None
    assert parse_rfc3339_ns(text) is None


@pytest.mark.parametrize("value", [None, 12345, 1.5, b"2025-11-22T00:34:07Z", ["x"], {}])
def test_non_strings_are_refused(value: object) -> None:
    assert parse_rfc3339(value) is None


@given(st.text())
@example("2025-11-22T00:34:07.Z")
@example("9999-99-99T99:99:99.999999999+99:99")
def test_never_raises(text: str) -> None:
    parsed = parse_rfc3339(text)
    assert parsed is None or 0 <= parsed.nanos < 1_000_000_000


# --- against datetime --------------------------------------------------------------------

moments = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59)
nanos = st.integers(min_value=0, max_value=999_999_999)


@given(moments, nanos, offsets)
def test_go_rfc3339nano_text_round_trips(moment: datetime, ns: int, offset: int) -> None:
    """Any instant written like Go's RFC3339Nano in any zone parses to that instant."""
    moment = moment.replace(microsecond=0)
    local = moment.astimezone(timezone(timedelta(minutes=offset)))
    text = clock_text(local) + go_fraction(ns) + go_zone(offset)
    assert parse_rfc3339(text) == Instant(unix_seconds(moment), ns)


@given(moments, offsets)
def test_agrees_with_datetime_isoformat(moment: datetime, offset: int) -> None:
    """``datetime.isoformat`` (microseconds, ``+hh:mm``) text parses to the same instant
    that ``datetime`` itself computes; ``fromisoformat`` agrees where it can."""
    local = moment.astimezone(timezone(timedelta(minutes=offset)))
    text = local.isoformat()
    if offset == 0:
        text = text.replace("+00:00", "Z")
    parsed = parse_rfc3339(text)
    assert parsed == Instant(unix_seconds(moment), moment.microsecond * 1000)
    assert datetime.fromisoformat(text) == moment


@given(moments, st.integers(min_value=1, max_value=9), nanos)
def test_every_fraction_length_up_to_nanoseconds(moment: datetime, digits: int, ns: int) -> None:
    fraction = f"{ns:09d}"[:digits]
    text = clock_text(moment) + "." + fraction + "Z"
    expected = Instant(unix_seconds(moment.replace(microsecond=0)), int(fraction.ljust(9, "0")))
    assert parse_rfc3339(text) == expected


# --- formatting ------------------------------------------------------------------------------


@given(st.integers(min_value=ZERO_TIME_S, max_value=MAX_TIME_S), nanos)
def test_kube_times_format_like_datetime(seconds: int, ns: int) -> None:
    moment = EPOCH + timedelta(seconds=seconds)
    total = seconds * 1_000_000_000 + ns
    assert kube_time_from_seconds(seconds) == clock_text(moment) + "Z"
    assert kube_time_from_ns(total) == kube_time_from_seconds(seconds)
    micro = micro_time_from_ns(total)
    assert micro == kube_time_from_seconds(seconds)[:-1] + f".{ns // 1000:06d}Z"
    assert parse_rfc3339(micro) == Instant(seconds, ns // 1000 * 1000)


def test_micro_time_is_exact_where_floats_are_not() -> None:
    # 2023-11-14T22:13:20.999999999Z: a float division would round up to the next second.
    assert micro_time_from_ns(1_700_000_000_999_999_999) == "2023-11-14T22:13:20.999999Z"
