"""EventWriterActor (on the faithful FakeKubeHttp) and EngineStatus (on a small fake HTTP
layer) failing like the apiserver."""

from __future__ import annotations

import threading
from typing import Any

import msgspec
import pykka
import pytest

from actors.domain.event_series import SERIES_UPDATE_S, SERIES_WINDOW_S
from actors.infra.journal import Journal
from actors.ports.kube_port import KubeNotFound, KubeUnavailable
from actors.runtime.engine_status import EngineStatus
from actors.runtime.event_writer import WRITE_WORKERS, EventWriterActor
from actors.runtime.fence import Fenced
from messages.inbound import EmitEvent, Tick
from messages.journal import Effect, Received
from tests.fakes.kube import FakeKubeHttp
from tests.unit._helpers import barrier, journal_entries, wait_for

S = 1_000_000_000
T0 = 1_700_000_000 * S
CID = "a" * 64
UID = "0b7e0a43-1f1c-4f4e-9f5e-2c8e8f0b7a01"


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


def emit(
    ref_or_actor: Any,
    *,
    rv: str = "10",
    reason: str = "ActionSucceeded",
    action: str = "pause",
    note: str = "pause succeeded",
    uid: str = UID,
    type: str = "Normal",
) -> None:
    message = EmitEvent(
        container_id=CID,
        type=type,
        reason=reason,
        action=action,
        note=note,
        uid=uid,
        resource_version=rv,
    )
    if isinstance(ref_or_actor, EventWriterActor):
        ref_or_actor.on_receive(message)
    else:
        ref_or_actor.tell(message)


def writer(http: FakeKubeHttp, now: list[int]) -> EventWriterActor:
    """The actor object itself, driven through ``on_receive`` (no thread, injected clock)."""
    return EventWriterActor(
        journal=Journal(None),
        http=http,
        namespace="ns",
        clock_ns=lambda: now[0],
        run=lambda job: job(),  # writes in the caller's thread: deterministic
    )


def test_event_writer_creates_events_and_survives_failures(tmp_path):
    http = FakeKubeHttp()
    journal = Journal(tmp_path / "trace.jsonl")
    ref = EventWriterActor.start(journal=journal, http=http, namespace="ns")
    http.fail_next("POST /apis/events.k8s.io", KubeUnavailable(None, "apiserver away"))
    emit(ref, reason="ActionFailed", type="Warning", note="pause failed")
    emit(ref, reason="ActionSucceeded")
    wait_for(lambda: len(http.events_of("POST")) == 2 and http.events, message="both writes")
    (event,) = http.events.values()  # the first create failed
    assert event["regarding"]["name"] == CID
    assert (event["reason"], event["action"]) == ("ActionSucceeded", "pause")
    assert event["reportingController"] == "container-controller"
    assert event["reportingInstance"].startswith("container-controller-")
    assert ref.is_alive()

    def effects() -> list[Effect]:
        entries = journal_entries(tmp_path / "trace.jsonl")
        return [e for e in entries if isinstance(e, Effect)]

    wait_for(lambda: len(effects()) == 2, message="both effects journaled")
    assert sorted(e.outcome for e in effects()) == ["ok", "unavailable"]
    # Written on a worker thread, each effect still names the message that caused it.
    received = {
        e.msg_id for e in journal_entries(tmp_path / "trace.jsonl") if isinstance(e, Received)
    }
    assert {e.causation_id for e in effects()} == received


def test_a_fenced_write_is_dropped_without_killing_the_writer():
    """After leadership is lost the port refuses calls with Fenced (a PortError, not a
    KubeError): the Event is dropped like any failed write, the writer goes on."""
    http = FakeKubeHttp()
    now = [T0]
    actor = writer(http, now)
    http.fail_next("POST /apis/events.k8s.io", Fenced("not the leader any more: call refused"))
    emit(actor, reason="ActionSucceeded")
    assert http.events == {}
    emit(actor, rv="11", reason="ActionSucceeded")
    assert len(http.events) == 1


def test_writes_run_in_parallel_on_the_workers(tmp_path):
    """A burst is written by WRITE_WORKERS requests at once (client-go's recordWorkers);
    beyond that the actor waits, and everything is written once the apiserver answers."""
    http = FakeKubeHttp()
    http.hold = threading.Event()
    ref = EventWriterActor.start(journal=Journal(None), http=http, namespace="ns")
    for i in range(WRITE_WORKERS + 5):
        emit(ref, rv=str(100 + i))
    wait_for(lambda: http.in_flight == WRITE_WORKERS, message="every worker busy")
    assert ref.actor_inbox.qsize() >= 4  # the rest waits in the mailbox (EmitGate's bound)
    http.hold.set()
    wait_for(lambda: len(http.events) == WRITE_WORKERS + 5, message="all written")
    assert http.max_in_flight == WRITE_WORKERS


def test_kubectl_describe_lists_the_events_of_the_container():
    """kubectl describe asks for involvedObject.uid: Events carry regarding.uid and
    the resourceVersion, as client-go's GetReference does."""
    http = FakeKubeHttp()
    actor = writer(http, [T0])
    emit(actor, rv="10")
    emit(actor, uid="", rv="")  # an Event without a known mirror: describe cannot see it
    listed = http.describe_events("ns", CID, UID)
    assert [e["involvedObject"]["resourceVersion"] for e in listed] == ["10"]
    assert listed[0]["reportingComponent"] == "container-controller"
    assert len(http.events) == 2


def test_pause_unpause_pause_are_three_events_at_once():
    """Distinct transitions regard distinct resourceVersions: none folds into a series,
    each is written when it happens (issue 13 point 6)."""
    http = FakeKubeHttp()
    now = [T0]
    actor = writer(http, now)
    for rv, action, note in (
        ("10", "pause", "pause succeeded"),
        ("12", "unpause", "unpause succeeded"),
        ("14", "pause", "pause succeeded"),
    ):
        emit(actor, rv=rv, action=action, note=note)
        now[0] += 5 * S
    listed = http.describe_events("ns", CID, UID)
    assert sorted((e["involvedObject"]["resourceVersion"], e["action"]) for e in listed) == [
        ("10", "pause"),
        ("12", "unpause"),
        ("14", "pause"),
    ]
    assert http.events_of("PATCH") == []


def test_a_repeat_of_the_same_version_joins_a_series_visible_at_once():
    """client-go: the first repeat writes series.count 2 at once; later ones only count
    until the refresh (SERIES_UPDATE_S) or the end of the series."""
    http = FakeKubeHttp()
    now = [T0]
    actor = writer(http, now)
    for _ in range(5):
        emit(actor, reason="SyncFailed", type="Warning", note="mirror update rejected")
        now[0] += S
    (event,) = http.events.values()
    assert event["series"]["count"] == 2
    assert len(http.events_of("PATCH")) == 1
    now[0] += int(SERIES_UPDATE_S * S)
    actor.on_receive(Tick())
    (event,) = http.events.values()
    assert event["series"]["count"] == 5
    assert http.describe_events("ns", CID, UID)[0]["series"]["count"] == 5
    now[0] += int(SERIES_WINDOW_S * S) + S  # outside the window: a new Event
    actor.on_receive(Tick())
    assert len(actor.series) == 0
    emit(actor, reason="SyncFailed", type="Warning", note="mirror update rejected")
    assert len(http.events) == 2


def test_the_final_count_is_written_when_the_series_finishes():
    http = FakeKubeHttp()
    now = [T0]
    actor = writer(http, now)
    for _ in range(3):
        emit(actor)
    now[0] += int(SERIES_WINDOW_S * S) + S  # no repeat for the whole window: finished
    actor.on_receive(Tick())
    (event,) = http.events.values()
    assert event["series"]["count"] == 3
    actor.on_receive(Tick())  # written and finished: forgotten
    assert len(actor.series) == 0


def test_an_expired_event_ends_its_series():
    http = FakeKubeHttp()
    now = [T0]
    actor = writer(http, now)
    emit(actor)
    http.events.clear()  # --event-ttl passed
    emit(actor)  # the series write answers 404
    assert len(actor.series) == 0
    emit(actor)
    assert len(http.events) == 1


def test_a_long_non_ascii_note_is_cut_to_what_the_apiserver_accepts():
    http = FakeKubeHttp()
    actor = writer(http, [T0])
    emit(actor, type="Warning", reason="ActionFailed", note="échec " * 400)
    (event,) = http.events.values()
    assert len(event["note"].encode()) <= 1024


def test_old_journal_emit_events_still_decode():
    """Journals written before uid/resource_version carry reporting_controller."""
    old = (
        b'{"kind":"emit_event","msg_id":"1-1","container_id":"c","type":"Normal",'
        b'"reason":"R","action":"a","note":"n","reporting_controller":"dockmirror"}'
    )
    decoded = msgspec.json.decode(old, type=EmitEvent)
    assert (decoded.uid, decoded.resource_version) == ("", "")


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

    ref = EventWriterActor.start(journal=Journal(None), http=FakeKubeHttp(), namespace="ns")
    gate = EmitGate(limit=1000)
    event = EmitEvent(container_id="e" * 64, type="Normal", reason="R", action="a", note="n")
    assert gate.tell(ref, event) is True
    barrier(ref)
    assert gate.dropped == 0
