"""RetryQueue and ItemBackoff: pure data, driven by plain numbers (no threads, no sleeps)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.domain.retry_queue import DEFAULT_BASE_S, DEFAULT_CAP_S, ItemBackoff, RetryQueue


def test_backoff_doubles_from_a_few_ms_to_the_cap_and_resets():
    backoff = ItemBackoff()
    delays = [backoff.when("a") for _ in range(20)]
    assert delays[0] == DEFAULT_BASE_S
    assert delays[1] == 2 * DEFAULT_BASE_S
    assert all(later >= earlier for earlier, later in itertools.pairwise(delays))
    assert delays[-1] == DEFAULT_CAP_S
    assert backoff.when("b") == DEFAULT_BASE_S  # per item
    backoff.forget("a")
    assert backoff.failures("a") == 0
    assert backoff.when("a") == DEFAULT_BASE_S


def test_backoff_never_overflows():
    backoff = ItemBackoff()
    for _ in range(5000):
        delay = backoff.when("a")
    assert delay == DEFAULT_CAP_S


def test_failed_item_is_due_after_its_delay_only():
    queue = RetryQueue()
    delay = queue.failed("a", now=100.0)
    assert queue.pop_due(100.0) == []
    assert queue.next_due() == 100.0 + delay
    assert queue.pop_due(100.0 + delay) == ["a"]
    assert queue.pop_due(1e9) == []
    assert len(queue) == 0


def test_retry_after_is_a_lower_bound():
    queue = RetryQueue()
    assert queue.failed("a", now=0.0, not_before_s=30.0) == 30.0
    assert queue.pop_due(29.9) == []
    assert queue.pop_due(30.0) == ["a"]


def test_sooner_schedule_wins_and_success_drops_the_retry():
    queue = RetryQueue()
    queue.schedule("a", 50.0)
    queue.schedule("a", 10.0)
    queue.schedule("a", 70.0)
    assert queue.next_due() == 10.0
    assert queue.pop_due(10.0) == ["a"]
    assert queue.pop_due(100.0) == []  # the superseded entries are stale
    queue.failed("b", now=0.0)
    queue.succeeded("b")
    assert not queue.pending("b")
    assert queue.next_due() is None
    assert queue.pop_due(1e9) == []


def test_backoff_survives_a_due_pop_until_success():
    queue = RetryQueue()
    first = queue.failed("a", now=0.0)
    queue.pop_due(first)
    second = queue.failed("a", now=first)
    assert second == 2 * first
    queue.succeeded("a")
    assert queue.failed("a", now=0.0) == first


@given(st.lists(st.tuples(st.sampled_from("abcde"), st.floats(0, 1000)), max_size=60))
def test_every_scheduled_item_is_popped_exactly_once_at_its_earliest_time(schedules):
    queue = RetryQueue()
    earliest: dict[str, float] = {}
    for item, due in schedules:
        queue.schedule(item, due)
        earliest[item] = min(due, earliest.get(item, due))
    popped: dict[str, float] = {}
    for now in sorted({*earliest.values(), 1001.0}):
        for item in queue.pop_due(now):
            assert item not in popped
            popped[item] = now
    assert popped == earliest


def test_a_burst_of_failures_before_the_retry_is_one_failure():
    queue = RetryQueue()
    first = queue.failed("a", now=0.0)
    for _ in range(10):  # messages queued behind the failed one fail too
        assert queue.failed("a", now=0.001) == pytest.approx(first - 0.001)
    assert queue.backoff.failures("a") == 1
    queue.pop_due(first)
    assert queue.failed("a", now=first) == 2 * first  # the retry itself failed
