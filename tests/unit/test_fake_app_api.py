"""The App mode fake (tests/fakes/app_api.py) behaves like the apiserver where it matters.

The same rules are checked against the real apiserver by
tests/integration/test_app_mode.py (generation, status subresource, finalizers).
"""

from __future__ import annotations

import threading

import pytest

from actors.domain.names import APP_CRD_NAME, CONTAINER_NAMESPACES, CONTAINERS, FINALIZER, IMAGES
from actors.ports.kube_port import KubeConflict, KubeInvalid, KubeNotFound
from tests.fakes.app_api import FakeCluster
from tests.support.wait import wait_for

NS = "rancher-desktop"
#: Deadline of every wait (generous: a loaded machine is slow; a pass is quick).
WAIT_S = 30.0


def ready(reason: str = "Connected", status: str = "True") -> dict[str, str]:
    return {
        "type": "ContainerEngineReady",
        "status": status,
        "reason": reason,
        "message": "m",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


def test_app_is_cluster_scoped_with_the_crd_defaults() -> None:
    cluster = FakeCluster()
    app = cluster.client_create_app(namespace=None, engine=None)
    assert "namespace" not in app["metadata"]
    assert app["spec"] == {
        "running": True,
        "namespace": "default",
        "containerEngine": {"name": "moby"},
    }
    assert app["metadata"]["generation"] == 1


def test_generation_moves_with_spec_changes_only() -> None:
    cluster = FakeCluster()
    cluster.client_create_app()
    cluster.client_set_running(True)
    assert cluster.app()["metadata"]["generation"] == 1
    api = cluster.app_api
    api.patch_conditions([ready()], resource_version=cluster.app()["metadata"]["resourceVersion"])
    assert cluster.app()["metadata"]["generation"] == 1
    cluster.client_patch_spec({"running": False})
    assert cluster.app()["metadata"]["generation"] == 2
    cluster.client_patch_spec({"running": False})  # no change: same generation, same RV
    assert cluster.app()["metadata"]["generation"] == 2


def test_spec_namespace_is_immutable() -> None:
    cluster = FakeCluster()
    cluster.client_create_app(namespace="a")
    with pytest.raises(KubeInvalid, match="immutable"):
        cluster.client_patch_spec({"namespace": "b"})


def test_condition_writes_need_the_current_resource_version_and_a_valid_condition() -> None:
    cluster = FakeCluster()
    old_rv = cluster.client_create_app()["metadata"]["resourceVersion"]
    cluster.client_set_running(True)
    api = cluster.app_api
    with pytest.raises(KubeConflict):
        api.patch_conditions([ready()], resource_version=old_rv)
    rv = cluster.app()["metadata"]["resourceVersion"]
    with pytest.raises(KubeInvalid):
        api.patch_conditions([{**ready(), "reason": "not a reason"}], resource_version=rv)
    with pytest.raises(KubeInvalid):
        api.patch_conditions([{"type": "X", "status": "True"}], resource_version=rv)
    written = api.patch_conditions([ready()], resource_version=rv)
    # A merge patch replaces the list whole: the Running condition is gone.
    assert written["status"]["conditions"] == [ready()]


def test_without_crds_the_app_and_the_kinds_answer_404() -> None:
    cluster = FakeCluster(kinds=(CONTAINERS,), app_crd=False)
    with pytest.raises(KubeNotFound):
        cluster.app_api.get()
    with pytest.raises(KubeNotFound):
        cluster.app_api.list()
    assert cluster.app_api.crd_installed() is False
    cluster.app_api.create_crd({"metadata": {"name": APP_CRD_NAME}})
    cluster.app_api.create_crd({"metadata": {"name": APP_CRD_NAME}})  # 409: fine
    assert cluster.app_api.list() == ([], cluster.resource_version)
    sweeper = cluster.sweeper(NS)
    assert sweeper.list(CONTAINERS) == []
    with pytest.raises(KubeNotFound):
        sweeper.list(IMAGES)
    cluster.install(IMAGES)
    assert sweeper.list(IMAGES) == []


def test_finalizers_keep_a_deleted_object_until_stripped() -> None:
    cluster = FakeCluster()
    sweeper = cluster.sweeper(NS)
    cluster.client_add(CONTAINERS, "c1", finalizers=[FINALIZER, "other/x"])
    cluster.client_add(CONTAINER_NAMESPACES, "moby")
    cluster.client_add(CONTAINERS, "c1", "another-namespace")
    sweeper.delete(CONTAINER_NAMESPACES, "moby")  # no finalizer: gone at once
    assert [o["metadata"]["name"] for o in sweeper.list(CONTAINER_NAMESPACES)] == []
    sweeper.delete(CONTAINERS, "c1")
    obj = sweeper.get(CONTAINERS, "c1")
    assert obj["metadata"]["deletionTimestamp"]
    rv = obj["metadata"]["resourceVersion"]
    with pytest.raises(KubeInvalid, match="no new finalizers"):
        sweeper.patch_metadata(
            CONTAINERS, "c1", {"finalizers": [FINALIZER, "other/x", "new/y"]}, resource_version=rv
        )
    with pytest.raises(KubeConflict):
        sweeper.patch_metadata(CONTAINERS, "c1", {"finalizers": ["other/x"]}, resource_version="1")
    obj = sweeper.patch_metadata(CONTAINERS, "c1", {"finalizers": ["other/x"]}, resource_version=rv)
    assert obj["metadata"]["finalizers"] == ["other/x"]
    rv = obj["metadata"]["resourceVersion"]
    sweeper.patch_metadata(CONTAINERS, "c1", {"finalizers": None}, resource_version=rv)
    with pytest.raises(KubeNotFound):
        sweeper.get(CONTAINERS, "c1")
    # The other namespace's object is untouched.
    assert list(cluster.objects("another-namespace")) == [(CONTAINERS, "c1")]


def test_watch_replays_history_then_follows_until_closed() -> None:
    cluster = FakeCluster()
    start = cluster.resource_version
    cluster.client_create_app()
    stream = cluster.app_api.watch(start, server_timeout_s=30, read_timeout_s=5)
    seen: list[tuple[str, bool | None]] = []

    def read() -> None:
        for event in stream:
            obj = event["object"]
            running = [c["status"] for c in (obj.get("status") or {}).get("conditions") or []]
            seen.append((event["type"], running[0] == "True" if running else None))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    cluster.client_set_running(True)
    cluster.client_delete_app()
    wait_for(lambda: len(seen) == 3, timeout=WAIT_S, message="three events")
    assert seen == [("ADDED", None), ("MODIFIED", True), ("DELETED", True)]
    stream.close()
    reader.join(timeout=WAIT_S)
    assert not reader.is_alive()


def test_faults_are_queued_per_operation() -> None:
    cluster = FakeCluster()
    cluster.client_create_app()
    cluster.fail_next("get_app", KubeConflict(409, "x"), times=2)
    for _ in range(2):
        with pytest.raises(KubeConflict):
            cluster.app_api.get()
    assert cluster.app_api.get()["metadata"]["name"] == "app"
    assert cluster.calls_of("get_app") == ["", "", ""]
