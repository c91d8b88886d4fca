"""Smoke tests: the devenv kube-apiserver supports what dockmirror relies on.

Uses a throwaway CRD in its own group (smoke.dockmirror.test), never the project's CRDs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.rest import ApiException

from actors.domain.names import MERGE_PATCH
from actors.ports.kube_port import CrdStore, KubeHttp
from actors.service.crd_install import wait_served
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

GROUP = "smoke.dockmirror.test"
VERSION = "v1"
PLURAL = "widgets"

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {
            "plural": PLURAL,
            "singular": "widget",
            "kind": "Widget",
            "listKind": "WidgetList",
        },
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "selectableFields": [{"jsonPath": ".spec.color"}],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "color": {"type": "string"},
                                    "size": {"type": "integer"},
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {"phase": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def widgets(api_client: k8s.ApiClient) -> Iterator[k8s.CustomObjectsApi]:
    ext = k8s.ApiextensionsV1Api(api_client)
    try:
        ext.create_custom_resource_definition(CRD)
    except ApiException as e:
        if e.status != 409:
            raise

    def established() -> bool:
        crd = ext.read_custom_resource_definition(CRD["metadata"]["name"])
        conds = crd.status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    wait_for(established, timeout=30, message="smoke CRD Established")
    custom = k8s.CustomObjectsApi(api_client)
    # Established does not mean served: the first lists can still answer 429.
    wait_served(CrdStore(KubeHttp(api_client)), CRD, deadline=time.monotonic() + 30)
    yield custom


def widget(name: str, color: str = "red") -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"color": color, "size": 1},
    }


def test_readyz_via_kubectl(kubectl) -> None:
    res = kubectl("get", "--raw", "/readyz")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_create_get_conflict_and_status(widgets: k8s.CustomObjectsApi, namespace: str) -> None:
    created = widgets.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, widget("a")
    )
    stale_rv = created["metadata"]["resourceVersion"]
    got = widgets.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "a")
    assert got["spec"] == {"color": "red", "size": 1}

    bumped = widgets.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "a", {"spec": {"size": 2}}, _content_type=MERGE_PATCH
    )
    assert bumped["metadata"]["resourceVersion"] != stale_rv

    with pytest.raises(ApiException) as err:
        widgets.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            "a",
            {"metadata": {"resourceVersion": stale_rv}, "spec": {"size": 3}},
            _content_type=MERGE_PATCH,
        )
    assert err.value.status == 409

    st = widgets.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "a",
        {"status": {"phase": "Ready"}},
        _content_type=MERGE_PATCH,
    )
    assert st["status"] == {"phase": "Ready"}
    assert st["spec"] == {"color": "red", "size": 2}
    # The main resource ignores status changes when the status subresource is enabled.
    main = widgets.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "a",
        {"status": {"phase": "X"}},
        _content_type=MERGE_PATCH,
    )
    assert main["status"] == {"phase": "Ready"}


def test_selectable_fields(widgets: k8s.CustomObjectsApi, namespace: str) -> None:
    for name, color in (("r", "red"), ("b", "blue")):
        widgets.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, widget(name, color)
        )
    blue = widgets.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, field_selector="spec.color=blue"
    )
    assert [i["metadata"]["name"] for i in blue["items"]] == ["b"]


def test_watch_custom_object(widgets: k8s.CustomObjectsApi, namespace: str) -> None:
    rv = widgets.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["metadata"][
        "resourceVersion"
    ]
    widgets.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("w"))
    w = watch.Watch()
    seen = []
    for ev in w.stream(
        widgets.list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        resource_version=rv,
        timeout_seconds=10,
    ):
        seen.append((ev["type"], ev["object"]["metadata"]["name"]))
        if ("ADDED", "w") in seen:
            w.stop()
    assert ("ADDED", "w") in seen


def test_server_side_apply_via_kubectl(kubectl, widgets, namespace: str) -> None:
    manifest = json.dumps(widget("ssa", "green"))
    res = kubectl(
        "apply",
        "--server-side",
        "--field-manager=smoke",
        "-n",
        namespace,
        "-f",
        "-",
        input=manifest,
    )
    assert res.returncode == 0, res.stderr
    got = widgets.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "ssa")
    managers = [m["manager"] for m in got["metadata"]["managedFields"]]
    assert "smoke" in managers
    assert got["spec"]["color"] == "green"


def test_events_k8s_io_v1(api_client: k8s.ApiClient, namespace: str) -> None:
    events = k8s.EventsV1Api(api_client)
    body = k8s.EventsV1Event(
        metadata=k8s.V1ObjectMeta(name="smoke-event"),
        event_time="2025-01-01T00:00:00.000000Z",
        reporting_controller="dockmirror.test/smoke",
        reporting_instance="smoke-1",
        action="Smoke",
        reason="Testing",
        type="Normal",
        note="hello",
        regarding=k8s.V1ObjectReference(
            kind="Widget", name="a", namespace=namespace, api_version=f"{GROUP}/{VERSION}"
        ),
    )
    events.create_namespaced_event(namespace, body)
    listed = events.list_namespaced_event(namespace)
    assert [e.note for e in listed.items] == ["hello"]
