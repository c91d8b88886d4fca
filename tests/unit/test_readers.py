"""DockerEventsReader against FakeDocker and KubeWatchReader against FakeMirrorStore."""

from __future__ import annotations

import threading

import pykka
import pytest

from actors.infra.journal import Journal
from actors.ports.docker_port import DockerTimeout
from actors.runtime.docker_events import DockerEventsReader
from actors.runtime.kube_watch import KubeWatchReader
from messages.inbound import (
    DockerEvent,
    DockerLost,
    EngineReachable,
    MirrorDeleted,
    MirrorObserved,
    Tick,
    WatchRelisted,
)
from tests.fakes.docker import FakeDocker
from tests.fakes.kube import FakeMirrorStore
from tests.unit._helpers import Collector, FakeClock, wait_for


@pytest.fixture(autouse=True)
def _stop_actors():
    yield
    pykka.ActorRegistry.stop_all()


@pytest.fixture
def journal(tmp_path) -> Journal:
    return Journal(path=tmp_path / "trace.jsonl")


@pytest.fixture
def store():
    store = FakeMirrorStore()
    yield store
    # The fake's watch is a generator, which cannot be closed from the stopping actor's
    # thread; make it fail so the reader's thread returns at once (before stop_all).
    store.unavailable = True


class HoldingSender(Collector):
    """A ``send`` that blocks the reader thread on the first MirrorObserved for ``name``."""

    def __init__(self) -> None:
        super().__init__()
        self.hold_name: str | None = None
        self.held = threading.Event()
        self.go = threading.Event()

    def __call__(self, item) -> None:
        super().__call__(item)
        if isinstance(item, MirrorObserved) and item.name == self.hold_name:
            self.hold_name = None
            self.held.set()
            assert self.go.wait(5), "never released"


# --- Docker events ---------------------------------------------------------------------


def _events_for(sent: Collector, cid: str) -> list[str]:
    return [m.action for m in sent.of(DockerEvent) if m.container_id == cid]


def test_docker_reader_forwards_container_events_and_reconnects(journal: Journal):
    docker = FakeDocker()
    sent = Collector()
    DockerEventsReader.start(journal=journal, docker=docker, send=sent)
    wait_for(lambda: sent.of(EngineReachable), timeout=5, message="first EngineReachable")

    cid = docker.create("web")
    wait_for(lambda: _events_for(sent, cid) == ["create", "start"], timeout=5, message="events")
    event = sent.of(DockerEvent)[0]
    assert event.time_nano > 0

    docker.drop_event_streams()
    wait_for(lambda: len(sent.of(EngineReachable)) == 2, timeout=5, message="reconnected")
    docker.docker_pause_direct(cid)
    wait_for(lambda: "pause" in _events_for(sent, cid), timeout=5, message="event after reconnect")
    # The reconnect resumes from the last timeNano: nothing before it is replayed twice
    # except (at most) that boundary event.
    assert _events_for(sent, cid).count("create") == 1
    assert docker.calls_of("events") and len(docker.calls_of("events")) == 2
    assert sent.of(DockerLost) == []


def test_docker_reader_reports_lost_once_then_reachable_again(journal: Journal):
    docker = FakeDocker()
    sent = Collector()
    DockerEventsReader.start(journal=journal, docker=docker, send=sent)
    wait_for(lambda: sent.of(EngineReachable), timeout=5, message="connected")
    docker.unavailable = True
    wait_for(lambda: sent.of(DockerLost), timeout=5, message="DockerLost")
    assert sent.of(DockerLost)[0].reason.startswith("failed to ping Docker: ")
    wait_for(lambda: len(docker.calls_of("ping")) >= 3, timeout=5, message="retrying ping")
    assert len(sent.of(DockerLost)) == 1  # once per outage
    docker.unavailable = False
    wait_for(lambda: len(sent.of(EngineReachable)) == 2, timeout=5, message="reachable again")
    cid = docker.create("after")
    wait_for(lambda: _events_for(sent, cid) == ["create", "start"], timeout=5, message="events")


def test_docker_reader_starting_without_engine_sends_lost(journal: Journal):
    docker = FakeDocker()
    docker.unavailable = True
    sent = Collector()
    DockerEventsReader.start(journal=journal, docker=docker, send=sent)
    wait_for(lambda: sent.of(DockerLost), timeout=5, message="DockerLost")
    assert sent.of(EngineReachable) == []


def _start_with_clock(journal: Journal, docker: FakeDocker, sent: Collector, clock: FakeClock):
    ref = DockerEventsReader.start(
        journal=journal, docker=docker, send=sent, heartbeat_interval_s=3.0, clock=clock
    )
    wait_for(lambda: sent.of(EngineReachable), timeout=5, message="connected")
    wait_for(lambda: ref.proxy().connected.get(timeout=5), timeout=5, message="stream open")
    return ref


def test_heartbeat_turns_a_hung_engine_into_docker_lost_and_resumes(journal: Journal):
    """A SIGSTOPped dockerd: the stream goes silent, it does not end. Only the heartbeat
    notices; the ask(Tick) barrier makes each step deterministic (no sleeps)."""
    docker = FakeDocker()
    sent = Collector()
    clock = FakeClock()
    ref = _start_with_clock(journal, docker, sent, clock)
    pings = len(docker.calls_of("ping"))

    docker.hung = True
    ref.ask(Tick(), timeout=5)  # not due yet: no ping, nothing reported
    assert len(docker.calls_of("ping")) == pings and sent.of(DockerLost) == []

    clock.advance(3.0)
    ref.ask(Tick(), timeout=5)  # due: the ping times out (the fake skips the 5 s wait)
    lost = sent.of(DockerLost)
    assert len(lost) == 1 and lost[0].reason.startswith("failed to ping Docker: ")
    assert "Read timed out" in lost[0].reason
    # The silent stream was closed: the reader thread is back in its reconnect loop.
    wait_for(
        lambda: len(docker.calls_of("ping")) >= pings + 3, timeout=5, message="reconnect pings"
    )
    clock.advance(3.0)
    ref.ask(Tick(), timeout=5)  # not connected: the heartbeat stays quiet
    assert len(sent.of(DockerLost)) == 1  # once per outage

    docker.hung = False
    wait_for(lambda: len(sent.of(EngineReachable)) == 2, timeout=5, message="reachable again")
    cid = docker.create("after")
    wait_for(lambda: _events_for(sent, cid) == ["create", "start"], timeout=5, message="events")
    order = [type(m) for m in sent.items if isinstance(m, DockerLost | EngineReachable)]
    assert order == [EngineReachable, DockerLost, EngineReachable]


def test_heartbeat_ping_in_flight_blocks_only_the_actor_thread(journal: Journal):
    docker = FakeDocker()
    sent = Collector()
    clock = FakeClock()
    ref = _start_with_clock(journal, docker, sent, clock)
    gate = docker.block("ping")
    clock.advance(3.0)
    ref.tell(Tick())
    assert gate.wait_entered(5)
    # The reader thread still forwards events while the heartbeat's ping is in flight.
    cid = docker.create("busy")
    wait_for(lambda: _events_for(sent, cid) == ["create", "start"], timeout=5, message="events")
    gate.release(DockerTimeout("ping: Read timed out. (read timeout=5.0)"))
    wait_for(lambda: sent.of(DockerLost), timeout=5, message="DockerLost after the ping bound")
    # The engine answers again: the reader reconnects on its own.
    wait_for(lambda: len(sent.of(EngineReachable)) == 2, timeout=5, message="reconnected")


def test_heartbeat_failure_about_a_replaced_connection_is_ignored(journal: Journal):
    docker = FakeDocker()
    sent = Collector()
    clock = FakeClock()
    ref = _start_with_clock(journal, docker, sent, clock)
    gate = docker.block("ping")
    clock.advance(3.0)
    ref.tell(Tick())
    assert gate.wait_entered(5)
    docker.drop_event_streams()  # the reader reconnects while the heartbeat's ping hangs
    # EngineReachable is sent after the new stream is registered (same lock), and the
    # actor thread is busy in the ping, so no proxy read here.
    wait_for(lambda: len(sent.of(EngineReachable)) == 2, timeout=5, message="reconnected")
    gate.release(DockerTimeout("stale"))
    ref.ask(Tick(), timeout=5)  # barrier: the failed ping has been handled
    assert sent.of(DockerLost) == []
    assert len(docker.calls_of("events")) == 2  # the new stream was left alone


def test_healthy_heartbeat_sends_nothing(journal: Journal):
    docker = FakeDocker()
    sent = Collector()
    clock = FakeClock()
    ref = _start_with_clock(journal, docker, sent, clock)
    pings = len(docker.calls_of("ping"))
    for _ in range(3):
        clock.advance(3.0)
        ref.ask(Tick(), timeout=5)
    assert len(docker.calls_of("ping")) == pings + 3
    assert sent.of(DockerLost) == [] and len(sent.of(EngineReachable)) == 1


def test_docker_reader_ignores_non_container_events(journal: Journal):
    docker = FakeDocker()
    sent = Collector()
    reader = DockerEventsReader(journal=journal, docker=docker, send=sent)
    reader._forward({"Type": "image", "Action": "pull", "Actor": {"ID": "sha256:x"}})
    reader._forward({"Type": "container", "Action": "start", "Actor": {}})
    reader._forward({"Type": "container", "Action": "die", "Actor": {"ID": "c"}, "timeNano": 5})
    assert [(m.container_id, m.action, m.time_nano) for m in sent.items] == [("c", "die", 5)]


# --- Kubernetes watch ------------------------------------------------------------------------


def _observed(sent: Collector, kind: str | None = None) -> list[str]:
    return [m.name for m in sent.of(MirrorObserved) if kind is None or m.event_type == kind]


def test_watch_lists_then_watches(journal: Journal, store: FakeMirrorStore):
    store.apply_metadata("a")
    store.apply_metadata("b")
    sent = Collector()
    KubeWatchReader.start(journal=journal, store=store, send=sent)
    wait_for(lambda: sent.of(WatchRelisted), timeout=5, message="listed")
    relisted = sent.of(WatchRelisted)[0]
    assert relisted.names == ("a", "b") and relisted.resource_version == store.resource_version
    assert _observed(sent, "LISTED") == ["a", "b"]

    store.apply_metadata("c")
    store.client_annotate("a", "stop")
    store.delete("c")  # has the finalizer: terminating (MODIFIED)
    store.client_strip_finalizer("c")  # gone (DELETED)
    wait_for(lambda: sent.of(MirrorDeleted), timeout=5, message="DELETED forwarded")
    assert _observed(sent, "ADDED") == ["c"]
    assert _observed(sent, "MODIFIED") == ["a", "c"]
    assert [m.name for m in sent.of(MirrorDeleted)] == ["c"]
    annotated = next(m for m in sent.of(MirrorObserved) if m.event_type == "MODIFIED")
    assert annotated.obj["metadata"]["annotations"]
    assert len(sent.of(WatchRelisted)) == 1


def test_watch_relists_after_410(journal: Journal, store: FakeMirrorStore):
    store.apply_metadata("a")
    sent = HoldingSender()
    KubeWatchReader.start(journal=journal, store=store, send=sent)
    wait_for(lambda: store.calls_of("watch"), timeout=5, message="watching")
    # Hold the reader on b's event, so it is behind when history is compacted.
    sent.hold_name = "b"
    store.apply_metadata("b")
    assert sent.held.wait(5)
    store.apply_metadata("x")
    store.expire_history()
    sent.go.set()
    wait_for(lambda: len(sent.of(WatchRelisted)) == 2, timeout=5, message="relisted after 410")
    assert sent.of(WatchRelisted)[1].names == ("a", "b", "x")
    assert len(store.calls_of("list")) == 2
    store.apply_metadata("c")
    wait_for(lambda: "c" in _observed(sent, "ADDED"), timeout=5, message="watching again")


def test_watch_reconnects_after_drop_without_relist(journal: Journal, store: FakeMirrorStore):
    sent = Collector()
    KubeWatchReader.start(journal=journal, store=store, send=sent)
    wait_for(lambda: store.calls_of("watch"), timeout=5, message="watching")
    store.apply_metadata("a")
    wait_for(lambda: "a" in _observed(sent), timeout=5, message="a added")
    store.drop_watches()
    wait_for(lambda: len(store.calls_of("watch")) == 2, timeout=5, message="watch reopened")
    store.apply_metadata("b")
    wait_for(lambda: "b" in _observed(sent), timeout=5, message="b after reconnect")
    assert _observed(sent, "ADDED") == ["a", "b"]  # nothing missed, nothing repeated
    assert len(store.calls_of("list")) == 1


def test_watch_relists_after_broken_connection(journal: Journal, store: FakeMirrorStore):
    store.apply_metadata("a")
    sent = Collector()
    KubeWatchReader.start(journal=journal, store=store, send=sent)
    wait_for(lambda: store.calls_of("watch"), timeout=5, message="watching")
    store.drop_watches(error=True)
    wait_for(lambda: len(sent.of(WatchRelisted)) == 2, timeout=5, message="relisted")


def test_watch_bookmark_advances_resource_version(journal: Journal, store: FakeMirrorStore):
    store.apply_metadata("a")
    sent = Collector()
    reader_ref = KubeWatchReader.start(journal=journal, store=store, send=sent)
    wait_for(lambda: store.calls_of("watch"), timeout=5, message="watching")
    store.client_create({"metadata": {"name": "x"}})
    wait_for(lambda: "x" in _observed(sent), timeout=5, message="x added")
    store.send_bookmark()
    reader = reader_ref.proxy()
    wait_for(
        lambda: reader.resource_version.get(timeout=5) == store.resource_version,
        timeout=5,
        message="bookmark RV remembered",
    )


def test_watch_answered_410_relists_at_once(journal: Journal, store: FakeMirrorStore):
    """A 410 can come as an answer to the watch request too, not only as an ERROR event."""
    store.apply_metadata("a")
    sent = Collector()
    KubeWatchReader.start(journal=journal, store=store, send=sent)
    wait_for(lambda: store.calls_of("watch"), timeout=5, message="watching")
    store.fail_status("watch", 410, "too old resource version: 1 (1000)")
    store.drop_watches()
    wait_for(lambda: len(sent.of(WatchRelisted)) == 2, timeout=5, message="relisted after 410")
    assert sent.of(WatchRelisted)[1].after_failure is False  # expiry is not a failure
    store.apply_metadata("b")
    wait_for(lambda: "b" in _observed(sent, "ADDED"), timeout=5, message="watching again")


@pytest.mark.parametrize("status", [401, 410, 429, 500])
def test_list_failures_back_off_and_recover(journal: Journal, store: FakeMirrorStore, status):
    store.apply_metadata("a")
    store.fail_status("list", status, "injected", times=2)
    sent = Collector()
    KubeWatchReader.start(journal=journal, store=store, send=sent)
    wait_for(lambda: sent.of(WatchRelisted), timeout=10, message="listed after failures")
    assert len(store.calls_of("list")) == 3
    assert sent.of(WatchRelisted)[0].after_failure is True
