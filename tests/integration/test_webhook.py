"""The admission webhook of the real running service, driven with kubectl (docs/contract.md §5.1;
§7 scenarios 19, 20, 30, 31, 32) and its lifecycle: registered while the service runs,
deleted on a clean stop, left in place (blocking Container writes) after a crash, and
re-registered on start and every ``--webhook-recheck`` seconds. The service runs with
``--admission webhook`` (the default picks the policy). See docs/admission.md.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from actors.domain.names import ACTION_ANNOTATION, GROUP, VERSION
from messages.journal import Effect, Note
from tests.support.service import Service
from tests.support.wait import wait_for

WEBHOOK = f"container-mutating.{GROUP}"
CREATE_DENIED = f"{ACTION_ANNOTATION} annotation is not allowed on create"
READ_ONLY_DOCKER_OPS = {"inspect", "list"}


def config_name(namespace: str) -> str:
    return f"dockmirror-{namespace}"


def read_config(api_client: k8s.ApiClient, namespace: str) -> dict[str, Any] | None:
    api = k8s.AdmissionregistrationV1Api(api_client)
    try:
        raw = api.read_validating_webhook_configuration(
            config_name(namespace), _preload_content=False
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return json.loads(raw.data)


def annotate(kubectl, namespace: str, cid: str, value: str):
    return kubectl(
        "annotate",
        "-n",
        namespace,
        "--overwrite",
        f"container/{cid}",
        f"{ACTION_ANNOTATION}={value}",
    )


def label(kubectl, namespace: str, cid: str, value: str):
    return kubectl(
        "label", "-n", namespace, "--overwrite", f"container/{cid}", f"dockmirror-test={value}"
    )


def new_container(namespace: str, name: str, value: str) -> str:
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Container",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": {ACTION_ANNOTATION: value},
            },
        }
    )


def last_action(obj: dict[str, Any]) -> dict[str, Any] | None:
    return (obj.get("status") or {}).get("lastAction")


def annotations(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


#: The service's default is --admission auto, which picks the policy on the devenv.
WEBHOOK_MODE = ("--admission", "webhook")


@pytest.fixture
def service(service_factory) -> Service:
    """A running service in webhook mode."""
    return service_factory(extra_args=WEBHOOK_MODE)


def journal_mark(service: Service) -> tuple[int, int]:
    entries = service.journal()
    return (entries[-1].run, entries[-1].seq) if entries else (0, 0)


def test_19_31_invalid_update_denied_and_last_action_absent(service, run_container, kubectl):
    c = run_container()
    service.wait_status(c.id, "running")
    ns = service.namespace

    res = annotate(kubectl, ns, c.id, "bogus")  # scenario 19
    assert res.returncode != 0
    assert "invalid" in res.stderr
    assert f'admission webhook "{WEBHOOK}" denied the request' in res.stderr
    assert f'invalid {ACTION_ANNOTATION} annotation "bogus"' in res.stderr

    for value in ("", "Start"):  # scenario 31, exact Go %q quoting
        res = annotate(kubectl, ns, c.id, value)
        assert res.returncode != 0, res.stdout
        assert f'invalid {ACTION_ANNOTATION} annotation "{value}"' in res.stderr, res.stderr

    obj = service.mirror(c.id)
    assert obj is not None
    assert ACTION_ANNOTATION not in annotations(obj)
    assert last_action(obj) is None


def test_20_30_create_with_annotation_denied(service, kubectl):
    ns = service.namespace
    # Scenario 20: kubectl apply of a new Container with action: start.
    res = kubectl("apply", "-f", "-", input=new_container(ns, "new-with-start", "start"))
    assert res.returncode != 0
    assert "not allowed on create" in res.stderr
    # Scenario 30: any value, valid or empty, on CREATE.
    for i, value in enumerate(("stop", "")):
        res = kubectl("create", "-f", "-", input=new_container(ns, f"new-{i}", value))
        assert res.returncode != 0, res.stdout
        assert f'admission webhook "{WEBHOOK}" denied the request' in res.stderr
        assert CREATE_DENIED in res.stderr
    for name in ("new-with-start", "new-0", "new-1"):
        assert service.mirror(name) is None


def test_service_writes_pass_with_webhook_registered(
    service, run_container, docker_client, api_client
):
    assert read_config(api_client, service.namespace) is not None
    c = run_container(stop_timeout=1)
    service.wait_status(c.id, "running")  # mirror created (CREATE + finalizer apply)
    la = service.request(c.id, "stop")  # annotation removal is an UPDATE
    assert (la["action"], la["state"]) == ("stop", "Succeeded")
    service.wait_status(c.id, "exited")
    assert docker_client.containers.get(c.id).status == "exited"
    la = service.request(c.id, "start")
    assert (la["action"], la["state"]) == ("start", "Succeeded")
    service.wait_status(c.id, "running")


def test_32_webhook_offline_invalid_value_consumed_without_docker(
    service_factory, run_container, docker_client, api_client, kubectl
):
    # Re-registration is pushed far out so that the offline window is ours to close.
    service = service_factory(extra_args=(*WEBHOOK_MODE, "--webhook-recheck", "3600"))
    ns = service.namespace
    admission = k8s.AdmissionregistrationV1Api(api_client)
    c = run_container(stop_timeout=1)
    service.wait_status(c.id, "running")
    started_at = docker_client.api.inspect_container(c.id)["State"]["StartedAt"]

    saved = read_config(api_client, ns)
    assert saved is not None
    admission.delete_validating_webhook_configuration(config_name(ns))
    mark = journal_mark(service)
    # The deletion reaches the admission plugin after a moment; then bogus is stored.
    wait_for(
        lambda: annotate(kubectl, ns, c.id, "bogus").returncode == 0,
        timeout=30,
        interval=0.2,
        message="bogus accepted while the webhook configuration is deleted",
    )
    admission.create_validating_webhook_configuration(
        body={
            "apiVersion": saved["apiVersion"],
            "kind": saved["kind"],
            "metadata": {"name": saved["metadata"]["name"], "labels": saved["metadata"]["labels"]},
            "webhooks": saved["webhooks"],
        }
    )

    obj = service.wait_mirror(
        c.id, lambda m: ACTION_ANNOTATION not in annotations(m), message="bogus annotation consumed"
    )
    assert last_action(obj) is None
    wait_for(
        lambda: any(
            isinstance(e, Note)
            and e.container_id == c.id
            and e.text == "dropping invalid action"
            and e.detail.get("value") == "bogus"
            for e in service.journal()
        ),
        timeout=10,
        message="engine dropped the invalid action",
    )
    # Nothing was asked of Docker. A read may happen: a mirror sync (SyncContainer)
    # that runs meanwhile inspects the container; it was seen in about 1 run in 3.
    docker_calls = [
        (e.op, e.outcome)
        for e in service.effects(c.id)
        if isinstance(e, Effect)
        and e.target == "docker"
        and (e.run, e.seq) > mark
        and e.op not in READ_ONLY_DOCKER_OPS
    ]
    assert docker_calls == []
    state = docker_client.api.inspect_container(c.id)["State"]
    assert state["Running"] and state["StartedAt"] == started_at

    # The restored webhook is active again, and reconciles and actions work.
    wait_for(
        lambda: "invalid" in annotate(kubectl, ns, c.id, "bogus").stderr,
        timeout=30,
        interval=0.2,
        message="restored webhook denies bogus again",
    )
    la = service.request(c.id, "stop")
    assert (la["action"], la["state"]) == ("stop", "Succeeded")
    service.wait_status(c.id, "exited")
    # The journal does record Docker calls, so the empty list above means something.
    assert [e.outcome for e in service.effects(c.id, op="stop") if e.target == "docker"] == ["ok"]


def test_deleted_configuration_is_re_registered_by_recheck(service_factory, api_client, kubectl):
    service = service_factory(extra_args=(*WEBHOOK_MODE, "--webhook-recheck", "2"))
    ns = service.namespace
    first_uid = read_config(api_client, ns)["metadata"]["uid"]
    k8s.AdmissionregistrationV1Api(api_client).delete_validating_webhook_configuration(
        config_name(ns)
    )
    # The recheck may re-create it at any moment, so wait for a new uid, not for "absent".
    wait_for(
        lambda: (
            (read_config(api_client, ns) or {}).get("metadata", {}).get("uid")
            not in (None, first_uid)
        ),
        timeout=20,
        message="configuration re-registered under a new uid",
    )
    # Server-side dry runs: an attempt made before the admission plugin picks up the new
    # configuration must not store the object.
    wait_for(
        lambda: (
            CREATE_DENIED
            in kubectl(
                "create",
                "--dry-run=server",
                "-f",
                "-",
                input=new_container(ns, "after-recheck", "start"),
            ).stderr
        ),
        timeout=30,
        interval=0.2,
        message="re-registered webhook denies again",
    )
    assert service.mirror("after-recheck") is None


def test_clean_stop_removes_configuration_crash_keeps_it(
    service, run_container, api_client, kubectl
):
    ns = service.namespace
    c = run_container()
    service.wait_status(c.id, "running")
    assert read_config(api_client, ns) is not None

    # Clean stop: the configuration is deleted, Container writes are allowed.
    assert service.stop() == 0
    assert read_config(api_client, ns) is None
    wait_for(
        lambda: label(kubectl, ns, c.id, "stopped").returncode == 0,
        timeout=30,
        interval=0.2,
        message="Container update allowed while the service is stopped",
    )

    # Crash: the configuration stays and every Container write fails.
    service.start()
    assert read_config(api_client, ns) is not None
    service.kill()
    assert read_config(api_client, ns) is not None
    res = label(kubectl, ns, c.id, "crashed")
    assert res.returncode != 0
    assert "failed calling webhook" in res.stderr, res.stderr
    res = annotate(kubectl, ns, c.id, "stop")
    assert res.returncode != 0
    assert "failed calling webhook" in res.stderr, res.stderr

    # Start again: re-registered on the new port, writes pass.
    service.start()
    wait_for(
        lambda: label(kubectl, ns, c.id, "restarted").returncode == 0,
        timeout=30,
        interval=0.2,
        message="Container update allowed after the service restarted",
    )
    obj = service.wait_status(c.id, "running")
    assert obj["metadata"]["labels"]["dockmirror-test"] == "restarted"
    # Idle keep-alive connections from the API server are not WARNING noise.
    assert "Request timed out" not in service.log_text()
