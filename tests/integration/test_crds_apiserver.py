"""The CRDs (actors/domain/crds, installed by actors/service/crd_install.py) and
actors.domain.mirror_status against the real kube-apiserver.

Uses the session fixtures of tests/conftest.py: ``api_client`` (a kubernetes
``ApiClient`` for the devenv apiserver) and ``namespace`` (a unique, existing namespace).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re

import kubernetes.client
import pytest
from kubernetes.client.exceptions import ApiException

from actors.domain import crds
from actors.domain.mirror_status import compute_conditions, mirror_status
from actors.domain.names import CONTAINER_NAMESPACES, CONTAINERS, GROUP, JSON, MERGE_PATCH, VERSION
from actors.ports.kube_port import KubeHttp
from actors.service.crd_install import install_crds
from tests.support.devenv import Devenv
from tests.support.samples import CONTAINER_ID, INSPECT_RUNNING, inspect_with

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def installed(api_client):
    install_crds(KubeHttp(api_client), timeout=60)
    return api_client


@pytest.fixture
def custom(installed):
    return kubernetes.client.CustomObjectsApi(installed)


def _create(custom, namespace, name, plural=CONTAINERS, kind="Container", **extra):
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name},
        **extra,
    }
    return custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)


def _patch_status(custom, namespace, name, status, plural=CONTAINERS):
    return custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, plural, name, {"status": status}, _content_type=MERGE_PATCH
    )


def _get(custom, namespace, name, plural=CONTAINERS):
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)


def _full_status():
    status = mirror_status(INSPECT_RUNNING)
    status["conditions"], _ = compute_conditions(status["status"], None, "2025-11-22T00:35:00Z")
    status["lastAction"] = {
        "action": "start",
        "state": "Succeeded",
        "observedAt": "2025-11-22T00:34:06Z",
        "completedAt": "2025-11-22T00:34:08Z",
    }
    return status


def test_install_is_idempotent_and_upgrades_in_place(api_client):
    api = kubernetes.client.ApiextensionsV1Api(api_client)
    install_crds(KubeHttp(api_client), timeout=60)
    # Simulate an older manifest on the server, then upgrade over it.
    old = crds.container_crd()
    del old["spec"]["versions"][0]["additionalPrinterColumns"]
    current = json.loads(
        api.read_custom_resource_definition(crds.CONTAINER_CRD_NAME, _preload_content=False).data
    )
    old["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    api.replace_custom_resource_definition(crds.CONTAINER_CRD_NAME, old)
    install_crds(KubeHttp(api_client), timeout=60)
    install_crds(KubeHttp(api_client), timeout=60)
    for name in (
        crds.CONTAINER_CRD_NAME,
        crds.CONTAINER_CREATE_REQUEST_CRD_NAME,
        crds.CONTAINER_NAMESPACE_CRD_NAME,
    ):
        crd = json.loads(api.read_custom_resource_definition(name, _preload_content=False).data)
        states = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert states["Established"] == "True", name
        assert states["NamesAccepted"] == "True", name
        if name == crds.CONTAINER_CRD_NAME:
            version = crd["spec"]["versions"][0]
            assert version["additionalPrinterColumns"][0]["name"] == "Running"
            assert version["selectableFields"] == [{"jsonPath": ".status.namespace"}]


def test_full_status_round_trips(custom, namespace):
    created = _create(custom, namespace, CONTAINER_ID, spec={"state": "running"})
    assert created.get("spec", {}) == {}  # no spec properties: pruned
    assert "status" not in created  # status subresource: ignored on create
    status = _full_status()
    _patch_status(custom, namespace, CONTAINER_ID, status)
    stored = _get(custom, namespace, CONTAINER_ID)["status"]
    assert stored == status


def test_status_default_unknown(custom, namespace):
    name = "c" * 64
    _create(custom, namespace, name)
    status = mirror_status({})
    del status["status"]
    status.update(name="x", path="sleep", image="sha256:00")
    _patch_status(custom, namespace, name, status)
    assert _get(custom, namespace, name)["status"]["status"] == "unknown"


@pytest.mark.parametrize(
    "bad",
    [
        {"status": "bogus"},
        {"pid": "12"},
        {"exitCode": 1.5},  # note: the apiserver does not enforce the int32 range
        {"createdAt": "yesterday"},
        {"lastAction": {"action": "start", "state": "InProgress"}},
        {"lastAction": {"action": "explode", "state": "Succeeded"}},
        {"lastAction": {"action": "start"}},
        {"ports": [{"bindings": []}]},
        {"ports": [{"name": "80/tcp", "bindings": [{"hostIP": "::"}]}]},
        {
            "conditions": [
                {
                    "type": "Running",
                    "status": "Maybe",
                    "reason": "X",
                    "message": "",
                    "lastTransitionTime": "2025-11-22T00:35:00Z",
                }
            ]
        },
    ],
    ids=lambda bad: next(iter(bad)),
)
def test_invalid_status_rejected(custom, namespace, bad):
    name = hashlib.sha256(json.dumps(bad, sort_keys=True).encode()).hexdigest()
    try:
        _create(custom, namespace, name)
    except ApiException as exc:
        if exc.status != 409:
            raise
    status = {**mirror_status(INSPECT_RUNNING), **copy.deepcopy(bad)}
    with pytest.raises(ApiException) as info:
        _patch_status(custom, namespace, name, status)
    assert info.value.status == 422, info.value.body


def test_selectable_field_and_printer_columns(custom, installed, namespace):
    name = "e" * 64
    _create(custom, namespace, name)
    status = mirror_status(inspect_with(Status="paused", Paused=True))
    status["conditions"], _ = compute_conditions("paused", None, "2025-11-22T00:35:00Z")
    _patch_status(custom, namespace, name, status)

    listed = custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, CONTAINERS, field_selector="status.namespace=moby"
    )
    assert name in {item["metadata"]["name"] for item in listed["items"]}
    none = custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, CONTAINERS, field_selector="status.namespace=k8s.io"
    )
    assert none["items"] == []

    response = installed.call_api(
        f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{CONTAINERS}/{name}",
        "GET",
        header_params={"Accept": f"{JSON};as=Table;v=v1;g=meta.k8s.io"},
        auth_settings=["BearerToken"],
        _preload_content=False,
    )
    # _preload_content=False makes call_api return the raw urllib3 response.
    table = json.loads(response.data)
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns == [
        "Name",
        "Running",
        "Docker-Name",
        "Status",
        "Last-Action",
        "Action-State",
        "Age",
    ]
    cells = dict(zip(columns, table["rows"][0]["cells"], strict=True))
    assert cells["Docker-Name"] == "web"
    assert cells["Status"] == "paused"
    assert cells["Running"] == "False"  # a boolean column would render empty here


def test_container_namespace_engine_ready_condition(custom, namespace):
    _create(custom, namespace, "moby", plural=CONTAINER_NAMESPACES, kind="ContainerNamespace")
    condition = {
        "type": "EngineReady",
        "status": "True",
        "reason": "Connected",
        "message": "Container engine synced",
        "lastTransitionTime": "2025-11-22T00:35:00Z",
    }
    _patch_status(
        custom, namespace, "moby", {"conditions": [condition]}, plural=CONTAINER_NAMESPACES
    )
    stored = _get(custom, namespace, "moby", plural=CONTAINER_NAMESPACES)
    assert stored["status"]["conditions"] == [condition]


def test_container_create_request_defaults_state(custom, namespace):
    created = _create(
        custom,
        namespace,
        "req",
        plural="containercreaterequests",
        kind="ContainerCreateRequest",
        spec={"image": "busybox", "name": "x"},
    )
    assert created["spec"]["state"] == "running"


# --- kubectl explain: every field explains itself -------------------------------------------


def explain_fields(devenv: Devenv, resource: str) -> dict[str, tuple[str, str]]:
    """``kubectl explain RESOURCE``'s FIELDS section as {field: (type, description)}.

    kubectl prints each field as ``  name<TAB><type> [-required-]``, optionally an
    ``  enum: ...`` line, then its description indented by four spaces.
    """
    result = devenv.kubectl("explain", resource, check=True)
    fields: dict[str, tuple[str, str]] = {}
    current: str | None = None
    lines = result.stdout.splitlines()
    assert "FIELDS:" in lines, result.stdout
    for line in lines[lines.index("FIELDS:") + 1 :]:
        field = re.match(r"^  (\S+)\t<([^>]+)>", line)
        if field:
            current = field.group(1)
            fields[current] = (field.group(2), "")
        elif current is not None and line.startswith("    "):
            kind, text = fields[current]
            fields[current] = (kind, f"{text} {line.strip()}".strip())
    return fields


def undescribed(devenv: Devenv, resource: str) -> list[str]:
    """Fields under ``resource`` (recursively into objects) without a description."""
    fields = explain_fields(devenv, resource)
    assert fields, f"kubectl explain {resource} lists no fields"
    missing = [f"{resource}.{name}" for name, (_, text) in fields.items() if not text]
    for name, (kind, _) in fields.items():
        if kind in ("Object", "[]Object"):
            missing += undescribed(devenv, f"{resource}.{name}")
    return missing


@pytest.mark.parametrize(
    "resource",
    [
        "container.status",
        "container.status.lastAction",
        "container.spec",
        "containernamespace.status",
        "containercreaterequest.spec",
    ],
)
def test_kubectl_explain_describes_every_field(installed, devenv, resource):
    """Issue 12: ``kubectl explain container.status.lastAction`` explains itself."""
    head = devenv.kubectl("explain", resource, check=True).stdout
    description = head.split("DESCRIPTION:", 1)[1].split("FIELDS:", 1)[0].strip()
    assert description, head
    if resource == "container.spec":
        return  # no fields: everything under spec is pruned
    assert undescribed(devenv, resource) == []


def test_explain_lists_the_contract_fields(installed, devenv):
    status = explain_fields(devenv, "container.status")
    schema = crds.container_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert set(status) == set(schema["properties"]["status"]["properties"])
    last = explain_fields(devenv, "container.status.lastAction")
    assert set(last) == {"action", "state", "error", "observedAt", "completedAt"}
    assert "in progress" in last["state"][1]
