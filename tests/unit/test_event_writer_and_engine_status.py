"""EventWriterActor and EngineStatus against a fake HTTP layer that fails like the apiserver."""

from __future__ import annotations

from typing import Any

import pykka
import pytest

from actors.infra.journal import Journal
from actors.ports.kube_port import KubeNotFound, KubeUnavailable
from actors.runtime.engine_status import EngineStatus
from actors.runtime.event_writer import EventWriterActor
from messages.inbound import EmitEvent
from messages.journal import Effect
from tests.unit._helpers import barrier, journal_entries


class FakeHttp:
    """Records requests; answers from a small in-memory store; can fail the next call."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.objects: dict[str, dict[str, Any]] = {}
        self.fail: list[Exception] = []

    def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> dict[str, Any]:
        self.requests.append((method, path, body))
        if self.fail:
            raise self.fail.pop(0)
        if method == "GET":
            if path not in self.objects:
                raise KubeNotFound(404, f"{path} not found")
            return self.objects[path]
        if method == "PATCH" and path.endswith("/status"):
            base = path.removesuffix("/status")
            self.objects.setdefault(base, {}).update(body)
            return self.objects[base]
        if method == "PATCH":
            self.objects[path] = {**self.objects.get(path, {}), **body}
            return self.objects[path]
        return body or {}


@pytest.fixture(autouse=True)
def _stop_actors():
    yield
    pykka.ActorRegistry.stop_all()


def test_event_writer_creates_events_and_survives_failures(tmp_path):
    http = FakeHttp()
    journal = Journal(tmp_path / "trace.jsonl")
    ref = EventWriterActor.start(journal=journal, http=http, namespace="ns")
    http.fail.append(KubeUnavailable(None, "apiserver away"))
    for reason in ("ActionFailed", "ActionSucceeded"):
        ref.tell(
            EmitEvent(container_id="a" * 64, type="Normal", reason=reason, action="pause", note="x")
        )
    barrier(ref)
    posts = [body for method, path, body in http.requests if method == "POST"]
    assert len(posts) == 2
    event = posts[1]
    assert event["regarding"]["name"] == "a" * 64
    assert event["reason"] == "ActionSucceeded"
    assert event["action"] == "pause"
    assert event["reportingController"] == "dockmirror"
    assert ref.is_alive()
    outcomes = [
        e.outcome for e in journal_entries(tmp_path / "trace.jsonl") if isinstance(e, Effect)
    ]
    assert outcomes == ["unavailable", "ok"]


def test_engine_status_writes_condition_once_and_keeps_transition_time():
    http = FakeHttp()
    status = EngineStatus(http, "ns")
    status.set_ready(False, "Syncing", "Initial sync in progress")
    status.set_ready(True, "Connected", "Container engine synced")
    writes = [r for r in http.requests if r[0] == "PATCH" and r[1].endswith("/status")]
    status.set_ready(True, "Connected", "Container engine synced")  # same: no write
    assert len([r for r in http.requests if r[0] == "PATCH" and r[1].endswith("/status")]) == len(
        writes
    )
    condition = writes[-1][2]["status"]["conditions"][-1]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "EngineReady",
        "True",
        "Connected",
    )


def test_engine_status_failure_is_retried_on_next_call():
    http = FakeHttp()
    status = EngineStatus(http, "ns")
    http.fail.append(KubeUnavailable(None, "down"))
    with pytest.raises(KubeUnavailable):
        status.set_ready(True, "Connected", "Container engine synced")
    status.set_ready(True, "Connected", "Container engine synced")
    assert any(r[0] == "PATCH" and r[1].endswith("/status") for r in http.requests)


def test_repeated_events_join_a_series_like_client_go(tmp_path):
    """Repeats within the window only count; the count is written at most every 5 min."""
    from messages.inbound import Tick

    http = FakeHttp()
    now = [1_000 * 10**9]
    ref = EventWriterActor.start(
        journal=Journal(None), http=http, namespace="ns", clock_ns=lambda: now[0]
    )

    def emit():
        ref.tell(
            EmitEvent(
                container_id="b" * 64,
                type="Normal",
                reason="ActionSucceeded",
                action="pause",
                note="pause succeeded",
            )
        )

    for _ in range(5):
        emit()
    barrier(ref)
    assert [m for m, _, _ in http.requests] == ["POST"]
    now[0] += 301 * 10**9
    ref.tell(Tick())
    barrier(ref)
    patches = [body for m, _, body in http.requests if m == "PATCH"]
    assert patches == [
        {"series": {"count": 5, "lastObservedTime": patches[0]["series"]["lastObservedTime"]}}
    ]
    now[0] += 400 * 10**9  # outside the 6-minute window: a new Event
    emit()
    barrier(ref)
    assert [m for m, _, _ in http.requests].count("POST") == 2


def test_finished_series_are_forgotten_after_the_window(tmp_path):
    """client-go's finishSeries: a series quiet for 6 minutes, count written, is dropped."""
    from messages.inbound import Tick

    http = FakeHttp()
    now = [1_000 * 10**9]
    actor = EventWriterActor(
        journal=Journal(None), http=http, namespace="ns", clock_ns=lambda: now[0]
    )
    for note in ("pause succeeded", "pause succeeded", "stop succeeded"):
        actor.on_receive(
            EmitEvent(container_id="c" * 64, type="Normal", reason="R", action="a", note=note)
        )
    assert len(actor.series) == 2
    now[0] += 301 * 10**9
    actor.on_receive(Tick())  # writes the pending count of the repeated one
    assert len(actor.series) == 2
    now[0] += 361 * 10**9
    actor.on_receive(Tick())
    assert actor.series == {}


class _SlowRef:
    """An ActorRef stand-in whose mailbox holds ``queued`` messages."""

    def __init__(self, queued: int) -> None:
        self.told: list[Any] = []
        self.actor_inbox = type("Inbox", (), {"qsize": lambda _self: queued})()

    def tell(self, message: Any) -> None:
        self.told.append(message)


def test_emit_gate_drops_while_the_writer_is_backlogged():
    from actors.runtime.event_writer import EmitGate

    gate = EmitGate(limit=3)
    event = EmitEvent(container_id="d" * 64, type="Normal", reason="R", action="a", note="n")
    free, full = _SlowRef(queued=2), _SlowRef(queued=3)
    assert gate.tell(free, event) is True
    assert gate.tell(full, event) is False
    assert gate.tell(full, event) is False
    assert (len(free.told), len(full.told), gate.dropped) == (1, 0, 2)


def test_emit_gate_reads_a_real_pykka_mailbox(tmp_path):
    from actors.runtime.event_writer import EmitGate

    ref = EventWriterActor.start(journal=Journal(None), http=FakeHttp(), namespace="ns")
    gate = EmitGate(limit=1000)
    event = EmitEvent(container_id="e" * 64, type="Normal", reason="R", action="a", note="n")
    assert gate.tell(ref, event) is True
    barrier(ref)
    assert gate.dropped == 0
