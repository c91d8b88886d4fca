"""The mirror against the real devenv.

Contract: docs/contract.md §7 scenarios 1, 5-7, 12, 47-54; and bad input.
"""

from __future__ import annotations

import re

import docker
import pytest
from kubernetes import client as k8s

from actors.domain.names import ACTION_ANNOTATION, CONTAINERS, FINALIZER, GROUP, VERSION
from tests.support.wait import wait_for

KUBE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def conditions_of(obj):
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def test_01_container_namespace_and_engine_ready(service, kubectl):
    """Scenario 1: ContainerNamespace/moby exists; kubectl wait on EngineReady returns."""
    result = kubectl(
        "wait",
        "--for=condition=EngineReady",
        "containernamespace/moby",
        "-n",
        service.namespace,
        "--timeout=10s",
    )
    assert result.returncode == 0, result.stderr
    assert "condition met" in result.stdout


def test_05_06_07_lifecycle(service, run_container):
    """Scenarios 5-7: run -> running mirror without lastAction; stop -> exited; rm -> gone."""
    c = run_container(name=f"test-lifecycle-{service.namespace[-6:]}")
    obj = service.wait_status(c.id, "running")
    assert obj["status"]["name"] == c.name
    assert obj["status"]["namespace"] == "moby"
    assert "lastAction" not in obj["status"]
    assert FINALIZER in obj["metadata"]["finalizers"]
    c.stop(timeout=0)
    service.wait_status(c.id, "exited")
    c.remove(force=True)
    service.wait_gone(c.id)


def test_12_kubectl_delete_forwards_to_docker(service, run_container, docker_client, kubectl):
    """Scenario 12: docker create, kubectl delete container/<cid> removes it in Docker."""
    c = run_container(create_only=True)
    service.wait_status(c.id, "created")
    result = kubectl("delete", f"container/{c.id}", "-n", service.namespace, "--timeout=30s")
    assert result.returncode == 0, result.stderr
    service.wait_gone(c.id)
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(c.id)


def test_54_delete_of_running_container_force_removes(service, run_container, docker_client):
    """Scenario 54: deleting a running container's mirror stops and removes it."""
    c = run_container()
    service.wait_status(c.id, "running")
    service.api.delete_namespaced_custom_object(GROUP, VERSION, service.namespace, CONTAINERS, c.id)
    service.wait_gone(c.id)
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(c.id)


def test_47_finalizer_reasserted(service, run_container):
    """Scenario 47: strip the finalizer, docker restart: the finalizer is back."""
    c = run_container()
    service.wait_status(c.id, "running")
    service.api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        service.namespace,
        CONTAINERS,
        c.id,
        {"metadata": {"finalizers": None}},
    )
    c.restart(timeout=0)
    service.wait_mirror(
        c.id,
        lambda m: FINALIZER in (m["metadata"].get("finalizers") or []),
        message="finalizer re-asserted",
    )


def test_48_stale_mirror_removed_at_start(service_factory, namespace, api_client):
    """Scenario 48: a hand-made Container with no Docker counterpart is deleted at start."""
    api = k8s.CustomObjectsApi(api_client)
    k8s.CoreV1Api(api_client)  # namespace exists (fixture)
    ghost = "f" * 64
    from actors.ports.kube_port import KubeHttp
    from actors.service.crd_install import install_crds

    install_crds(KubeHttp(api_client))
    api.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        CONTAINERS,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Container",
            "metadata": {"name": ghost, "finalizers": [FINALIZER]},
        },
    )
    svc = service_factory()
    svc.wait_gone(ghost)
    # Deleting a stale mirror never removes a Docker container. (Counting Docker's
    # containers before and after, as this test did, also counts whatever else runs on
    # the engine meanwhile.)
    removes = [e for e in svc.effects(ghost, op="remove") if e.target == "docker"]
    assert removes == [], removes


def test_49_drift_repair_keeps_uid(service_factory, run_container):
    """Scenario 49: containers created/removed while the service is down are repaired."""
    svc = service_factory()
    keep = run_container()
    gone = run_container()
    keep_uid = svc.wait_status(keep.id, "running")["metadata"]["uid"]
    svc.wait_status(gone.id, "running")
    assert svc.stop() == 0
    gone.remove(force=True)
    new = run_container()
    svc.start()
    svc.wait_status(new.id, "running")
    svc.wait_gone(gone.id)
    assert svc.mirror(keep.id)["metadata"]["uid"] == keep_uid


def test_50_status_mapping_of_created(service, run_container):
    """Scenario 50: created container: no startedAt/finishedAt, pid 0, exitCode 0."""
    c = run_container(create_only=True)
    status = service.wait_status(c.id, "created")["status"]
    assert "startedAt" not in status and "finishedAt" not in status
    assert status["pid"] == 0 and status["exitCode"] == 0
    assert KUBE_TIME.match(status["createdAt"])
    assert status["image"].startswith("sha256:")
    assert status["path"] == "sleep"


def test_51_rename(service, run_container):
    """Scenario 51: docker rename updates status.name; metadata.name unchanged."""
    c = run_container()
    service.wait_status(c.id, "running")
    new_name = f"renamed-{service.namespace[-8:]}"
    c.rename(new_name)
    obj = service.wait_mirror(c.id, lambda m: m["status"]["name"] == new_name, message="rename")
    assert obj["metadata"]["name"] == c.id


def test_52_conditions_and_events(service, run_container, kubectl):
    """Scenario 52: conditions for running and paused, printer column, ConditionChanged."""
    c = run_container()
    obj = service.wait_mirror(
        c.id,
        lambda m: conditions_of(m).get("Running", {}).get("status") == "True",
        message="Running=True",
    )
    conds = conditions_of(obj)
    assert conds["Paused"]["status"] == "False" and conds["Paused"]["reason"] == "NotPaused"
    assert conds["Restarting"]["status"] == "False"
    assert conds["Dead"]["status"] == "False"
    assert conds["OOMKilled"]["status"] == "Unknown"
    assert conds["OOMKilled"]["reason"] == "OOMKilled"
    printed = kubectl("get", f"container/{c.id}", "-n", service.namespace)
    assert "True" in printed.stdout, printed.stdout
    c.pause()
    obj = service.wait_mirror(
        c.id,
        lambda m: conditions_of(m).get("Paused", {}).get("status") == "True",
        message="Paused=True",
    )
    assert conditions_of(obj)["Running"]["reason"] == "NotRunning"
    c.unpause()

    def changed_events():
        events = k8s.EventsV1Api(service.api.api_client).list_namespaced_event(service.namespace)
        return [
            e
            for e in events.items
            if e.reason == "ConditionChanged" and e.regarding.name == c.id and e.action == "Paused"
        ]

    wait_for(lambda: len(changed_events()) >= 1, timeout=20, message="ConditionChanged Paused")


def test_53_unchanged_multi_port_container_keeps_resource_version(service, run_container):
    """Scenario 53: repeated syncs of an unchanged multi-port container keep resourceVersion."""
    c = run_container(
        network_mode="bridge", ports={"80/tcp": None, "443/tcp": None, "53/udp": None}
    )
    obj = service.wait_mirror(
        c.id, lambda m: len((m.get("status") or {}).get("ports") or []) == 3, message="ports"
    )
    names = [p["name"] for p in obj["status"]["ports"]]
    assert names == sorted(names)
    for port in obj["status"]["ports"]:
        assert port["bindings"], port
        assert port["bindings"] == sorted(
            port["bindings"], key=lambda b: (b["hostIP"], b["hostPort"])
        )
    obj = service.wait_mirror(
        c.id, lambda m: len(conditions_of(m)) == 5, message="conditions written"
    )
    writes_before = len(service.effects(c.id, op="apply_status"))
    # Events that cause syncs but change nothing the mirror shows.
    for _ in range(3):
        c.exec_run("true")
        c.kill(signal="SIGWINCH")
    # A rename is a later event for the same container, so the same actor handles it
    # after the syncs above (Docker's event order, then the actor's FIFO mailbox).
    # Once the new name shows, those syncs are done: the rename's write is the only one.
    c.rename(f"renamed-{c.id[:12]}")
    renamed = service.wait_mirror(
        c.id, lambda m: m["status"]["name"] == f"renamed-{c.id[:12]}", message="rename"
    )
    # The rename's effect line is journaled once the service has the apiserver's answer,
    # which can be a moment after this test sees the new name: wait for it, then count.
    wait_for(
        lambda: len(service.effects(c.id, op="apply_status")) > writes_before,
        timeout=10,
        message="the rename's status write journaled",
    )
    assert len(service.effects(c.id, op="apply_status")) == writes_before + 1
    assert int(renamed["metadata"]["resourceVersion"]) > int(obj["metadata"]["resourceVersion"])


def test_bad_input_never_stops_the_service(service, run_container, api_client):
    """Unknown IDs, garbage status and non-ID names: service keeps mirroring."""
    api = k8s.CustomObjectsApi(api_client)
    # A Container named with a non-ID string, with an action annotation added later.
    api.create_namespaced_custom_object(
        GROUP,
        VERSION,
        service.namespace,
        CONTAINERS,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Container",
            "metadata": {"name": "not-an-id"},
        },
    )
    service.annotate("not-an-id", "start")
    obj = service.wait_mirror(
        "not-an-id",
        lambda m: ACTION_ANNOTATION not in (m["metadata"].get("annotations") or {}),
        message="annotation on non-ID consumed",
    )
    assert obj["status"]["lastAction"]["state"] == "Failed"
    assert "not a mirror of a Docker container" in obj["status"]["lastAction"]["error"]
    # A hand-made Container with a garbage (but schema-valid) status for an unknown ID.
    unknown = "e" * 64
    api.create_namespaced_custom_object(
        GROUP,
        VERSION,
        service.namespace,
        CONTAINERS,
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Container", "metadata": {"name": unknown}},
    )
    api.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        service.namespace,
        CONTAINERS,
        unknown,
        {
            "status": {
                "name": "x",
                "namespace": "moby",
                "path": "",
                "image": "",
                "status": "dead",
                "pid": -5,
            }
        },
    )
    service.annotate(unknown, "pause")
    obj = service.wait_mirror(
        unknown,
        lambda m: ACTION_ANNOTATION not in (m["metadata"].get("annotations") or {}),
        message="annotation on unknown ID consumed",
    )
    assert "No such container" in obj["status"]["lastAction"]["error"]
    # The service still mirrors new containers.
    c = run_container()
    service.wait_status(c.id, "running")
    assert service.running
