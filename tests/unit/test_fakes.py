"""The fakes behave like Docker 20.10 and the apiserver where the actors care."""

from __future__ import annotations

import threading

import pytest

from actors.domain.names import (
    ACTION_ANNOTATION,
    ACTIONS_MANAGER,
    API_VERSION,
    CONTAINERS,
    FINALIZER,
    MERGE_PATCH,
)
from actors.domain.timefmt import parse_rfc3339_ns
from actors.ports.docker_port import DockerError, DockerNotFound, DockerTimeout, DockerUnavailable
from actors.ports.kube_port import (
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeGone,
    KubeInvalid,
    KubeNotFound,
    KubeTimeout,
    KubeUnauthorized,
    KubeUnavailable,
)
from actors.ports.port_errors import is_retryable, retry_after_of
from tests.fakes.docker import FakeDocker
from tests.fakes.kube import FakeKubeHttp, FakeMirrorStore, merge_patch
from tests.support.wait import wait_for

# --- FakeDocker -------------------------------------------------------------------------


def test_start_running_is_304_noop_and_start_paused_is_409():
    d = FakeDocker()
    cid = d.create("web")
    before = d.inspect(cid)["State"]["StartedAt"]
    d.start(cid)
    assert d.inspect(cid)["State"]["StartedAt"] == before
    assert d.events_of(cid) == ["create", "start"]
    d.pause(cid)
    with pytest.raises(DockerError) as err:
        d.start(cid)
    assert err.value.status_code == 409
    assert str(err.value) == (
        "Error response from daemon: cannot start a paused container, try unpause instead"
    )


def test_start_exited_gives_new_started_at_and_pid():
    d = FakeDocker()
    cid = d.create("web")
    first = d.inspect(cid)["State"]
    d.docker_stop_direct(cid)
    d.start(cid)
    second = d.inspect(cid)["State"]
    assert second["Running"] and second["Pid"] != first["Pid"]
    assert parse_rfc3339_ns(second["StartedAt"]) > parse_rfc3339_ns(first["StartedAt"])


def test_stop_exited_is_304_and_stop_running_exits():
    d = FakeDocker()
    cid = d.create("web", running=False)
    d.stop(cid)
    assert d.events_of(cid) == ["create"]
    d.start(cid)
    d.stop(cid)
    state = d.inspect(cid)["State"]
    assert state["Status"] == "exited" and state["ExitCode"] in (137, 143)
    assert state["FinishedAt"] != "0001-01-01T00:00:00Z" and state["Pid"] == 0
    assert d.events_of(cid)[-3:] == ["kill", "die", "stop"]
    assert d.inspect(cid)["NetworkSettings"]["Ports"] == {}


def test_pause_and_unpause_errors_match_docker():
    d = FakeDocker()
    cid = d.create("web", running=False)
    with pytest.raises(DockerError) as err:
        d.pause(cid)
    assert (err.value.status_code, err.value.daemon_message) == (
        409,
        f"Container {cid} is not running",
    )
    with pytest.raises(DockerError) as err:
        d.unpause(cid)
    assert (err.value.status_code, err.value.daemon_message) == (
        500,
        f"Container {cid} is not paused",
    )
    d.start(cid)
    d.pause(cid)
    with pytest.raises(DockerError) as err:
        d.pause(cid)
    assert err.value.daemon_message == f"Container {cid} is already paused"
    d.unpause(cid)
    assert d.events_of(cid)[-2:] == ["pause", "unpause"]


def test_paused_inspect_shape():
    d = FakeDocker()
    cid = d.create("web", labels={"app": "web"}, ports={"80/tcp": [{"HostPort": "8080"}]})
    d.pause(cid)
    info = d.inspect(cid)
    assert info["State"]["Status"] == "paused"
    assert info["State"]["Running"] is True and info["State"]["Paused"] is True
    assert info["Name"] == "/web" and info["Id"] == cid and len(cid) == 64
    assert info["Config"]["Labels"] == {"app": "web"}
    assert info["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostPort": "8080"}]}


def test_stop_and_restart_of_paused_container():
    d = FakeDocker()
    cid = d.create("web")
    d.pause(cid)
    d.stop(cid)
    assert d.inspect(cid)["State"]["Status"] == "exited"
    d.start(cid)
    d.pause(cid)
    started = d.inspect(cid)["State"]["StartedAt"]
    d.restart(cid)
    state = d.inspect(cid)["State"]
    assert state["Status"] == "running" and state["StartedAt"] > started
    assert d.events_of(cid)[-2:] == ["start", "restart"]


def test_remove_and_unknown_id():
    d = FakeDocker()
    cid = d.create("web")
    d.remove(cid)
    assert d.events_of(cid)[-3:] == ["kill", "die", "destroy"]
    assert d.list_ids() == []
    for call in (d.inspect, d.start, d.stop, d.pause, d.unpause, d.restart, d.remove):
        with pytest.raises(DockerNotFound) as err:
            call(cid)
        assert str(err.value) == f"Error response from daemon: No such container: {cid}"


def test_unavailable_fail_next_and_call_log():
    d = FakeDocker()
    cid = d.create("web")
    d.fail_next("stop", DockerError("boom", status_code=500))
    with pytest.raises(DockerError):
        d.stop(cid)
    d.stop(cid)  # only one injected failure
    d.unavailable = True
    with pytest.raises(DockerUnavailable):
        d.ping()
    assert d.calls == [("stop", cid), ("stop", cid), ("ping", None)]


def test_docker_fail_status_uses_the_ports_mapping_and_times():
    d = FakeDocker()
    cid = d.create("web")
    d.fail_status("inspect", 503, "busy", retry_after=2.0, times=2)
    for _ in range(2):
        with pytest.raises(DockerError) as err:
            d.inspect(cid)
        assert (err.value.status_code, retry_after_of(err.value)) == (503, 2.0)
        assert is_retryable(err.value) and str(err.value) == "Error response from daemon: busy"
    assert d.inspect(cid)["Id"] == cid  # exactly two
    d.fail_status("start", 404, f"No such container: {cid}", container_id=cid)
    with pytest.raises(DockerNotFound) as not_found:
        d.start(cid)
    assert not is_retryable(not_found.value)
    d.fail_status("pause", 409, "conflict")
    with pytest.raises(DockerError) as conflict:
        d.pause(cid)
    assert not is_retryable(conflict.value)


def test_docker_time_out_before_and_after_the_call_takes_effect():
    d = FakeDocker()
    cid = d.create("web")
    d.time_out_next("stop", cid)
    with pytest.raises(DockerTimeout):
        d.stop(cid)
    assert d.state_of(cid) == "running"  # never reached the engine
    d.time_out_next("stop", cid, applied=True)
    with pytest.raises(DockerTimeout) as err:
        d.stop(cid, stop_timeout_s=3)
    assert isinstance(err.value, DockerUnavailable) and is_retryable(err.value)
    assert d.state_of(cid) == "exited"  # the engine did it; only the answer was lost
    assert d.stop_timeouts[-1] == ("stop", cid, 3)
    d.fail_next("restart", DockerTimeout("lost"), cid, after=True)
    with pytest.raises(DockerTimeout):
        d.restart(cid)
    assert d.state_of(cid) == "running" and d.events_of(cid)[-1] == "restart"
    d.restart(cid)  # the fault was used up
    # An error answer that is lost is still a timeout to the caller.
    d.time_out_next("inspect", applied=True)
    with pytest.raises(DockerTimeout):
        d.inspect("no-such-container")


def test_docker_hung_engine_times_out_calls_and_silences_streams():
    d = FakeDocker()
    cid = d.create("web")
    stream = d.events()
    got: list[str] = []
    ended = threading.Event()

    def read() -> None:
        got.extend(e["Action"] for e in stream)
        ended.set()

    threading.Thread(target=read, daemon=True).start()
    d.hung = True
    for call in (d.ping, d.list_ids, lambda: d.inspect(cid), lambda: d.pause(cid)):
        with pytest.raises(DockerTimeout):
            call()
    d.docker_pause_direct(cid)  # an event the stopped daemon cannot deliver yet
    assert not ended.is_set() and got == []
    d.hung = False
    wait_for(lambda: got == ["pause"], timeout=5, message="event delivered after resume")
    assert not ended.is_set()  # a hang does not end the stream; close() does
    stream.close()
    assert ended.wait(5)


def test_docker_block_holds_ping():
    d = FakeDocker()
    gate = d.block("ping")
    done = threading.Event()
    failures: list[BaseException] = []

    def ping() -> None:
        try:
            d.ping()
        except DockerTimeout as exc:
            failures.append(exc)
        done.set()

    threading.Thread(target=ping, daemon=True).start()
    assert gate.wait_entered()
    assert not done.is_set()
    gate.release(DockerTimeout("ping timed out"))
    assert done.wait(5) and len(failures) == 1


def test_block_holds_stop_in_flight_after_sigterm():
    d = FakeDocker()
    cid = d.create("web")
    gate = d.block("stop", cid)
    t = threading.Thread(target=d.stop, args=(cid,))
    t.start()
    assert gate.wait_entered()
    assert d.inspect(cid)["State"]["Status"] == "running"
    assert d.events_of(cid)[-1] == "kill"
    gate.release()
    t.join(5)
    assert d.inspect(cid)["State"]["Status"] == "exited"


def test_events_since_until_and_live_stream_end():
    d = FakeDocker()
    t0 = d.system_time_ns()
    cid = d.create("web")
    since = f"{t0 // 10**9}.{t0 % 10**9:09d}"
    now = d.system_time_ns()
    history = list(d.events(since=since, until=f"{now // 10**9}.{now % 10**9:09d}"))
    assert [e["Action"] for e in history] == ["create", "start"]
    event = history[1]
    assert event["Type"] == "container" and event["Actor"]["ID"] == cid
    assert event["Actor"]["Attributes"]["name"] == "web"
    assert event["time"] == event["timeNano"] // 10**9

    # Like the real call (which returns once the response headers arrived), the stream
    # is subscribed when events() returns: no need to wait for the reader to start.
    stream = d.events()
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.extend(e["Action"] for e in stream))
    reader.start()
    d.pause(cid)
    wait_for(lambda: got == ["pause"], timeout=5, message="the pause event streamed")
    d.unavailable = True  # engine down: the stream ends
    reader.join(5)
    assert not reader.is_alive() and got == ["pause"]


# --- FakeMirrorStore --------------------------------------------------------------------


def test_merge_patch_rfc7386():
    assert merge_patch(
        {"a": 1, "b": {"c": 1, "d": 2}, "l": [1, 2]},
        {
            "a": None,
            "b": {"c": None, "e": 3},
            "l": [3],
        },
    ) == {"b": {"d": 2, "e": 3}, "l": [3]}


def test_apply_metadata_creates_and_noop_keeps_rv():
    k = FakeMirrorStore("ns")
    obj = k.apply_metadata("c1")
    meta = obj["metadata"]
    assert meta["finalizers"] == [FINALIZER] and meta["generation"] == 1 and meta["uid"]
    again = k.apply_metadata("c1")
    assert again["metadata"]["resourceVersion"] == meta["resourceVersion"]
    status = {"status": "running", "labels": {"a": "1"}}
    s1 = k.apply_status("c1", status)
    s2 = k.apply_status("c1", status)
    assert s1["metadata"]["resourceVersion"] == s2["metadata"]["resourceVersion"]
    assert int(s1["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])


def test_stale_resource_version_is_409():
    k = FakeMirrorStore()
    rv = k.apply_metadata("c1")["metadata"]["resourceVersion"]
    la = {"action": "stop", "state": "Succeeded"}
    fresh = k.patch_status("c1", {"lastAction": la}, resource_version=rv, field_manager="x")
    with pytest.raises(KubeConflict):
        k.patch_status("c1", {"lastAction": la}, resource_version=rv, field_manager="x")
    with pytest.raises(KubeConflict):
        k.patch_metadata("c1", {"labels": {"a": "b"}}, resource_version=rv, field_manager="x")
    new_rv = fresh["metadata"]["resourceVersion"]
    k.patch_metadata("c1", {"labels": {"a": "b"}}, resource_version=new_rv, field_manager="x")


def test_status_and_main_resource_are_separate():
    k = FakeMirrorStore()
    k.apply_metadata("c1")
    k.client_annotate("c1", "stop")
    obj = k.patch_metadata(
        "c1",
        {"annotations": {"other": "x"}, "status": {"status": "bogus"}},
        resource_version=None,
        field_manager="x",
    )
    assert "status" not in obj
    obj = k.apply_status("c1", {"status": "running"})
    assert obj["metadata"]["annotations"] == {ACTION_ANNOTATION: "stop", "other": "x"}


def test_apply_status_removes_left_out_fields_but_keeps_other_managers():
    k = FakeMirrorStore()
    k.apply_metadata("c1")
    k.apply_status("c1", {"status": "exited", "error": "oops", "labels": {"a": "1", "b": "2"}})
    la = {"action": "stop", "state": "Succeeded"}
    k.patch_status("c1", {"lastAction": la}, resource_version=None, field_manager=ACTIONS_MANAGER)
    k.client_patch_status("c1", {"conditions": [{"type": "Ready"}]})
    obj = k.apply_status("c1", {"status": "running", "labels": {"a": "1"}})
    assert obj["status"] == {
        "status": "running",
        "labels": {"a": "1"},
        "lastAction": la,
        "conditions": [{"type": "Ready"}],
    }
    with pytest.raises(KubeNotFound):
        k.apply_status("missing", {"status": "running"})
    with pytest.raises(KubeInvalid):
        k.patch_status(
            "c1", {"lastAction": {"action": "kill"}}, resource_version=None, field_manager="x"
        )


def test_finalizer_delete_flow():
    k = FakeMirrorStore()
    k.apply_metadata("c1")
    rv = k.resource_version
    k.delete("c1")
    obj = k.get("c1")
    assert obj["metadata"]["deletionTimestamp"] and int(obj["metadata"]["resourceVersion"]) > int(
        rv
    )
    k.apply_metadata("c1")  # finalizer still there: a no-op, accepted
    k.client_strip_finalizer("c1")
    with pytest.raises(KubeNotFound):
        k.get("c1")
    with pytest.raises(KubeNotFound):
        k.delete("c1")
    k.client_create({"metadata": {"name": "bare"}})
    k.delete("bare")  # no finalizer: gone at once
    assert k.objects() == {}


def test_finalizer_cannot_be_readded_to_terminating_object():
    k = FakeMirrorStore()
    k.apply_metadata("c1")
    k.patch_metadata(
        "c1", {"finalizers": [FINALIZER, "other/x"]}, resource_version=None, field_manager="x"
    )
    k.delete("c1")
    k.patch_metadata("c1", {"finalizers": ["other/x"]}, resource_version=None, field_manager="x")
    with pytest.raises(KubeInvalid):
        k.apply_metadata("c1")
    k.patch_metadata("c1", {"finalizers": None}, resource_version=None, field_manager="x")
    assert k.objects() == {}


def test_managed_fields_follow_the_annotation():
    k = FakeMirrorStore()
    k.apply_metadata("c1")
    obj = k.client_annotate("c1", "pause", at="2026-01-02T03:04:05Z")
    assert obj["metadata"]["managedFields"] == [
        {
            "manager": "kubectl-annotate",
            "operation": "Update",
            "apiVersion": API_VERSION,
            "time": "2026-01-02T03:04:05Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:annotations": {f"f:{ACTION_ANNOTATION}": {}}}},
        }
    ]
    obj = k.patch_metadata(
        "c1",
        {"annotations": {ACTION_ANNOTATION: None}},
        resource_version=obj["metadata"]["resourceVersion"],
        field_manager=ACTIONS_MANAGER,
    )
    assert "managedFields" not in obj["metadata"] and "annotations" not in obj["metadata"]


def test_webhook_emulation():
    k = FakeMirrorStore(webhook=True)
    with pytest.raises(KubeForbidden, match="not allowed on create"):
        k.client_create({"metadata": {"name": "c1", "annotations": {ACTION_ANNOTATION: "stop"}}})
    k.apply_metadata("c1")
    with pytest.raises(KubeForbidden, match=r'invalid .* annotation "bogus"'):
        k.client_annotate("c1", "bogus")
    k.webhook = False
    k.client_annotate("c1", "bogus")  # reached storage while the webhook was absent
    k.webhook = True
    with pytest.raises(KubeForbidden):
        k.apply_metadata("c1")
    k.patch_metadata(
        "c1", {"annotations": {ACTION_ANNOTATION: None}}, resource_version=None, field_manager="x"
    )


def test_faults_and_unavailable():
    k = FakeMirrorStore()
    k.apply_metadata("c1")
    k.conflict_next("patch_status", n=2)
    for _ in range(2):
        with pytest.raises(KubeConflict):
            k.patch_status("c1", {"status": "x"}, resource_version=None, field_manager="x")
    k.patch_status("c1", {"status": "x"}, resource_version=None, field_manager="x")
    k.unavailable = True
    with pytest.raises(KubeUnavailable):
        k.get("c1")


@pytest.mark.parametrize(
    ("status", "family", "retryable"),
    [
        (401, KubeUnauthorized, True),
        (403, KubeForbidden, False),
        (404, KubeNotFound, False),
        (408, KubeUnavailable, True),
        (409, KubeConflict, True),
        (410, KubeGone, True),
        (413, KubeInvalid, False),
        (422, KubeInvalid, False),
        (429, KubeUnavailable, True),
        (500, KubeUnavailable, True),
        (503, KubeUnavailable, True),
    ],
)
def test_kube_fail_status_uses_the_ports_mapping(status, family, retryable):
    k = FakeMirrorStore()
    k.apply_metadata("c1")
    k.fail_status("patch_status", status, "injected", retry_after=1.5, times=2)
    for _ in range(2):
        with pytest.raises(KubeError) as err:
            k.patch_status("c1", {"status": "x"}, resource_version=None, field_manager="x")
        assert type(err.value) is family and err.value.status == status
        assert is_retryable(err.value) is retryable
        assert retry_after_of(err.value) == 1.5
    assert "status" not in k.get("c1")  # the failed writes changed nothing
    k.patch_status("c1", {"status": "x"}, resource_version=None, field_manager="x")


def test_kube_time_out_before_and_after_the_write_is_applied():
    k = FakeMirrorStore()
    k.apply_metadata("c1")
    rv = k.resource_version
    k.time_out_next("patch_metadata")
    with pytest.raises(KubeTimeout):
        k.patch_metadata("c1", {"annotations": {"a": "b"}}, resource_version=rv, field_manager="m")
    assert k.resource_version == rv  # not applied
    k.time_out_next("patch_metadata", applied=True, times=1)
    with pytest.raises(KubeTimeout) as err:
        k.patch_metadata("c1", {"annotations": {"a": "b"}}, resource_version=rv, field_manager="m")
    assert isinstance(err.value, KubeUnavailable) and is_retryable(err.value)
    assert k.get("c1")["metadata"]["annotations"] == {"a": "b"}  # applied; answer lost
    # The retry of the same conditional write now meets the server's 409, as for real.
    with pytest.raises(KubeConflict):
        k.patch_metadata("c1", {"annotations": {"a": "b"}}, resource_version=rv, field_manager="m")
    k.fail_next("delete", KubeTimeout(None, "lost"), after=True)
    with pytest.raises(KubeTimeout):
        k.delete("c1")
    assert k.get("c1")["metadata"].get("deletionTimestamp")


def test_watch_replays_after_rv_and_410_after_expiry():
    k = FakeMirrorStore()
    _, rv0 = k.list()
    k.apply_metadata("c1")
    k.apply_status("c1", {"status": "running"})
    k.delete("c1")
    events = list(k.watch(rv0, server_timeout_s=0, read_timeout_s=1))
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "MODIFIED"]
    k.expire_history()
    (err,) = list(k.watch(rv0, server_timeout_s=1, read_timeout_s=5))
    assert err["type"] == "ERROR" and err["object"]["code"] == 410
    assert list(k.watch(k.resource_version, server_timeout_s=0, read_timeout_s=1)) == []


def test_watch_live_bookmark_and_dropped_stream():
    k = FakeMirrorStore()
    _, rv = k.list()
    stream = k.watch(rv, server_timeout_s=30, read_timeout_s=60)
    k.apply_metadata("c1")
    # The watch is a lazy generator: it starts (and notes which drops and bookmarks it
    # has seen) at its first event. Take that one here, then hand it to the reader.
    got = [next(stream)["type"]]
    reader = threading.Thread(target=lambda: got.extend(e["type"] for e in stream))
    reader.start()
    k.client_delete("c1")
    k.client_strip_finalizer("c1")
    k.send_bookmark()  # a watch delivers its history before a bookmark, at any speed
    wait_for(lambda: len(got) == 4, timeout=5, message="three changes and a bookmark")
    k.drop_watches()  # a drop ends the stream before undelivered events: wait first
    reader.join(5)
    assert not reader.is_alive()
    assert got == ["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]


def test_watch_dropped_with_error_and_concurrent_writers_serialise():
    k = FakeMirrorStore()
    k.apply_metadata("c1")
    stream = k.watch(k.resource_version, server_timeout_s=30, read_timeout_s=60)
    k.apply_status("c1", {"status": "running"})
    # Started (see above) before the drop, whenever the reader thread gets to run.
    assert next(stream)["type"] == "MODIFIED"
    errors: list[BaseException] = []

    def read() -> None:
        try:
            list(stream)
        except KubeUnavailable as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    k.drop_watches(error=True)
    reader.join(5)
    assert len(errors) == 1

    def bump(i: int) -> None:
        for j in range(20):
            k.client_patch_status("c1", {f"k{i}": j}, manager=f"m{i}")

    threads = [threading.Thread(target=bump, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rvs = [int(rv) for op, _, rv in k.write_log if op == "client_patch_status"]
    assert len(set(rvs)) == 80


# --- FakeKubeHttp: Events and webhook configurations ----------------------------------------

EVENTS = "/apis/events.k8s.io/v1/namespaces/ns/events"


def _event(name: str = "c.1", **over):
    event = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": "ns"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "container-controller",
        "reportingInstance": "container-controller-host",
        "action": "pause",
        "reason": "ActionSucceeded",
        "type": "Normal",
        "note": "pause succeeded",
        "regarding": {"kind": "Container", "name": "c", "namespace": "ns", "uid": "u1"},
    }
    event.update(over)
    return event


def test_fake_events_validate_like_the_apiserver():
    http = FakeKubeHttp()
    stored = http.request("POST", EVENTS, body=_event())
    assert stored["metadata"]["uid"] and stored["metadata"]["resourceVersion"]
    with pytest.raises(KubeConflict):
        http.request("POST", EVENTS, body=_event())
    for bad in (
        {"type": "Info"},
        {"eventTime": None},
        {"reportingController": ""},
        {"reportingController": "not a name"},
        {"reportingInstance": "i" * 129},
        {"action": ""},
        {"reason": "r" * 129},
        {"note": "é" * 513},  # 1,026 bytes
        {"series": {"count": 1, "lastObservedTime": "2026-01-01T00:00:00.000000Z"}},
        {"regarding": {"kind": "Container", "name": "c"}},
    ):
        with pytest.raises(KubeInvalid) as err:
            http.request("POST", EVENTS, body=_event("c.2", **bad))
        assert err.value.status == 422
    with pytest.raises(KubeInvalid):
        http.request("POST", EVENTS, body=_event("Not_A_Name"))
    with pytest.raises(KubeInvalid) as err:
        http.request("POST", "/apis/events.k8s.io/v1/namespaces/other/events", body=_event())
    assert err.value.status == 400


def test_fake_event_patches_keep_immutable_fields_and_validate_series():
    http = FakeKubeHttp()
    http.request("POST", EVENTS, body=_event())
    series = {"series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:01.000000Z"}}
    patched = http.request("PATCH", f"{EVENTS}/c.1", body=series, content_type=MERGE_PATCH)
    assert patched["series"]["count"] == 2
    with pytest.raises(KubeInvalid, match="message: Invalid value: field is immutable"):
        http.request("PATCH", f"{EVENTS}/c.1", body={"note": "x"}, content_type=MERGE_PATCH)
    with pytest.raises(KubeInvalid, match=r"series\.count"):
        http.request(
            "PATCH", f"{EVENTS}/c.1", body={"series": {"count": 1}}, content_type=MERGE_PATCH
        )
    with pytest.raises(KubeNotFound):
        http.request("PATCH", f"{EVENTS}/gone", body=series, content_type=MERGE_PATCH)


def test_fake_event_selectors_and_the_core_view_kubectl_describe_reads():
    http = FakeKubeHttp()
    http.request("POST", EVENTS, body=_event("c.1"))
    http.request(
        "POST",
        EVENTS,
        body=_event("c.2", regarding={"kind": "Container", "name": "c", "namespace": "ns"}),
    )
    by_uid = http.request("GET", EVENTS, query={"fieldSelector": "regarding.uid=u1"})
    assert [e["metadata"]["name"] for e in by_uid["items"]] == ["c.1"]
    by_name = http.request("GET", EVENTS, query={"fieldSelector": "regarding.name=c"})
    assert len(by_name["items"]) == 2
    (core,) = http.describe_events("ns", "c", "u1")
    assert core["involvedObject"]["uid"] == "u1" and core["message"] == "pause succeeded"
    assert core["reportingComponent"] == "container-controller" and "count" not in core
    with pytest.raises(KubeInvalid):
        http.request("GET", EVENTS, query={"fieldSelector": "note=x"})


def test_fake_webhook_configurations_follow_optimistic_concurrency():
    http = FakeKubeHttp()
    path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
    body = {"metadata": {"name": "w"}, "webhooks": []}
    created = http.request("POST", path, body=body)
    with pytest.raises(KubeConflict):
        http.request("POST", path, body=body)
    with pytest.raises(KubeInvalid, match="must be specified for an update"):
        http.request("PUT", f"{path}/w", body=body)
    rv = created["metadata"]["resourceVersion"]
    same = http.request(
        "PUT", f"{path}/w", body={**body, "metadata": {"name": "w", "resourceVersion": rv}}
    )
    assert same["metadata"]["resourceVersion"] == rv  # nothing changed: no new version
    changed = http.request(
        "PUT",
        f"{path}/w",
        body={"metadata": {"name": "w", "resourceVersion": rv}, "webhooks": [{}]},
    )
    assert changed["metadata"]["resourceVersion"] != rv
    with pytest.raises(KubeConflict):
        http.request(
            "PUT", f"{path}/w", body={**body, "metadata": {"name": "w", "resourceVersion": rv}}
        )
    http.request("DELETE", f"{path}/w")
    with pytest.raises(KubeNotFound):
        http.request("DELETE", f"{path}/w")


def test_fake_kube_http_faults_and_dry_runs():
    http = FakeKubeHttp()
    http.fail_next("POST /apis/events", KubeUnavailable(503, "down"), times=2)
    for _ in range(2):
        with pytest.raises(KubeUnavailable):
            http.request("POST", EVENTS, body=_event())
    http.request("POST", EVENTS, body=_event())
    containers = f"/apis/{API_VERSION}/namespaces/ns/{CONTAINERS}"
    http.request("POST", containers, query={"dryRun": "All"}, body={"metadata": {}})

    def deny(body):
        raise KubeForbidden(403, "denied")

    http.on_dry_run = deny
    with pytest.raises(KubeForbidden):
        http.request("POST", containers, query={"dryRun": "All"}, body={"metadata": {}})
    with pytest.raises(KubeNotFound):
        http.request("POST", containers, body={"metadata": {}})  # only dry runs are served
