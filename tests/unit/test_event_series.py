"""client-go's events.k8s.io series rules (actors/domain/event_series.py), pure."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from actors.domain.event_series import (
    MAX_TRACKED,
    SERIES_UPDATE_S,
    SERIES_WINDOW_S,
    EventKey,
    Regarding,
    SeriesBook,
    event_manifest,
    reporting_instance,
    truncate_utf8,
    write_now,
)
from actors.domain.names import API_VERSION, EVENT_REPORTING_CONTROLLER

S = 1_000_000_000
T0 = 1_700_000_000 * S


def key(rv: str = "10", *, note: str = "Container is paused", action: str = "Paused") -> EventKey:
    return EventKey(Regarding("c" * 64, "uid-1", rv), "Normal", "ConditionChanged", action, note)


def test_a_new_key_is_created_and_remembered() -> None:
    book = SeriesBook()
    assert book.observe(key(), T0) is None
    book.created(key(), "ev-1", T0)
    assert len(book) == 1 and book.due(T0 + 3600 * S) == []


def test_transitions_of_new_object_versions_never_fold() -> None:
    """pause, unpause, pause: each regards another resourceVersion, so each is created."""
    book = SeriesBook()
    for i, (rv, note) in enumerate(
        [
            ("10", "Container is paused"),
            ("12", "Container is not paused"),
            ("14", "Container is paused"),
        ]
    ):
        assert book.observe(key(rv, note=note), T0 + i * S) is None
        book.created(key(rv, note=note), f"ev-{i}", T0 + i * S)
    assert len(book) == 3


def test_first_repeat_is_written_at_once_later_ones_on_refresh() -> None:
    book = SeriesBook()
    book.created(key(), "ev-1", T0)
    second = book.observe(key(), T0 + 1 * S)
    assert second is not None and second.count == 2 and write_now(second)
    book.written(second, 2, T0 + 1 * S)
    third = book.observe(key(), T0 + 2 * S)
    assert third is second and third.count == 3 and not write_now(third)
    assert book.due(T0 + 2 * S) == []
    due = book.due(T0 + 1 * S + int(SERIES_UPDATE_S * S))
    assert [(k, s.count) for k, s in due] == [(key(), 3)]


def test_a_failed_first_repeat_write_is_tried_again_at_the_next_repeat() -> None:
    book = SeriesBook()
    book.created(key(), "ev-1", T0)
    second = book.observe(key(), T0 + S)
    assert second is not None and write_now(second)  # ... and the write failed
    third = book.observe(key(), T0 + 2 * S)
    assert third is not None and write_now(third)


def test_a_finished_series_writes_its_final_count_then_is_forgotten() -> None:
    book = SeriesBook()
    book.created(key(), "ev-1", T0)
    series = book.observe(key(), T0 + S)
    assert series is not None
    book.written(series, 2, T0 + S)
    book.observe(key(), T0 + 2 * S)  # count 3, not written
    finished = T0 + 2 * S + int(SERIES_WINDOW_S * S) + 1
    assert [s.count for _, s in book.due(finished)] == [3]
    book.expire(finished)
    assert len(book) == 1  # not forgotten before its count is written
    book.written(series, 3, finished)
    book.expire(finished)
    assert len(book) == 0


def test_a_repeat_after_the_window_starts_a_new_event() -> None:
    book = SeriesBook()
    book.created(key(), "ev-1", T0)
    assert book.observe(key(), T0 + int(SERIES_WINDOW_S * S) + 1) is None


def test_singletons_are_forgotten_after_the_window() -> None:
    book = SeriesBook()
    book.created(key(), "ev-1", T0)
    book.expire(T0 + int(SERIES_WINDOW_S * S))
    assert len(book) == 1
    book.expire(T0 + int(SERIES_WINDOW_S * S) + 1)
    assert len(book) == 0


def test_the_cache_is_bounded_and_forgets_the_least_recently_seen() -> None:
    book = SeriesBook(max_tracked=3)
    for i in range(3):
        book.created(key(str(i)), f"ev-{i}", T0 + i * S)
    book.observe(key("0"), T0 + 10 * S)  # seen again: now the most recent
    book.created(key("9"), "ev-9", T0 + 11 * S)
    assert len(book) == 3
    assert book.get(key("1")) is None and book.get(key("0")) is not None
    assert MAX_TRACKED == 4096


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 400)), max_size=200))
def test_counts_add_up_and_memory_stays_bounded(steps: list[tuple[int, int]]) -> None:
    """Whatever the sequence, every occurrence is counted exactly once (in a new Event or
    in a series) and the cache never exceeds its bound."""
    book = SeriesBook(max_tracked=4)
    now = T0
    created = 0
    counted: dict[str, int] = {}
    for rv, gap_s in steps:
        now += gap_s * S
        k = key(str(rv))
        series = book.observe(k, now)
        if series is None:
            book.created(k, f"ev-{created}", now)
            created += 1
        else:
            counted[str(rv)] = counted.get(str(rv), 0) + 1
        assert len(book) <= 4
    assert created + sum(counted.values()) == len(steps)


def test_manifest_regards_the_object_like_client_go() -> None:
    event = event_manifest(
        key(),
        name="c.1",
        namespace="ns",
        event_time="2026-01-01T00:00:00.000000Z",
        instance=reporting_instance("host"),
    )
    assert event["regarding"] == {
        "apiVersion": API_VERSION,
        "kind": "Container",
        "name": "c" * 64,
        "namespace": "ns",
        "uid": "uid-1",
        "resourceVersion": "10",
    }
    assert event["reportingController"] == EVENT_REPORTING_CONTROLLER == "container-controller"
    assert event["reportingInstance"] == "container-controller-host"
    assert "series" not in event


def test_manifest_without_a_known_object_version_leaves_them_out() -> None:
    k = EventKey(Regarding("c" * 64), "Warning", "SyncFailed", "Sync", "x")
    event = event_manifest(k, name="c.1", namespace="ns", event_time="t", instance="i")
    assert "uid" not in event["regarding"] and "resourceVersion" not in event["regarding"]


@given(st.text(), st.integers(0, 2000))
def test_truncation_counts_bytes_and_never_splits_a_character(text: str, limit: int) -> None:
    cut = truncate_utf8(text, limit)
    assert len(cut.encode("utf-8")) <= limit and text.startswith(cut)
    if len(text.encode("utf-8")) <= limit:
        assert cut == text


def test_manifest_fits_the_apiservers_limits() -> None:
    k = EventKey(Regarding("c" * 64), "Warning", "R" * 300, "A" * 300, "é" * 1000)
    event = event_manifest(k, name="c.1", namespace="ns", event_time="t", instance="i" * 300)
    assert len(event["note"].encode()) <= 1024 and len(event["reason"]) <= 128
    assert len(event["action"]) <= 128
    assert len(reporting_instance("h" * 300).encode()) <= 128


def test_repeats_during_the_create_count_and_are_written_after_it() -> None:
    book = SeriesBook()
    series = book.reserve(key(), "ev-1", T0)
    repeat = book.observe(key(), T0 + S)
    assert repeat is series and series.count == 2
    assert not write_now(series)  # the Event does not exist yet
    assert book.due(T0 + 3600 * S) == []
    assert book.confirm(key(), series)
    assert write_now(series)


def test_one_write_per_key_on_the_wire() -> None:
    book = SeriesBook()
    book.created(key(), "ev-1", T0)
    series = book.observe(key(), T0 + S)
    assert series is not None and write_now(series)
    series.writing = True
    book.observe(key(), T0 + 2 * S)
    assert not write_now(series)
    assert book.due(T0 + 3600 * S) == []
    book.expire(T0 + 3600 * S)
    assert len(book) == 1  # never forgotten under a write in flight


def test_a_failed_create_forgets_only_its_own_series() -> None:
    book = SeriesBook(max_tracked=1)
    first = book.reserve(key("1"), "ev-1", T0)
    book.reserve(key("2"), "ev-2", T0 + S)  # evicts the first while its create is in flight
    assert not book.confirm(key("1"), first)
    again = book.reserve(key("1"), "ev-3", T0 + 2 * S)
    book.forget(key("1"), first)  # the first create's failure arrives late
    assert book.get(key("1")) is again
