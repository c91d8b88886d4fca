"""Issue 10: a transient apiserver failure on any step of the protocol heals on its own.

The fault is a ValidatingWebhookConfiguration of the test's own with
``failurePolicy: Fail`` that points at a closed port on 127.0.0.1: the apiserver then
answers every matching write with ``500 failed calling webhook``. A ``matchCondition``
narrows it to exactly one step (the ``lastAction`` write, the annotation removal, the
finalizer strip), so the client's own writes pass. Before the step under test can
happen, a server-side dry run in a probe namespace (no service there) proves the fault
is active, because the apiserver picks up webhook configurations asynchronously.

After the fault ends (the configuration deleted), the service must finish by itself
within 30 s: no event, resync or restart helps it here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from actors.domain.names import ACTION_ANNOTATION, CONTAINERS, FINALIZER, GROUP, VERSION
from tests.support.docker_cleanup import force_remove
from tests.support.service import Service
from tests.support.wait import wait_for

HEAL_S = 30.0
PROBE_STATUS = {"name": "", "namespace": "moby", "path": "", "image": "", "status": "unknown"}

LAST_ACTION_WRITE = (
    "has(object.status) && has(object.status.lastAction) && (!has(oldObject.status) "
    "|| !has(oldObject.status.lastAction) "
    "|| object.status.lastAction != oldObject.status.lastAction)"
)
ANNOTATION_REMOVAL = (
    f"has(oldObject.metadata.annotations) "
    f"&& '{ACTION_ANNOTATION}' in oldObject.metadata.annotations && "
    f"!(has(object.metadata.annotations) && '{ACTION_ANNOTATION}' in object.metadata.annotations)"
)
FINALIZER_STRIP = (
    f"has(oldObject.metadata.finalizers) && '{FINALIZER}' in oldObject.metadata.finalizers && "
    f"!(has(object.metadata.finalizers) && '{FINALIZER}' in object.metadata.finalizers)"
)


class Fault:
    """One failing-webhook configuration over the test namespace and a probe namespace."""

    def __init__(self, api_client: k8s.ApiClient, namespace: str) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.probe_ns = f"probe-{uuid.uuid4().hex[:10]}"
        self.name = f"dockmirror-test-fault-{uuid.uuid4().hex[:10]}"
        self.custom = k8s.CustomObjectsApi(api_client)
        self.admission = k8s.AdmissionregistrationV1Api(api_client)
        k8s.CoreV1Api(api_client).create_namespace(
            k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=self.probe_ns))
        )
        self.active = False

    def start(self, *, resource: str, condition: str) -> None:
        body = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": self.name},
            "webhooks": [
                {
                    "name": "fault.dockmirror.test",
                    # Port 1 on loopback: connection refused at once, no traffic leaves.
                    "clientConfig": {"url": "https://127.0.0.1:1/fault"},
                    "rules": [
                        {
                            "apiGroups": [GROUP],
                            "apiVersions": [VERSION],
                            "operations": ["UPDATE"],
                            "resources": [resource],
                            "scope": "Namespaced",
                        }
                    ],
                    "namespaceSelector": {
                        "matchExpressions": [
                            {
                                "key": "kubernetes.io/metadata.name",
                                "operator": "In",
                                "values": [self.namespace, self.probe_ns],
                            }
                        ]
                    },
                    "matchConditions": [{"name": "step", "expression": condition}],
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 2,
                }
            ],
        }
        self.admission.create_validating_webhook_configuration(body)
        self.active = True

    def wait_active(self, probe: Callable[[], None]) -> None:
        """Until ``probe`` (a dry-run write of the faulted kind) fails at the webhook."""

        def failing() -> bool:
            try:
                probe()
            except ApiException as exc:
                return exc.status == 500 and "failed calling webhook" in (exc.body or "")
            return False

        wait_for(failing, timeout=30, interval=0.2, message="fault webhook active")

    def stop(self) -> float:
        """End the fault; returns the time it ended (time.monotonic)."""
        if self.active:
            self.admission.delete_validating_webhook_configuration(self.name)
            self.active = False
        return time.monotonic()

    # --- probe objects in the probe namespace (no service watches it) -------------------
    def probe_object(self, **metadata: object) -> dict:
        name = f"probe-{uuid.uuid4().hex[:8]}"
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Container",
            "metadata": {"name": name, **metadata},
        }
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.probe_ns, CONTAINERS, body
        )

    def dry_run_patch(self, name: str, patch: dict, *, status: bool = False) -> None:
        call = (
            self.custom.patch_namespaced_custom_object_status
            if status
            else self.custom.patch_namespaced_custom_object
        )
        call(GROUP, VERSION, self.probe_ns, CONTAINERS, name, patch, dry_run="All")

    def cleanup(self) -> None:
        self.stop()
        for obj in self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.probe_ns, CONTAINERS
        )["items"]:
            name = obj["metadata"]["name"]
            if obj["metadata"].get("finalizers"):
                self.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, self.probe_ns, CONTAINERS, name,
                    {"metadata": {"finalizers": None}},
                )  # fmt: skip
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.probe_ns, CONTAINERS, name
            )
        k8s.CoreV1Api(self.api_client).delete_namespace(self.probe_ns)


@pytest.fixture
def fault(api_client: k8s.ApiClient, namespace: str) -> Iterator[Fault]:
    made = Fault(api_client, namespace)
    try:
        yield made
    finally:
        made.cleanup()


def _failed_effects(service: Service, container_id: str, op: str) -> int:
    return sum(1 for e in service.effects(container_id, op) if e.outcome != "ok")


def _wait_failures(service: Service, container_id: str, op: str, count: int = 2) -> None:
    """The service met the fault ``count`` times: it retries on its own."""
    wait_for(
        lambda: _failed_effects(service, container_id, op) >= count,
        timeout=30,
        message=f"{count} failed {op} attempts",
    )


def test_transient_failure_of_the_last_action_write_heals(
    service: Service, run_container, fault: Fault, docker_client
):
    c = run_container(stop_timeout=1)
    service.wait_status(c.id, "running")
    probe = fault.probe_object()
    fault.start(resource="containers/status", condition=LAST_ACTION_WRITE)
    fault.wait_active(
        lambda: fault.dry_run_patch(
            probe["metadata"]["name"],
            {"status": {**PROBE_STATUS, "lastAction": {"action": "stop", "state": "Succeeded"}}},
            status=True,
        )
    )
    service.annotate(c.id, "stop")
    _wait_failures(service, c.id, "patch_last_action")
    assert (
        ACTION_ANNOTATION in service.mirror(c.id)["metadata"]["annotations"]
    )  # kept, not consumed
    ended = fault.stop()
    obj = service.wait_mirror(
        c.id,
        lambda m: ACTION_ANNOTATION not in ((m.get("metadata") or {}).get("annotations") or {}),
        timeout=HEAL_S,
        message="request completed after the fault",
    )
    assert time.monotonic() - ended <= HEAL_S
    last = obj["status"]["lastAction"]
    assert (last["action"], last["state"]) == ("stop", "Succeeded")
    # The known outcome was recorded again: Docker was asked to stop exactly once.
    assert len(service.effects(c.id, "stop")) == 1
    assert docker_client.containers.get(c.id).status == "exited"


def test_transient_failure_of_the_annotation_removal_heals(
    service: Service, run_container, fault: Fault
):
    c = run_container()
    service.wait_status(c.id, "running")
    probe = fault.probe_object(annotations={ACTION_ANNOTATION: "pause"})
    fault.start(resource=CONTAINERS, condition=ANNOTATION_REMOVAL)
    fault.wait_active(
        lambda: fault.dry_run_patch(
            probe["metadata"]["name"], {"metadata": {"annotations": {ACTION_ANNOTATION: None}}}
        )
    )
    service.annotate(c.id, "pause")
    _wait_failures(service, c.id, "remove_annotation")
    obj = service.mirror(c.id)
    assert obj["status"]["lastAction"]["action"] == "pause"  # outcome first (§4.3 order)
    assert ACTION_ANNOTATION in obj["metadata"]["annotations"]
    ended = fault.stop()
    service.wait_mirror(
        c.id,
        lambda m: ACTION_ANNOTATION not in ((m.get("metadata") or {}).get("annotations") or {}),
        timeout=HEAL_S,
        message="annotation removed after the fault",
    )
    assert time.monotonic() - ended <= HEAL_S
    assert len(service.effects(c.id, "pause")) == 1


def test_transient_failure_of_the_finalizer_strip_heals(
    service: Service, run_container, fault: Fault
):
    c = run_container()
    service.wait_status(c.id, "running")
    probe = fault.probe_object(finalizers=[FINALIZER])
    fault.start(resource=CONTAINERS, condition=FINALIZER_STRIP)
    fault.wait_active(
        lambda: fault.dry_run_patch(probe["metadata"]["name"], {"metadata": {"finalizers": None}})
    )
    force_remove(c)  # Docker's destroy event: the service strips the finalizer, deletes
    _wait_failures(service, c.id, "strip_finalizer")
    assert service.mirror(c.id)["metadata"]["finalizers"] == [FINALIZER]
    ended = fault.stop()
    service.wait_gone(c.id, timeout=HEAL_S)
    assert time.monotonic() - ended <= HEAL_S
