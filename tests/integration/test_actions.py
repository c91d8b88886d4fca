"""Actions against the real devenv: docs/contract.md §7 scenarios 14-18, 21-23, 33, 35-43, 46,
57 and issue 4's points 4 (parallelism), 5 (only real mirrors) and 8 (Events)."""

from __future__ import annotations

import threading
import time

from kubernetes import client as k8s

from actors.domain.names import ACTION_ANNOTATION, CONTAINERS, GROUP, VERSION
from tests.support.docker_cleanup import force_remove
from tests.support.wait import wait_for

KUBE_TIME = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"
#: The two writes that complete an action, in the order docs/contract.md §4.3 requires.
ACTION_WRITES = ("patch_last_action", "remove_annotation")


def docker_events(docker_client, container_id, since, actions):
    """Docker's own record of events for one container since ``since`` (finite read)."""
    until = time.time() + 0.5
    events = docker_client.api.events(
        since=since, until=until, decode=True, filters={"container": container_id}
    )
    return [e["Action"] for e in events if e.get("Action") in actions]


def test_14_15_16_stop_start_pause_unpause(service, run_container, docker_client):
    c = run_container(stop_timeout=1)
    service.wait_status(c.id, "running")
    la = service.request(c.id, "stop")
    assert (la["action"], la["state"]) == ("stop", "Succeeded")
    assert "error" not in la
    service.wait_status(c.id, "exited")
    assert docker_client.containers.get(c.id).status == "exited"
    la = service.request(c.id, "start")
    assert (la["action"], la["state"]) == ("start", "Succeeded")
    service.wait_status(c.id, "running")
    la = service.request(c.id, "pause")
    assert (la["action"], la["state"]) == ("pause", "Succeeded")
    service.wait_status(c.id, "paused")
    la = service.request(c.id, "unpause")
    assert (la["action"], la["state"]) == ("unpause", "Succeeded")
    service.wait_status(c.id, "running")


def test_17_18_pause_and_unpause_on_exited_fail(service, run_container):
    c = run_container(command=["true"])
    service.wait_status(c.id, "exited")
    la = service.request(c.id, "pause")
    assert (la["action"], la["state"]) == ("pause", "Failed")
    assert "not running" in la["error"]
    la = service.request(c.id, "unpause")
    assert (la["action"], la["state"]) == ("unpause", "Failed")
    assert la["error"] == f"cannot unpause container {c.id}: not running"


def test_21_restart_advances_started_at(service, run_container, docker_client):
    c = run_container(stop_timeout=1)
    before = docker_client.api.inspect_container(c.id)["State"]["StartedAt"]
    obj = service.wait_status(c.id, "running")
    mirror_before = obj["status"]["startedAt"]
    la = service.request(c.id, "restart")
    assert (la["action"], la["state"]) == ("restart", "Succeeded")
    after = docker_client.api.inspect_container(c.id)["State"]["StartedAt"]
    assert after != before
    service.wait_mirror(
        c.id, lambda m: m["status"].get("startedAt", "") > mirror_before, message="startedAt"
    )


def test_22_last_action_survives_direct_docker_stop(service, run_container):
    c = run_container(create_only=True, stop_timeout=1)
    service.wait_status(c.id, "created")
    la = service.request(c.id, "start")
    assert (la["action"], la["state"]) == ("start", "Succeeded")
    c.stop(timeout=0)
    obj = service.wait_status(c.id, "exited")
    assert obj["status"]["lastAction"]["action"] == "start"
    assert obj["status"]["lastAction"]["state"] == "Succeeded"


def test_23_consecutive_actions_have_new_timestamps(service, run_container):
    import re

    c = run_container(stop_timeout=1)
    service.wait_status(c.id, "running")
    first = service.request(c.id, "stop")
    # Let at least one whole second pass so the second-precision stamps can differ.
    boundary = int(time.time()) + 1
    wait_for(lambda: time.time() >= boundary + 0.05, timeout=3, message="next second")
    second = service.request(c.id, "start")
    for la in (first, second):
        assert re.match(KUBE_TIME, la["observedAt"]) and re.match(KUBE_TIME, la["completedAt"])
    assert second["observedAt"] != first["observedAt"]
    assert second["completedAt"] != first["completedAt"]


def test_33_overwrite_while_stop_in_flight_ends_running(service, run_container):
    """Scenario 33: stop (10 s grace, PID 1 ignores SIGTERM) overwritten by start."""
    c = run_container(stop_timeout=10)
    service.wait_status(c.id, "running")
    service.annotate(c.id, "stop")
    # The stop is in flight once Docker sent SIGTERM (the kill event); overwrite meanwhile.
    wait_for(
        lambda: service.docker_events_seen(c.id, "kill") >= 1,
        timeout=30,
        message="stop in flight (kill event)",
    )
    service.annotate(c.id, "start")
    obj = service.wait_mirror(
        c.id,
        lambda m: (
            ACTION_ANNOTATION not in (m["metadata"].get("annotations") or {})
            and (m["status"].get("lastAction") or {}).get("action") == "start"
        ),
        timeout=40,
        message="start ran after stop",
    )
    assert obj["status"]["lastAction"]["state"] == "Succeeded"
    service.wait_status(c.id, "running")


def test_35_action_on_terminating_mirror_never_runs(service, run_container, docker_client):
    c = run_container()
    obj = service.wait_status(c.id, "running")
    api = service.api
    api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        service.namespace,
        CONTAINERS,
        c.id,
        {"metadata": {"finalizers": [*obj["metadata"]["finalizers"], "test.dockmirror/block"]}},
    )
    api.delete_namespaced_custom_object(GROUP, VERSION, service.namespace, CONTAINERS, c.id)
    service.annotate(c.id, "stop")  # added after the delete: must never run
    # The finalizer pass force-removes the Docker container.
    wait_for(
        lambda: (
            not docker_client.containers.list(all=True, ignore_removed=True, filters={"id": c.id})
        ),
        timeout=30,
        message="docker container removed",
    )
    obj = service.mirror(c.id)
    if obj is not None:  # still held by our extra finalizer
        assert "lastAction" not in (obj.get("status") or {})
        api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            service.namespace,
            CONTAINERS,
            c.id,
            {"metadata": {"finalizers": None}},
        )
    assert "Error" not in service.log_since_start()


def test_36_mirror_vanishes_mid_restart(service, run_container, docker_client):
    c = run_container(stop_timeout=10)
    service.wait_status(c.id, "running")
    service.annotate(c.id, "restart")
    wait_for(
        lambda: service.docker_events_seen(c.id, "kill") >= 1,
        timeout=30,
        message="restart in flight (kill event)",
    )
    c.remove(force=True)
    service.wait_gone(c.id, timeout=40)
    # The service is still healthy: a new container is mirrored.
    other = run_container()
    service.wait_status(other.id, "running")


def test_37_destroy_racing_kubectl_delete(service, run_container):
    c = run_container()
    service.wait_status(c.id, "running")
    errors: list[BaseException] = []

    def kube_delete():
        try:
            service.api.delete_namespaced_custom_object(
                GROUP, VERSION, service.namespace, CONTAINERS, c.id
            )
        except Exception as exc:  # 404 is fine here
            errors.append(exc)

    thread = threading.Thread(target=kube_delete)
    thread.start()
    try:
        force_remove(c)  # races the service's forward-delete: 404 or 409 are fine
    finally:
        thread.join()
    service.wait_gone(c.id)
    assert not [e for e in errors if getattr(e, "status", None) != 404], errors
    assert not service.notes(c.id, "docker remove failed; finalizer kept")


def test_38_happy_path_has_no_conflict_retry(service, run_container):
    c = run_container()
    service.wait_status(c.id, "running")
    la = service.request(c.id, "pause")
    assert la["state"] == "Succeeded"

    def action_effects():
        return [e for e in service.effects(c.id) if e.op in ACTION_WRITES]

    # An effect line is journaled when the service has the apiserver's answer, which can
    # be a moment after this test already sees the annotation gone: wait for both lines.
    wait_for(lambda: len(action_effects()) >= 2, timeout=10, message="both action writes journaled")
    effects = service.effects(c.id)
    writes = action_effects()
    assert [e.op for e in writes][:2] == list(ACTION_WRITES)
    assert all(e.outcome == "ok" for e in writes), writes
    assert not [e for e in effects if e.outcome == "conflict"]


def test_39_40_no_op_pause_unpause(service, run_container, docker_client):
    c = run_container()
    service.wait_status(c.id, "running")
    since = int(time.time()) - 1
    la = service.request(c.id, "unpause")
    assert (la["action"], la["state"]) == ("unpause", "Succeeded")
    assert docker_client.containers.get(c.id).status == "running"
    la = service.request(c.id, "pause")
    assert la["state"] == "Succeeded"
    service.wait_status(c.id, "paused")
    la = service.request(c.id, "pause")
    assert (la["action"], la["state"]) == ("pause", "Succeeded")
    events = docker_events(docker_client, c.id, since, {"pause", "unpause"})
    assert events == ["pause"], events


def test_41_start_on_running_and_stop_on_exited_succeed(service, run_container):
    running = run_container()
    exited = run_container(command=["true"])
    service.wait_status(running.id, "running")
    service.wait_status(exited.id, "exited")
    assert service.request(running.id, "start")["state"] == "Succeeded"
    assert service.request(exited.id, "stop")["state"] == "Succeeded"


def test_42_start_on_paused_fails_with_docker_text(service, run_container):
    c = run_container()
    service.wait_status(c.id, "running")
    c.pause()
    service.wait_status(c.id, "paused")
    la = service.request(c.id, "start")
    assert la["state"] == "Failed"
    assert la["error"].startswith("Error response from daemon: ")
    assert "cannot start a paused container" in la["error"]


def test_43_back_to_back_cycles_never_fail(service, run_container):
    c = run_container()
    service.wait_status(c.id, "running")
    for _ in range(20):
        for action in ("pause", "unpause"):
            la = service.request(c.id, action)
            assert la["state"] == "Succeeded", la


def test_46_container_gone_from_docker_mirror_present(service):
    ghost = "d" * 64
    service.api.create_namespaced_custom_object(
        GROUP,
        VERSION,
        service.namespace,
        CONTAINERS,
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Container", "metadata": {"name": ghost}},
    )
    la = service.request(ghost, "stop")
    assert la["state"] == "Failed"
    assert "No such container" in la["error"]


def test_only_real_mirrors_id_prefix_is_not_resolved(service, run_container, docker_client):
    """Issue 4 point 5: a Container named with an ID prefix never acts on that container."""
    c = run_container()
    service.wait_status(c.id, "running")
    prefix = c.id[:12]
    service.api.create_namespaced_custom_object(
        GROUP,
        VERSION,
        service.namespace,
        CONTAINERS,
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Container", "metadata": {"name": prefix}},
    )
    la = service.request(prefix, "stop")
    assert la["state"] == "Failed"
    assert "not a mirror of a Docker container" in la["error"]
    assert docker_client.containers.get(c.id).status == "running"


def test_57_several_actions_at_once_one_fails(service, run_container):
    running = [run_container() for _ in range(4)]
    exited = run_container(command=["true"])
    for c in running:
        service.wait_status(c.id, "running")
    service.wait_status(exited.id, "exited")
    for c in running:
        service.annotate(c.id, "pause")
    service.annotate(exited.id, "pause")
    for c in running:
        obj = service.wait_mirror(
            c.id,
            lambda m: ACTION_ANNOTATION not in (m["metadata"].get("annotations") or {}),
            message="pause consumed",
        )
        assert obj["status"]["lastAction"]["state"] == "Succeeded"
    obj = service.wait_mirror(
        exited.id,
        lambda m: ACTION_ANNOTATION not in (m["metadata"].get("annotations") or {}),
        message="failing pause consumed",
    )
    assert obj["status"]["lastAction"]["state"] == "Failed"


def test_parallel_containers_slow_stop_does_not_delay_pause(service, run_container):
    """Issue 4 point 4: a 10 s stop on one container does not delay a pause on another."""
    slow = run_container(stop_timeout=10)
    fast = run_container()
    service.wait_status(slow.id, "running")
    service.wait_status(fast.id, "running")
    service.annotate(slow.id, "stop")
    la = service.request(fast.id, "pause", timeout=30)
    assert la["state"] == "Succeeded"
    # The pause finished while the slow stop was still in flight.
    slow_obj = service.mirror(slow.id)
    assert ACTION_ANNOTATION in (slow_obj["metadata"].get("annotations") or {}), (
        "the 10 s stop had already finished: the pause waited for it"
    )
    la = service.wait_mirror(
        slow.id,
        lambda m: ACTION_ANNOTATION not in (m["metadata"].get("annotations") or {}),
        timeout=40,
        message="slow stop done",
    )["status"]["lastAction"]
    assert la["state"] == "Succeeded"


def test_events_for_outcomes(service, run_container, api_client):
    """Issue 4 point 8: ActionSucceeded (Normal) and ActionFailed (Warning) Events."""
    ok = run_container()
    bad = run_container(command=["true"])
    service.wait_status(ok.id, "running")
    service.wait_status(bad.id, "exited")
    service.request(ok.id, "pause")
    service.request(bad.id, "pause")
    events_api = k8s.EventsV1Api(api_client)

    def find(reason, name):
        items = events_api.list_namespaced_event(service.namespace).items
        return [e for e in items if e.reason == reason and e.regarding.name == name]

    succeeded = wait_for(
        lambda: find("ActionSucceeded", ok.id), timeout=20, message="ActionSucceeded"
    )
    assert succeeded[0].type == "Normal" and succeeded[0].action == "pause"
    failed = wait_for(lambda: find("ActionFailed", bad.id), timeout=20, message="ActionFailed")
    assert failed[0].type == "Warning" and "not running" in failed[0].note
