"""The heartbeat schedule (pure, injected clock) and its 15 s bound."""

from __future__ import annotations

from actors.runtime.heartbeat import (
    HEARTBEAT_INTERVAL_S,
    WORST_CASE_DETECTION_S,
    Heartbeat,
)
from tests.unit._helpers import FakeClock


def test_no_pings_without_an_open_stream():
    clock = FakeClock()
    beat = Heartbeat(interval_s=3.0, clock=clock)
    clock.advance(100)
    assert not beat.watching and not beat.due()
    beat.pinged()  # harmless when not watching
    assert not beat.due()


def test_first_ping_one_interval_after_connecting_then_every_interval():
    clock = FakeClock()
    beat = Heartbeat(interval_s=3.0, clock=clock)
    beat.watch()
    clock.advance(2.9)
    assert not beat.due()
    clock.advance(0.1)
    assert beat.due()
    beat.pinged()
    assert not beat.due()
    clock.advance(3.0)
    assert beat.due()


def test_a_slow_ping_does_not_make_the_next_one_early():
    clock = FakeClock()
    beat = Heartbeat(interval_s=3.0, clock=clock)
    beat.watch()
    clock.advance(10)  # ticks were late (a long stop of the actor thread)
    assert beat.due()
    beat.pinged()
    clock.advance(2.0)
    assert not beat.due()  # one interval after the ping, not catching up


def test_unwatch_stops_pings_until_the_next_connect():
    clock = FakeClock()
    beat = Heartbeat(interval_s=3.0, clock=clock)
    beat.watch()
    beat.unwatch()
    clock.advance(10)
    assert not beat.due()
    beat.watch()
    assert not beat.due()
    clock.advance(3)
    assert beat.due()


def test_detection_bound_is_below_the_issues_15_seconds():
    # interval + one tick + the 5 s ping bound, and the router's EngineReady write after.
    assert WORST_CASE_DETECTION_S == HEARTBEAT_INTERVAL_S + 1.0 + 5.0
    assert WORST_CASE_DETECTION_S <= 10.0
