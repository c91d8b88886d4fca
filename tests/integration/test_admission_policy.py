"""Admission modes of the real service against the devenv apiserver (docs/admission.md).

* ``--admission auto`` picks the ValidatingAdmissionPolicy there; its denials carry the
  contract's texts (docs/contract.md §5.1) after the apiserver's policy prefix, also after the
  service has stopped (the policy stays);
* ``--skip-admission-install``: without the manifests the service exits with one line;
  with them (applied like an admin would, from ``policy_manifests``) it runs and never
  writes them;
* webhook mode with a URL the apiserver cannot reach exits with one line and leaves no
  ValidatingWebhookConfiguration behind.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from actors.domain.admission_policy import POLICY_NAME, binding_name, policy_manifests
from actors.domain.names import ACTION_ANNOTATION, GROUP, INSTALL_MANAGER, VERSION
from actors.domain.webhook_review import go_quote
from tests.support.service import Service
from tests.support.wait import wait_for

CREATE_DENIED = f"{ACTION_ANNOTATION} annotation is not allowed on create"
#: Values whose Go %q rendering exercises every branch of the CEL quoting.
TRICKY_VALUES = [
    "bogus",
    "",
    "Start",
    'a"b\\c',
    "x\x01y\tz",
    "zw\u200bsp",
    "e\U0001f600",
    "\U000f0000",
]


def prefix(namespace: str) -> str:
    return (
        f"is forbidden: ValidatingAdmissionPolicy '{POLICY_NAME}' with binding "
        f"'{binding_name(namespace)}' denied request: "
    )


def annotate(kubectl, namespace: str, name: str, value: str):
    return kubectl(
        "annotate",
        "-n",
        namespace,
        "--overwrite",
        f"container/{name}",
        f"{ACTION_ANNOTATION}={value}",
    )


def create_with_annotation(kubectl, namespace: str, name: str, dry_run: bool = False):
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Container",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {ACTION_ANNOTATION: "start"},
        },
    }
    args = ["create", "-f", "-"] + (["--dry-run=server"] if dry_run else [])
    return kubectl(*args, input=json.dumps(body))


def read_webhook_config(api_client: k8s.ApiClient, namespace: str) -> Any:
    try:
        return k8s.AdmissionregistrationV1Api(api_client).read_validating_webhook_configuration(
            f"dockmirror-{namespace}"
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def read_admission(api_client: k8s.ApiClient, kind: str, name: str) -> dict[str, Any] | None:
    api = k8s.AdmissionregistrationV1Api(api_client)
    read = {
        "policy": api.read_validating_admission_policy,
        "binding": api.read_validating_admission_policy_binding,
    }[kind]
    try:
        raw = read(name, _preload_content=False)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return json.loads(raw.data)


def assert_policy_denials(kubectl, service: Service, cid: str) -> None:
    ns = service.namespace
    res = create_with_annotation(kubectl, ns, "with-annotation")
    assert res.returncode != 0
    assert res.stderr.strip().endswith(prefix(ns) + CREATE_DENIED), res.stderr
    for value in TRICKY_VALUES:
        res = annotate(kubectl, ns, cid, value)
        assert res.returncode != 0, value
        expected = f"{prefix(ns)}invalid {ACTION_ANNOTATION} annotation {go_quote(value)}"
        assert res.stderr.strip().endswith(expected), (value, res.stderr)
    obj = service.mirror(cid)
    assert obj is not None and ACTION_ANNOTATION not in (obj["metadata"].get("annotations") or {})
    assert service.mirror("with-annotation") is None


def test_auto_picks_policy_denials_carry_contract_texts_also_after_stop(
    service_factory, run_container, kubectl, api_client
):
    service = service_factory()  # --admission auto (the default)
    ns = service.namespace
    assert "admission mode policy (auto: the API server serves" in service.log_since_start()
    assert read_webhook_config(api_client, ns) is None
    c = run_container()
    service.wait_status(c.id, "running")
    assert_policy_denials(kubectl, service, c.id)
    assert "lastAction" not in (service.mirror(c.id).get("status") or {})
    # Valid actions and the service's own writes pass the policy.
    assert service.request(c.id, "pause")["state"] == "Succeeded"
    service.wait_status(c.id, "paused")

    assert service.stop() == 0
    assert read_admission(api_client, "policy", POLICY_NAME) is not None
    assert read_admission(api_client, "binding", binding_name(ns)) is not None
    assert_policy_denials(kubectl, service, c.id)
    # A valid value is still accepted while the service is down (and waits for it).
    assert annotate(kubectl, ns, c.id, "unpause").returncode == 0
    service.start()
    service.wait_status(c.id, "running")


def test_skip_install_without_manifests_exits_with_one_line(service_factory):
    service = service_factory(
        extra_args=(
            "--admission",
            "policy",
            "--skip-admission-install",
            "--admission-timeout",
            "5",
        ),
        start=False,
    )
    service.start(wait_ready=False)
    assert service.wait_exit(timeout=60) == 2
    log = service.log_since_start()
    assert "Traceback" not in log
    (line,) = [ln for ln in log.splitlines() if ln.startswith("dockmirror: ")]
    assert "is not installed (--skip-admission-install)" in line
    assert f"dockmirror policy --namespace {service.namespace} | kubectl apply -f -" in line


def test_skip_install_with_manifests_installed_by_an_admin(
    service_factory, run_container, kubectl, api_client
):
    service = service_factory(
        extra_args=("--admission", "policy", "--skip-admission-install"), start=False
    )
    ns = service.namespace
    doc = {"apiVersion": "v1", "kind": "List", "items": policy_manifests(ns)}
    res = kubectl("apply", "-f", "-", input=json.dumps(doc))
    assert res.returncode == 0, res.stderr
    service.start()
    c = run_container()
    service.wait_status(c.id, "running")
    res = annotate(kubectl, ns, c.id, "bogus")
    assert res.stderr.strip().endswith(
        f'{prefix(ns)}invalid {ACTION_ANNOTATION} annotation "bogus"'
    )
    # The service only read them: the binding has no field manager of ours.
    binding = read_admission(api_client, "binding", binding_name(ns))
    managers = {m["manager"] for m in binding["metadata"]["managedFields"]}
    assert INSTALL_MANAGER not in managers


def test_webhook_url_unreachable_exits_cleanly_and_removes_its_configuration(
    service_factory, api_client, kubectl
):
    service = service_factory(
        extra_args=(
            "--admission",
            "webhook",
            "--webhook-url",
            "https://127.0.0.1:1/x",
            "--admission-timeout",
            "5",
        ),
        start=False,
    )
    ns = service.namespace
    service.start(wait_ready=False)
    assert service.wait_exit(timeout=60) == 2
    log = service.log_since_start()
    assert "Traceback" not in log
    (line,) = [ln for ln in log.splitlines() if ln.startswith("dockmirror: ")]
    assert line.startswith(
        "dockmirror: the API server cannot reach the admission webhook at https://127.0.0.1:1/x: "
    )
    assert line.endswith("use --admission policy or --webhook-url")
    assert read_webhook_config(api_client, ns) is None
    # Nothing blocks Container writes in the namespace (allow for the plugin's reload).
    body = json.dumps(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Container",
            "metadata": {"name": "free", "namespace": ns},
        }
    )
    wait_for(
        lambda: kubectl("create", "--dry-run=server", "-f", "-", input=body).returncode == 0,
        timeout=15,
        interval=0.2,
        message="Container create allowed after the failed webhook start",
    )


@pytest.mark.parametrize("mode", ["none"])
def test_none_mode_registers_nothing(service_factory, api_client, mode):
    service = service_factory(extra_args=("--admission", mode))
    ns = service.namespace
    assert "admission mode none" in service.log_since_start()
    assert read_webhook_config(api_client, ns) is None
    assert read_admission(api_client, "binding", binding_name(ns)) is None
