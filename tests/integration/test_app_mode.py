"""App mode (``--app``) on the real apiserver and Docker engine: docs/contract.md §3.1,
§3.5 and the engine-lifecycle scenarios 24-28 and 56 of §7.

Each test creates the cluster-scoped App ``app`` with ``spec.namespace`` = the test's
namespace and plays the App's own controller: it sets the App's ``Running`` condition the
way rancher-desktop-daemon's App controller does when the VM is up or down (``rdd set
running=...``), and patches ``spec`` like ``rdd set containerEngine.name=...``. The
service is started with ``--app``. The App is a singleton: the tests of this module run
one after another and each deletes it afterwards.

The tests run against a Docker engine of their own (an extra devenv engine, started once
for the module): the shared engine carries other worktrees' test containers, hundreds at
times, which every full sync and cleanup here would otherwise include. ``docker_client``
is overridden accordingly, so ``run_container`` runs its containers there.

Image and Volume mirrors do not exist in this service yet; their CRDs are installed here
when missing (a permissive stand-in, never replacing an installed one) so that the
cleanup of all four kinds is exercised with objects of every kind.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from actors.domain.app_mode import app_crd
from actors.domain.names import (
    APP_GROUP,
    APP_NAME,
    APP_VERSION,
    APPS,
    CONTAINER_NAMESPACES,
    CONTAINERS,
    FINALIZER,
    GROUP,
    IMAGES,
    VERSION,
    VOLUMES,
)
from actors.domain.rbac import rbac_manifests
from actors.ports.kube_port import KubeHttp
from actors.service.crd_install import install_crds
from messages.journal import Effect, Received
from tests.support.devenv import Devenv, unique_name
from tests.support.engines import (
    QUICK_STOP_SLEEP,
    ExtraEngine,
    engines_down,
    engines_remove,
    engines_up,
)
from tests.support.identity import mint_user_kubeconfig
from tests.support.service import Service, retry_transient
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

KINDS = (CONTAINERS, VOLUMES, IMAGES, CONTAINER_NAMESPACES)
ENGINE_READY = "ContainerEngineReady"
#: A 403 anywhere (as tests/integration/test_least_privilege.py reads it): the message
#: ("... is forbidden: User ...") or "403 Forbidden", not three digits inside an ID.
FORBIDDEN = re.compile(r"forbidden|(?<![,.\w])403(?!\w)", re.IGNORECASE)
PRIVATE_ENGINE = "appmode-outage"
MODULE_ENGINE = "appmode"


class AppObject:
    """The App ``app``, written the way its owner (rancher-desktop-daemon) writes it."""

    def __init__(self, api_client: k8s.ApiClient, namespace: str) -> None:
        self.api = k8s.CustomObjectsApi(api_client)
        self.namespace = namespace

    def create(self, *, vm_running: bool, engine: str = "moby") -> dict[str, Any]:
        body = {
            "apiVersion": f"{APP_GROUP}/{APP_VERSION}",
            "kind": "App",
            "metadata": {"name": APP_NAME},
            "spec": {
                "running": vm_running,
                "namespace": self.namespace,
                "containerEngine": {"name": engine},
            },
        }
        retry_transient(
            lambda: self.api.create_cluster_custom_object(APP_GROUP, APP_VERSION, APPS, body)
        )
        self.set_vm_running(vm_running)
        return self.get()

    def get(self) -> dict[str, Any]:
        return self.api.get_cluster_custom_object(APP_GROUP, APP_VERSION, APPS, APP_NAME)

    def delete(self) -> None:
        try:
            self.api.delete_cluster_custom_object(APP_GROUP, APP_VERSION, APPS, APP_NAME)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def set_vm_running(self, running: bool) -> None:
        """The App controller's ``Running`` condition (read-modify-write, retried on 409:
        the service writes ContainerEngineReady into the same list)."""
        status = "True" if running else "False"

        def attempt() -> bool:
            app = self.get()
            conditions = list((app.get("status") or {}).get("conditions") or [])
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            others = [c for c in conditions if c.get("type") != "Running"]
            old = next((c for c in conditions if c.get("type") == "Running"), None)
            changed = old is None or old.get("status") != status
            running_condition = {
                "type": "Running",
                "status": status,
                "reason": "Running" if running else "Stopped",
                "message": "the VM is up" if running else "the VM is down",
                "lastTransitionTime": now if changed else old["lastTransitionTime"],
            }
            body = {
                "metadata": {"resourceVersion": app["metadata"]["resourceVersion"]},
                "status": {"conditions": [running_condition, *others]},
            }
            try:
                self.api.patch_cluster_custom_object_status(
                    APP_GROUP, APP_VERSION, APPS, APP_NAME, body
                )
            except ApiException as exc:
                if exc.status == 409:
                    return False
                raise
            return True

        wait_for(attempt, timeout=10, interval=0.05, message="the Running condition written")

    def patch_spec(self, spec: dict[str, Any]) -> int:
        """``rdd set``: a spec change (a new generation); returns the new generation."""
        app = self.api.patch_cluster_custom_object(
            APP_GROUP, APP_VERSION, APPS, APP_NAME, {"spec": spec}
        )
        return app["metadata"]["generation"]

    def engine_ready(self) -> dict[str, Any] | None:
        conditions = (self.get().get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c.get("type") == ENGINE_READY), None)

    def wait_engine_ready(self, status: str, reason: str, timeout: float = 90.0) -> dict[str, Any]:
        """ContainerEngineReady with ``status``/``reason`` for the App's current generation."""

        def check() -> dict[str, Any] | None:
            app = self.get()
            conditions = (app.get("status") or {}).get("conditions") or []
            cond = next((c for c in conditions if c.get("type") == ENGINE_READY), None)
            if cond is None or (cond.get("status"), cond.get("reason")) != (status, reason):
                return None
            if cond.get("observedGeneration", 0) < app["metadata"]["generation"]:
                return None
            return cond

        return wait_for(
            check, timeout=timeout, interval=0.05, message=f"{ENGINE_READY}={status}/{reason}"
        )


@pytest.fixture(scope="module")
def module_engine(devenv: Devenv) -> Iterator[ExtraEngine]:
    """This module's own Docker engine (removed afterwards)."""
    engines_remove(MODULE_ENGINE)
    (engine,) = engines_up(MODULE_ENGINE)
    try:
        yield engine
    finally:
        engines_remove(MODULE_ENGINE)


@pytest.fixture(scope="module")
def docker_client(module_engine: ExtraEngine) -> Iterator[docker.DockerClient]:
    """Overrides the shared engine's client for this module (``run_container`` uses it)."""
    client = module_engine.client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def kinds_installed(api_client: k8s.ApiClient) -> None:
    """The App CRD, and stand-ins for the Image and Volume CRDs where none is installed."""
    ext = k8s.ApiextensionsV1Api(api_client)
    manifests = [app_crd(), *(_stand_in_crd(plural) for plural in (IMAGES, VOLUMES))]
    for manifest in manifests:
        try:
            ext.create_custom_resource_definition(manifest)
        except ApiException as exc:
            if exc.status != 409:  # installed already: keep it as it is
                raise
    custom = k8s.CustomObjectsApi(api_client)
    retry_transient(lambda: custom.list_cluster_custom_object(APP_GROUP, APP_VERSION, APPS))
    for plural in (IMAGES, VOLUMES):
        retry_transient(lambda p=plural: custom.list_cluster_custom_object(GROUP, VERSION, p))


def _stand_in_crd(plural: str) -> dict[str, Any]:
    kind = {IMAGES: "Image", VOLUMES: "Volume"}[plural]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": plural[:-1],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture
def app(api_client: k8s.ApiClient, namespace: str, kinds_installed: None) -> Iterator[AppObject]:
    obj = AppObject(api_client, namespace)
    obj.delete()  # a leftover of an interrupted run
    wait_for(lambda: _app_gone(obj), timeout=10, message="no App left over")
    yield obj
    obj.delete()


def _app_gone(obj: AppObject) -> bool:
    try:
        obj.get()
    except ApiException as exc:
        return exc.status == 404
    return False


@pytest.fixture
def app_service(
    service_factory: Callable[..., Service], module_engine: ExtraEngine
) -> Callable[..., Service]:
    """``app_service(*extra_args, running=True)``: the service with ``--app``, started;
    ``running``: wait until it runs (it waits for the App first). Its readiness is the
    App's condition, not EngineReady, so that is not waited for."""

    def make(*extra_args: str, running: bool = True) -> Service:
        args = ("--app", "--docker-host", module_engine.docker_host, *extra_args)
        svc = service_factory(extra_args=args, start=False)
        svc.start(wait_ready=False)
        if not running:
            return svc
        wait_for(
            lambda: svc.running and "dockmirror running" in svc.log_since_start(),
            timeout=60,
            message=f"service start (log {svc.log_file})",
        )
        return svc

    return make


def objects(api_client: k8s.ApiClient, namespace: str, plural: str) -> list[dict[str, Any]]:
    custom = k8s.CustomObjectsApi(api_client)
    return custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]


def counts(api_client: k8s.ApiClient, namespace: str) -> dict[str, int]:
    return {plural: len(objects(api_client, namespace, plural)) for plural in KINDS}


def add_object(
    api_client: k8s.ApiClient, namespace: str, plural: str, name: str, **meta: Any
) -> dict[str, Any]:
    """A hand-made object of ``plural`` (metadata only), as a client or a mirror leaves it."""
    kind = {CONTAINERS: "Container", IMAGES: "Image", VOLUMES: "Volume"}.get(
        plural, "ContainerNamespace"
    )
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, **meta},
    }
    custom = k8s.CustomObjectsApi(api_client)
    return custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)


def moby_exists(api_client: k8s.ApiClient, namespace: str) -> bool:
    return any(
        o["metadata"]["name"] == "moby"
        for o in objects(api_client, namespace, CONTAINER_NAMESPACES)
    )


def docker_calls(service: Service, after_seq: int = -1) -> list[Effect]:
    return [
        e
        for e in service.journal()
        if isinstance(e, Effect) and e.target == "docker" and e.seq > after_seq
    ]


def switched_off_seq(service: Service) -> int:
    """The journal position where the App follower learnt that mirroring is off."""
    seqs = [
        e.seq
        for e in service.journal()
        if isinstance(e, Received)
        and e.actor == "app"
        and e.msg_kind == "mirroring_changed"
        and not e.msg.get("on")
    ]
    assert seqs, "mirroring was never switched off"
    return seqs[-1]


# --- scenarios ---------------------------------------------------------------------------------


def test_service_waits_for_the_app_then_mirrors_into_its_namespace(
    app: AppObject, app_service: Callable[..., Service], run_container, api_client, namespace
) -> None:
    """Start before the App exists; scenario 1 in App mode; Connected on the App."""
    svc = app_service(running=False)
    wait_for(lambda: "waiting for the App" in svc.log_since_start(), timeout=10, message="waiting")
    started = time.monotonic()
    app.create(vm_running=True)
    wait_for(
        lambda: moby_exists(api_client, namespace), timeout=10, message="ContainerNamespace/moby"
    )
    assert time.monotonic() - started < 10
    cond = app.wait_engine_ready("True", "Connected")
    assert cond["message"] == "Container engine synced"
    c = run_container()
    svc.wait_status(c.id, "running")


def test_engine_off_deletes_every_mirror_without_docker_then_reports_stopped(
    app: AppObject,
    app_service: Callable[..., Service],
    run_container,
    docker_client,
    api_client,
    namespace,
) -> None:
    """Scenarios 24 and 56: after ``running=false`` no Container, Image, Volume or
    ContainerNamespace is left by the time ContainerEngineReady says Stopped; a Container
    holding the mirror finalizer is deleted without calling Docker."""
    app.create(vm_running=True)
    svc = app_service()
    app.wait_engine_ready("True", "Connected")
    c = run_container()
    mirror = svc.wait_status(c.id, "running")
    assert FINALIZER in mirror["metadata"]["finalizers"]
    add_object(api_client, namespace, CONTAINERS, "hand-made", finalizers=[FINALIZER])
    add_object(api_client, namespace, IMAGES, "img-x", finalizers=[FINALIZER])
    add_object(api_client, namespace, VOLUMES, "vol-x", finalizers=[FINALIZER])
    add_object(api_client, namespace, CONTAINER_NAMESPACES, "k8s.io")
    assert all(counts(api_client, namespace).values())

    app.set_vm_running(False)
    cond = app.wait_engine_ready("False", "Stopped")
    assert cond["message"] == "Container engine stopped"
    assert counts(api_client, namespace) == dict.fromkeys(KINDS, 0)  # at once, no waiting
    # No Docker call once mirroring was switched off: the container is still running.
    assert docker_calls(svc, switched_off_seq(svc)) == []
    assert docker_client.containers.get(c.id).status == "running"
    assert svc.running


def test_engine_off_again_returns_quickly_and_on_recreates_moby(
    app: AppObject, app_service: Callable[..., Service], api_client, namespace
) -> None:
    """Scenario 25: ``running=false`` on a stopped engine is acknowledged within 10 s;
    scenario 26: ``running=true`` recreates ContainerNamespace/moby within 10 s."""
    app.create(vm_running=False)
    svc = app_service()
    first = app.wait_engine_ready("False", "Stopped")
    assert not moby_exists(api_client, namespace)

    started = time.monotonic()
    generation = app.patch_spec({"running": False, "kubernetes": {"enabled": False}})
    cond = app.wait_engine_ready("False", "Stopped", timeout=10)
    assert cond["observedGeneration"] == generation and time.monotonic() - started < 10
    assert cond["lastTransitionTime"] == first["lastTransitionTime"]  # no transition

    started = time.monotonic()
    app.patch_spec({"running": True})
    app.set_vm_running(True)
    wait_for(lambda: moby_exists(api_client, namespace), timeout=10, message="moby recreated")
    assert time.monotonic() - started < 10
    app.wait_engine_ready("True", "Connected")
    assert svc.running


def test_deleting_moby_completes_and_it_stays_gone(
    app: AppObject,
    app_service: Callable[..., Service],
    run_container,
    kubectl,
    api_client,
    namespace,
) -> None:
    """Scenario 27: no finalizer hangs the delete, and mirroring does not put it back."""
    app.create(vm_running=True)
    svc = app_service()
    app.wait_engine_ready("True", "Connected")
    assert moby_exists(api_client, namespace)
    res = kubectl("delete", "ContainerNamespace/moby", "-n", namespace, "--timeout=10s")
    assert res.returncode == 0, res.stderr
    assert not moby_exists(api_client, namespace)
    c = run_container()  # the service handles events after the delete...
    svc.wait_status(c.id, "running")
    assert not moby_exists(api_client, namespace)  # ...and left it deleted


def test_containerd_is_not_applicable_and_mirrors_nothing(
    app: AppObject, app_service: Callable[..., Service], run_container, api_client, namespace
) -> None:
    """Scenario 28: stop, then ``containerEngine.name=containerd running=true``."""
    app.create(vm_running=True)
    svc = app_service()
    app.wait_engine_ready("True", "Connected")
    c = run_container()
    svc.wait_status(c.id, "running")
    app.set_vm_running(False)
    app.wait_engine_ready("False", "Stopped")
    app.patch_spec({"containerEngine": {"name": "containerd"}, "running": True})
    app.set_vm_running(True)
    cond = app.wait_engine_ready("True", "NotApplicable")
    assert cond["message"] == "Engine mirroring is only supported with the moby backend"
    assert counts(api_client, namespace) == dict.fromkeys(KINDS, 0)
    # Back to moby: mirroring resumes with a full sync.
    app.patch_spec({"containerEngine": {"name": "moby"}})
    app.wait_engine_ready("True", "Connected")
    svc.wait_status(c.id, "running")


def test_a_clean_stop_keeps_the_mirrors_and_says_so_on_the_app(
    app: AppObject, app_service: Callable[..., Service], run_container, api_client, namespace
) -> None:
    """docs/contract.md §9, D23: the process stopping is not the engine stopping."""
    app.create(vm_running=True)
    svc = app_service()
    app.wait_engine_ready("True", "Connected")
    c = run_container()
    svc.wait_status(c.id, "running")
    assert svc.stop() == 0
    cond = app.engine_ready()
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", "ConnectFailed")
    assert "no longer follow the engine" in cond["message"]
    assert svc.mirror(c.id) is not None and moby_exists(api_client, namespace)
    # A restart picks up where it left off.
    svc.start(wait_ready=False)
    app.wait_engine_ready("True", "Connected")


def test_app_mode_under_the_printed_rbac(
    app: AppObject,
    app_service: Callable[..., Service],
    run_container,
    devenv: Devenv,
    api_client,
    namespace: str,
    tmp_path: Path,
) -> None:
    """``dockmirror rbac --app`` is enough: a fresh user bound only to it runs a whole
    on-off cycle with ``--skip-crd-install`` and never meets a 403."""
    install_crds(KubeHttp(api_client))  # the admin's step: dockmirror crds | kubectl apply
    user = unique_name("dockmirror", "app")
    items = rbac_manifests(
        namespace=namespace,
        user=user,
        service_account=None,
        admission="policy",
        skip_crd_install=True,
        app=True,
    )
    devenv.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        check=True,
    )
    try:
        who = mint_user_kubeconfig(user, tmp_path / "identity", admin_kubeconfig=devenv.kubeconfig)
        app.create(vm_running=True)
        svc = app_service("--kubeconfig", str(who.kubeconfig), "--skip-crd-install")
        app.wait_engine_ready("True", "Connected")
        c = run_container()
        svc.wait_status(c.id, "running")
        add_object(api_client, namespace, IMAGES, "img-y", finalizers=[FINALIZER])
        app.set_vm_running(False)
        app.wait_engine_ready("False", "Stopped")
        assert counts(api_client, namespace) == dict.fromkeys(KINDS, 0)
        app.set_vm_running(True)
        app.wait_engine_ready("True", "Connected")
        assert svc.stop() == 0
        log = svc.log_text()
        assert not FORBIDDEN.search(log), [ln for ln in log.splitlines() if FORBIDDEN.search(ln)]
        errors = [e.error for e in svc.journal() if isinstance(e, Effect) and e.error]
        assert not [e for e in errors if FORBIDDEN.search(e)], errors
    finally:
        cluster_scoped = [m for m in items if m["kind"].startswith("Cluster")]
        devenv.kubectl(
            "delete",
            "--ignore-not-found",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": cluster_scoped}),
        )


@pytest.fixture
def private_engine() -> Iterator[ExtraEngine]:
    """An extra engine of this test only, which it may stop (never the shared one)."""
    engines_remove(PRIVATE_ENGINE)
    (engine,) = engines_up(PRIVATE_ENGINE)
    try:
        yield engine
    finally:
        engines_remove(PRIVATE_ENGINE)


def test_an_unreachable_engine_is_connect_failed_and_keeps_the_mirrors(
    app: AppObject,
    app_service: Callable[..., Service],
    private_engine: ExtraEngine,
) -> None:
    """docs/contract.md §3.5: the engine going away is not the App stopping."""
    app.create(vm_running=True)
    svc = app_service("--docker-host", private_engine.docker_host)
    app.wait_engine_ready("True", "Connected")
    client = private_engine.client()
    try:
        c = client.containers.run(
            "busybox:local", QUICK_STOP_SLEEP, detach=True, network_mode="none"
        )
        svc.wait_status(c.id, "running")
        engines_down(PRIVATE_ENGINE)
        cond = app.wait_engine_ready("False", "ConnectFailed", timeout=60)
        assert cond["message"].startswith("failed to ping Docker"), cond["message"]
        assert svc.mirror(c.id) is not None  # kept, stale, while the engine is away
        engines_up(PRIVATE_ENGINE)
        app.wait_engine_ready("True", "Connected", timeout=90)
        assert svc.mirror(c.id) is not None
    finally:
        client.close()


def test_an_app_naming_another_namespace_cleans_up_and_exits_for_a_restart(
    app: AppObject,
    app_service: Callable[..., Service],
    run_container,
    api_client: k8s.ApiClient,
    namespace: str,
) -> None:
    """spec.namespace is immutable, so it changes only with a new App: our namespace is
    cleaned up and the process ends with exit code 4 (a service manager restarts it, and
    the new start follows the new App)."""
    app.create(vm_running=True)
    svc = app_service()
    app.wait_engine_ready("True", "Connected")
    c = run_container()
    svc.wait_status(c.id, "running")
    app.delete()
    wait_for(lambda: _app_gone(app), timeout=10, message="App deleted")
    other = AppObject(api_client, unique_name("t", "other-namespace"))
    other.create(vm_running=True)
    assert svc.wait_exit(timeout=60) == 4
    assert counts(api_client, namespace) == dict.fromkeys(KINDS, 0)
    assert "now names namespace" in svc.log_since_start()
    assert other.engine_ready() is None  # nothing written on an App that is not ours
