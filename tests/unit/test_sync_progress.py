"""Sync progress lines: pure SyncProgress with a test clock, and the router logging them
(a blocked inspect holds the sync open while the test clock passes the interval)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pykka
import pytest

from actors.domain.sync_progress import SyncProgress
from messages.inbound import EngineReachable, Tick
from tests.support.wait import wait_for
from tests.unit.test_router import Env, Rig


def test_progress_every_interval_then_one_done_line() -> None:
    progress = SyncProgress(interval_s=5.0)
    progress.started(1000, now=100.0)
    assert progress.report(1000, now=104.9) is None
    assert progress.report(570, now=105.0) == "initial sync: 430/1000 containers"
    assert progress.report(400, now=109.0) is None  # not yet another interval
    assert progress.report(0, now=110.0) == "initial sync: 1000/1000 containers"
    assert progress.done(now=112.34) == "initial sync done: 1000 containers in 12.3 s"
    assert progress.done(now=113.0) is None  # once
    assert progress.report(0, now=200.0) is None  # nothing running: silent


def test_later_syncs_are_full_syncs_and_abandon_is_silent() -> None:
    progress = SyncProgress()
    progress.started(2, now=0.0)
    progress.abandoned()  # the engine went away mid-sync
    assert progress.done(now=1.0) is None
    progress.started(3, now=10.0)
    assert progress.done(now=10.5) == "full sync done: 3 containers in 0.5 s"
    progress.started(0, now=20.0)
    assert progress.report(0, now=20.0) is None


def test_report_never_counts_below_zero() -> None:
    progress = SyncProgress(interval_s=0.0)
    progress.started(2, now=0.0)
    assert progress.report(5, now=1.0) == "initial sync: 0/2 containers"


@pytest.fixture
def env(tmp_path) -> Env:
    return Env(tmp_path)


@pytest.fixture(autouse=True)
def _stop_actors():
    yield
    pykka.ActorRegistry.stop_all()


def test_router_logs_progress_while_syncing_and_once_when_done(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dockmirror.router")
    ids = [env.docker.create(f"c{i}") for i in range(3)]
    entered, release = threading.Event(), threading.Event()
    inspect = env.docker.inspect

    def held_inspect(container_id: str) -> dict[str, Any]:
        """The first container's sync waits (in its actor thread) until released."""
        if container_id == ids[0]:
            entered.set()
            release.wait(10)
        return inspect(container_id)

    env.docker.inspect = held_inspect  # type: ignore[method-assign]
    rig = Rig(env, max_active=16)
    rig.ref.tell(EngineReachable())
    assert entered.wait(5)

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "dockmirror.router"]

    def progressed() -> bool:
        rig.clock.advance(1.0)
        rig.ref.tell(Tick())
        return any(line.startswith("initial sync: ") for line in lines())

    wait_for(progressed, timeout=10, message="a progress line")
    progress = [line for line in lines() if line.startswith("initial sync: ")]
    assert progress[0] in {f"initial sync: {n}/3 containers" for n in (0, 1, 2)}
    release.set()
    wait_for(rig.ready, timeout=10, message="EngineReady True")
    wait_for(
        lambda: any(line.startswith("initial sync done: 3 containers in ") for line in lines()),
        timeout=5,
        message="the done line",
    )
    before = lines()
    for _ in range(10):  # a quiet, synced router logs nothing more on its ticks
        rig.tick(10.0)
    rig.ref.ask(Tick(), timeout=5)
    assert lines() == before
    assert sum(line.startswith("initial sync done") for line in before) == 1
