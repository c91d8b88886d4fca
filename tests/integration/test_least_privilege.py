"""The real service under a non-admin identity bound only to ``rbac_manifests(...)``.

As the admin, each test installs the CRDs (``--skip-crd-install`` forbids the service
to), applies the printed RBAC for a fresh user ``CN=<user>`` (no groups), and mints a
client certificate for that user from the devenv apiserver's own CA
(``tests/support/identity.py``). The service runs with that kubeconfig:

* ``test_non_admin_identity_runs_the_whole_path``: a container is mirrored,
  stop/start/restart complete with ``lastAction``, an invalid annotation is denied by
  admission, Events are written, ``EngineReady`` is True, a removed container's mirror
  is deleted, the clean stop removes what it registered, and neither the log nor the
  journal holds a single 403. Parametrised over the admission modes; the ``policy``
  case runs once the service knows ``--admission`` (issue 11's admission work).
* ``test_missing_permission_is_reported_not_crash_looped``: without ``patch`` on
  ``containers/status`` the service keeps running, a Warning Event ``SyncFailed`` and a
  log line name the 403, a requested action leaves no ``lastAction`` and keeps its
  annotation; once the permission is granted again, the request completes by itself.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from actors.domain.names import ACTION_ANNOTATION, CONTAINERS, GROUP
from actors.domain.rbac import rbac_manifests
from actors.ports.kube_port import KubeHttp
from actors.service.crd_install import install_crds
from messages.journal import Effect, Note
from tests.support.devenv import REPO_ROOT, Devenv, unique_name
from tests.support.identity import ClientIdentity, mint_user_kubeconfig
from tests.support.service import Service
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

#: A 403 anywhere: the Kubernetes message ("... is forbidden: User ...") or our error's
#: "403 Forbidden"; the look-behind keeps a log timestamp's milliseconds (",403") out.
FORBIDDEN = re.compile(r"forbidden|(?<![,.\d])\b403\b", re.IGNORECASE)
INVALID_BOGUS = f'invalid {ACTION_ANNOTATION} annotation "bogus"'


@functools.cache
def service_knows_admission_option() -> bool:
    """Whether ``supervisor.py`` has ``--admission`` yet (issue 11's admission work)."""
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "supervisor.py"), "--help"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=True,
    ).stdout
    return re.search(r"--admission(?![-\w])", out) is not None


def admission_args(mode: str) -> tuple[str, ...]:
    if service_knows_admission_option():
        return ("--admission", mode)
    if mode != "webhook":
        pytest.skip(
            f"--admission {mode} is not a known option of the service yet: the lead enables "
            "this case after merging issue 11's admission-policy work"
        )
    return ()  # the webhook is the only admission mode today


def as_list(items: list[dict[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


@pytest.fixture(scope="module")
def crds_installed(api_client: k8s.ApiClient) -> None:
    """The admin's step: ``dockmirror crds | kubectl apply -f -``."""
    install_crds(KubeHttp(api_client))


@pytest.fixture
def identity(
    devenv: Devenv, namespace: str, tmp_path: Path, crds_installed: None
) -> Iterator[Callable[..., ClientIdentity]]:
    """``identity(admission, drop=None, skip_crd_install=True)``: a fresh user bound to
    ``rbac_manifests`` for this namespace (``drop(manifests)`` may remove a permission
    first); the cluster-scoped objects are deleted afterwards."""
    applied: list[list[dict[str, Any]]] = []
    user = unique_name("dockmirror", "user")  # a CN holds at most 64 characters

    def make(
        admission: str,
        drop: Callable[[list[dict[str, Any]]], None] | None = None,
        *,
        skip_crd_install: bool = True,
    ) -> ClientIdentity:
        items = rbac_manifests(
            namespace=namespace,
            user=user,
            service_account=None,
            admission=admission,
            skip_crd_install=skip_crd_install,
        )
        if drop is not None:
            drop(items)
        devenv.kubectl("apply", "-f", "-", input=as_list(items), check=True)
        applied.append(items)
        return mint_user_kubeconfig(user, tmp_path / "identity", admin_kubeconfig=devenv.kubeconfig)

    yield make
    for items in applied:
        cluster_scoped = [m for m in items if m["kind"].startswith("Cluster")]
        if cluster_scoped:
            devenv.kubectl("delete", "--ignore-not-found", "-f", "-", input=as_list(cluster_scoped))


def can_i(devenv: Devenv, who: ClientIdentity, *args: str) -> bool:
    res = devenv.kubectl("--kubeconfig", str(who.kubeconfig), "auth", "can-i", *args)
    return res.stdout.strip() == "yes"


def start_as(service_factory: Callable[..., Service], who: ClientIdentity, *args: str) -> Service:
    # Service passes the admin kubeconfig first; argparse keeps the last --kubeconfig.
    return service_factory(
        extra_args=("--kubeconfig", str(who.kubeconfig), "--skip-crd-install", *args)
    )


def events_for(api_client: k8s.ApiClient, namespace: str, name: str) -> list[Any]:
    items = k8s.EventsV1Api(api_client).list_namespaced_event(namespace).items
    return [e for e in items if e.regarding is not None and e.regarding.name == name]


def forbidden_in_journal(service: Service) -> list[str]:
    found = []
    for entry in service.journal():
        text = entry.error if isinstance(entry, Effect) else ""
        if isinstance(entry, Note):
            text = f"{entry.text} {json.dumps(entry.detail)}"
        if text and FORBIDDEN.search(text):
            found.append(text[:300])
    return found


@pytest.mark.parametrize("admission", ["webhook", "policy"])
def test_non_admin_identity_runs_the_whole_path(
    admission: str,
    identity: Callable[..., ClientIdentity],
    service_factory: Callable[..., Service],
    run_container,
    api_client: k8s.ApiClient,
    devenv: Devenv,
    namespace: str,
) -> None:
    mode_args = admission_args(admission)
    who = identity(admission)
    # Really not an admin: no CRD writes, no namespaces, no secrets, nothing elsewhere.
    assert can_i(devenv, who, "patch", f"{CONTAINERS}.{GROUP}", "-n", namespace)
    assert not can_i(devenv, who, "create", "customresourcedefinitions")
    assert not can_i(devenv, who, "create", "namespaces")
    assert not can_i(devenv, who, "get", "secrets", "-n", namespace)
    assert not can_i(devenv, who, "list", f"{CONTAINERS}.{GROUP}", "-n", "default")

    service = start_as(service_factory, who, *mode_args)  # waits for EngineReady=True
    assert service.engine_ready() == ("True", "Connected")

    c = run_container(stop_timeout=1)
    service.wait_status(c.id, "running")  # mirrored: created, finalizer, status

    for action, status in (("stop", "exited"), ("start", "running"), ("restart", "running")):
        last = service.request(c.id, action)
        assert (last.get("action"), last.get("state")) == (action, "Succeeded"), last
        service.wait_status(c.id, status)

    with pytest.raises(ApiException) as denied:
        service.annotate(c.id, "bogus")
    assert INVALID_BOGUS in json.loads(denied.value.body)["message"], denied.value.body
    obj = service.mirror(c.id)
    assert obj is not None and ACTION_ANNOTATION not in (obj["metadata"].get("annotations") or {})

    wait_for(
        lambda: {e.reason for e in events_for(api_client, namespace, c.id)} >= {"ActionSucceeded"},
        timeout=30,
        interval=0.2,
        message="ActionSucceeded Events written by the service",
    )

    c.remove(force=True)
    service.wait_gone(c.id)  # finalizer stripped and mirror deleted

    assert service.stop() == 0
    assert service.engine_ready() == ("False", "Stopped")
    if admission == "webhook":  # the clean stop deleted what it registered
        with pytest.raises(ApiException) as gone:
            k8s.AdmissionregistrationV1Api(api_client).read_validating_webhook_configuration(
                f"dockmirror-{namespace}"
            )
        assert gone.value.status == 404
    log = service.log_text()
    assert not FORBIDDEN.search(log), [ln for ln in log.splitlines() if FORBIDDEN.search(ln)]
    assert forbidden_in_journal(service) == []


def test_crd_install_needs_only_the_printed_crd_rules(
    identity: Callable[..., ClientIdentity],
    service_factory: Callable[..., Service],
    devenv: Devenv,
    namespace: str,
) -> None:
    """Without ``--skip-crd-install`` the service upgrades the (installed) CRDs in place
    and waits until they are served, with only the named CRD rules and list in its own
    namespace: no cluster-wide list, no other CRD."""
    who = identity("webhook", skip_crd_install=False)
    assert can_i(devenv, who, "patch", f"customresourcedefinitions/{CONTAINERS}.{GROUP}")
    assert not can_i(devenv, who, "patch", "customresourcedefinitions/other.example.com")
    assert not can_i(devenv, who, "list", f"{CONTAINERS}.{GROUP}", "-A")
    service = service_factory(
        extra_args=("--kubeconfig", str(who.kubeconfig), *admission_args("webhook"))
    )
    assert service.stop() == 0
    log = service.log_text()
    assert not FORBIDDEN.search(log), [ln for ln in log.splitlines() if FORBIDDEN.search(ln)]


def drop_status_patch(items: list[dict[str, Any]]) -> None:
    role = next(m for m in items if m["kind"] == "Role")
    before = len(role["rules"])
    role["rules"] = [r for r in role["rules"] if r["resources"] != ["containers/status"]]
    assert len(role["rules"]) == before - 1


def test_missing_permission_is_reported_not_crash_looped(
    identity: Callable[..., ClientIdentity],
    service_factory: Callable[..., Service],
    run_container,
    api_client: k8s.ApiClient,
    devenv: Devenv,
    namespace: str,
) -> None:
    who = identity("webhook", drop=drop_status_patch)
    assert not can_i(
        devenv, who, "patch", f"{CONTAINERS}.{GROUP}", "--subresource=status",
        "-n", namespace,
    )  # fmt: skip
    service = start_as(service_factory, who, *admission_args("webhook"))
    c = run_container(stop_timeout=1)

    # The mirror exists (metadata writes are allowed) but its status cannot be written:
    # a Warning Event says so on the Container, naming the 403.
    service.wait_mirror(c.id, message="mirror created without status")

    def sync_failed() -> list[Any]:
        return [
            e
            for e in events_for(api_client, namespace, c.id)
            if e.type == "Warning" and e.reason == "SyncFailed"
        ]

    warning = wait_for(sync_failed, timeout=30, interval=0.2, message="SyncFailed Warning Event")[0]
    assert "403" in warning.note and "containers/status" in warning.note, warning.note
    assert re.search(rf"WARNING .*container {c.id[:12]}: .*403", service.log_since_start())

    # An action runs in Docker, but its outcome cannot be recorded: the request stays.
    service.annotate(c.id, "stop")
    wait_for(
        lambda: any("403" in e.error for e in service.effects(c.id, "patch_last_action")),
        timeout=30,
        interval=0.5,
        message="a refused lastAction write in the journal",
    )
    obj = service.mirror(c.id)
    assert obj is not None
    assert (obj.get("status") or {}).get("lastAction") is None
    assert (obj["metadata"].get("annotations") or {}).get(ACTION_ANNOTATION) == "stop"

    # No crash loop: the process runs on and no actor was restarted.
    assert service.running
    assert not [n for n in service.journal() if isinstance(n, Note) and n.text == "restarting"]

    # A fix elsewhere makes it pass: grant the permission, the retry completes the request.
    identity("webhook")
    obj = service.wait_mirror(
        c.id,
        lambda m: ACTION_ANNOTATION not in (m["metadata"].get("annotations") or {}),
        timeout=120,
        message="the pending stop completed after the grant",
    )
    last = obj["status"]["lastAction"]
    assert (last["action"], last["state"]) == ("stop", "Succeeded"), last
    assert c.reload() is None and c.status == "exited"
    assert service.running
