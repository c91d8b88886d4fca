"""The CRD manifests of actors/domain/crds/*.yaml: structure, facts shared with code,
descriptions, and the loader.

Contract: docs/contract.md §1.1-§1.7, §6.1.
"""

from __future__ import annotations

import json

import pytest

from actors.domain import crds, names
from actors.domain.mirror_status import CONTAINER_STATUSES, mirror_status
from actors.domain.names import (
    CONTAINER_CREATE_REQUESTS,
    CONTAINER_NAMESPACES,
    CONTAINERS,
    GROUP,
    VERSION,
)
from tests.support.samples import INSPECT_RUNNING


def bare(node):
    """``node`` without any ``description`` (a property *named* description is kept)."""
    if isinstance(node, list):
        return [bare(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "description" and isinstance(value, str):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: bare(schema) for name, schema in value.items()}
        else:
            out[key] = bare(value)
    return out


def _version(crd):
    versions = crd["spec"]["versions"]
    assert len(versions) == 1
    return versions[0]


def _status_schema(crd):
    return _version(crd)["schema"]["openAPIV3Schema"]["properties"]["status"]


def test_container_identity():
    crd = crds.container_crd()
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{CONTAINERS}.{GROUP}"
    spec = crd["spec"]
    assert spec["group"] == GROUP
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "plural": CONTAINERS,
        "singular": "container",
        "kind": "Container",
        "listKind": "ContainerList",
        "categories": ["all"],
    }
    version = _version(crd)
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {"status": {}}
    assert version["selectableFields"] == [{"jsonPath": ".status.namespace"}]


def test_container_spec_has_no_properties():
    root = _version(crds.container_crd())["schema"]["openAPIV3Schema"]
    assert root["type"] == "object"
    assert "required" not in root
    assert bare(root["properties"]["spec"]) == {"type": "object"}


def test_container_status_fields():
    status = _status_schema(crds.container_crd())
    props = status["properties"]
    assert sorted(status["required"]) == ["image", "name", "namespace", "path", "status"]
    assert set(props) == {
        "name",
        "namespace",
        "path",
        "args",
        "image",
        "ports",
        "labels",
        "status",
        "pid",
        "exitCode",
        "error",
        "createdAt",
        "startedAt",
        "finishedAt",
        "conditions",
        "lastAction",
    }
    assert bare(props["status"]) == {
        "type": "string",
        "enum": [
            "created",
            "running",
            "pausing",
            "paused",
            "restarting",
            "removing",
            "exited",
            "dead",
            "unknown",
        ],
        "default": "unknown",
    }
    assert set(props["status"]["enum"]) == set(CONTAINER_STATUSES)
    for field in ("pid", "exitCode"):
        assert bare(props[field]) == {"type": "integer", "format": "int32"}
    for field in ("createdAt", "startedAt", "finishedAt"):
        assert bare(props[field]) == {"type": "string", "format": "date-time"}
    assert props["args"]["x-kubernetes-list-type"] == "atomic"
    assert props["args"]["items"] == {"type": "string"}
    assert bare(props["labels"]) == {"type": "object", "additionalProperties": {"type": "string"}}


def test_container_ports_schema():
    ports = _status_schema(crds.container_crd())["properties"]["ports"]
    assert ports["x-kubernetes-list-type"] == "map"
    assert ports["x-kubernetes-list-map-keys"] == ["name"]
    item = ports["items"]
    assert item["required"] == ["name"]
    bindings = item["properties"]["bindings"]
    assert bindings["x-kubernetes-list-type"] == "atomic"
    assert sorted(bindings["items"]["required"]) == ["hostIP", "hostPort"]
    assert bare(bindings["items"]["properties"]) == {
        "hostIP": {"type": "string"},
        "hostPort": {"type": "string"},
    }


def test_container_last_action_schema():
    last = _status_schema(crds.container_crd())["properties"]["lastAction"]
    assert sorted(last["required"]) == ["action", "state"]
    props = last["properties"]
    assert props["action"]["enum"] == ["start", "stop", "pause", "unpause", "restart"]
    assert props["state"]["enum"] == ["Succeeded", "Failed"]
    assert props["observedAt"]["format"] == "date-time"
    assert props["completedAt"]["format"] == "date-time"
    assert bare(props["error"]) == {"type": "string"}


def _check_conditions(schema):
    assert schema["x-kubernetes-list-type"] == "map"
    assert schema["x-kubernetes-list-map-keys"] == ["type"]
    item = schema["items"]
    assert sorted(item["required"]) == [
        "lastTransitionTime",
        "message",
        "reason",
        "status",
        "type",
    ]
    props = item["properties"]
    assert props["status"]["enum"] == ["True", "False", "Unknown"]
    assert (props["reason"]["minLength"], props["reason"]["maxLength"]) == (1, 1024)
    assert props["message"]["maxLength"] == 32768
    assert props["type"]["maxLength"] == 316
    assert props["lastTransitionTime"]["format"] == "date-time"
    assert "pattern" in props["reason"]
    assert "pattern" in props["type"]


def test_container_conditions_schema():
    _check_conditions(_status_schema(crds.container_crd())["properties"]["conditions"])


def test_container_printer_columns():
    columns = _version(crds.container_crd())["additionalPrinterColumns"]
    by_name = {c["name"]: c for c in columns}
    assert bare(by_name["Running"]) == {
        "name": "Running",
        "type": "string",  # not boolean: docs/contract.md §9, D15
        "jsonPath": '.status.conditions[?(@.type=="Running")].status',
    }
    assert bare(by_name["Age"]) == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    }
    assert by_name["Docker-Name"]["jsonPath"] == ".status.name"
    assert by_name["Status"]["jsonPath"] == ".status.status"
    assert by_name["Last-Action"]["jsonPath"] == ".status.lastAction.action"
    assert by_name["Action-State"]["jsonPath"] == ".status.lastAction.state"
    assert columns[0]["name"] == "Running"


def test_mirror_status_fields_are_all_in_schema():
    props = _status_schema(crds.container_crd())["properties"]
    assert set(mirror_status(INSPECT_RUNNING)) <= set(props)


def test_container_create_request():
    crd = crds.container_create_request_crd()
    assert crd["metadata"]["name"] == f"{CONTAINER_CREATE_REQUESTS}.{GROUP}"
    assert crd["metadata"]["annotations"] == {"rdd.rancherdesktop.io/controller": "container"}
    names = crd["spec"]["names"]
    assert (names["kind"], names["listKind"], names["plural"]) == (
        "ContainerCreateRequest",
        "ContainerCreateRequestList",
        "containercreaterequests",
    )
    assert crd["spec"]["scope"] == "Namespaced"
    version = _version(crd)
    assert version["name"] == VERSION
    assert version["subresources"] == {"status": {}}
    root = version["schema"]["openAPIV3Schema"]["properties"]
    spec = root["spec"]["properties"]
    assert set(spec) == {"name", "namespace", "path", "args", "image", "ports", "labels", "state"}
    assert bare(spec["state"]) == {
        "type": "string",
        "enum": ["created", "running"],
        "default": "running",
    }
    assert set(root["status"]["properties"]) == {"name", "conditions"}
    _check_conditions(root["status"]["properties"]["conditions"])


def test_container_namespace():
    crd = crds.container_namespace_crd()
    assert crd["metadata"]["name"] == f"{CONTAINER_NAMESPACES}.{GROUP}"
    kind_names = crd["spec"]["names"]
    assert kind_names["kind"] == "ContainerNamespace"
    assert kind_names["shortNames"] == ["cns"]
    assert kind_names["categories"] == ["all"]
    assert crd["spec"]["scope"] == "Namespaced"
    version = _version(crd)
    assert version["subresources"] == {"status": {}}
    columns = version["additionalPrinterColumns"]
    assert [bare(c) for c in columns] == [
        {
            "name": "EngineReady",
            "type": "string",  # not boolean: docs/contract.md §9, D15
            "jsonPath": '.status.conditions[?(@.type=="EngineReady")].status',
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    assert names.ENGINE_READY in columns[0]["jsonPath"]
    root = version["schema"]["openAPIV3Schema"]["properties"]
    assert "spec" not in root
    _check_conditions(root["status"]["properties"]["conditions"])


def test_manifests_are_fresh_copies_and_json_serialisable():
    a = crds.container_crd()
    a["spec"]["names"]["kind"] = "Mutated"
    assert crds.container_crd()["spec"]["names"]["kind"] == "Container"
    for crd in crds.all_crds():
        json.dumps(crd)


# --- facts defined once in code, checked against the YAML --------------------------------


def test_group_version_and_plurals_come_from_names():
    plurals = set()
    for crd in crds.all_crds():
        spec = crd["spec"]
        assert spec["group"] == names.GROUP
        assert [v["name"] for v in spec["versions"]] == [names.VERSION]
        assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{names.GROUP}"
        plurals.add(spec["names"]["plural"])
    assert {names.CONTAINERS, names.CONTAINER_NAMESPACES, names.CONTAINER_CREATE_REQUESTS} <= (
        plurals
    )


def test_enums_are_the_ones_defined_in_code():
    status = _status_schema(crds.container_crd())["properties"]
    assert status["status"]["enum"] == list(CONTAINER_STATUSES)
    last = status["lastAction"]["properties"]
    assert last["action"]["enum"] == list(names.ACTIONS)
    assert last["state"]["enum"] == list(names.ACTION_STATES)


# --- every field explains itself (kubectl explain) ----------------------------------------


def _undescribed(schema, path):
    """Paths below ``schema`` whose schema lacks a non-empty description."""
    missing = []
    for name, prop in (schema.get("properties") or {}).items():
        where = f"{path}.{name}"
        # The apiserver allows nothing but the type on the root's metadata and shows
        # ObjectMeta's documentation there.
        exempt = path == "" and name == "metadata"
        if not exempt and not str(prop.get("description") or "").strip():
            missing.append(where)
        missing += _undescribed(prop, where)
    items = schema.get("items")
    if isinstance(items, dict) and items.get("type") == "object":
        if not str(items.get("description") or "").strip():
            missing.append(f"{path}[]")
        missing += _undescribed(items, f"{path}[]")
    return missing


@pytest.mark.parametrize("name", crds.crd_names())
def test_every_field_has_a_description(name):
    crd = crds.crd(name)
    for version in crd["spec"]["versions"]:
        root = version["schema"]["openAPIV3Schema"]
        assert str(root.get("description") or "").strip(), f"{name}: the kind itself"
        missing = _undescribed(root, "")
        assert not missing, f"{name} {version['name']}: no description on {missing}"
        for column in version.get("additionalPrinterColumns") or []:
            assert column.get("description"), f"{name}: printer column {column['name']}"


def test_the_description_walk_finds_a_missing_one():
    crd = crds.container_crd()
    last = _version(crd)["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"][
        "lastAction"
    ]
    del last["properties"]["observedAt"]["description"]
    missing = _undescribed(_version(crd)["schema"]["openAPIV3Schema"], "")
    assert missing == [".status.lastAction.observedAt"]


# --- the loader -----------------------------------------------------------------------


def test_every_yaml_file_is_loaded_in_file_name_order():
    from importlib import resources

    files = sorted(
        f.name for f in resources.files("actors.domain.crds").iterdir() if f.name.endswith(".yaml")
    )
    assert [f"{name}.yaml" for name in crds.crd_names()] == files
    assert len(files) >= 3


def test_manifests_are_parsed_in_file_name_order_whatever_the_input_order():
    def doc(name):
        return (
            f"{name}.yaml",
            f"apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
            f"metadata:\n  name: {name}\n",
        )

    parsed = crds.parse_manifests([doc("b.example.io"), doc("a.example.io")])
    assert [c["metadata"]["name"] for c in parsed] == ["a.example.io", "b.example.io"]


@pytest.mark.parametrize(
    ("file_name", "text", "match"),
    [
        ("x.yaml", "a: [", "not valid YAML"),
        ("x.yaml", "", "expected one YAML mapping, got 0"),
        ("x.yaml", "a: 1\n---\nb: 2\n", "expected one YAML mapping, got 2"),
        ("x.yaml", "apiVersion: v1\nkind: ConfigMap\n", "not an apiextensions"),
        (
            "x.yaml",
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
            "metadata:\n  name: y\n",
            "metadata.name is 'y'",
        ),
    ],
)
def test_a_malformed_manifest_names_its_file(file_name, text, match):
    with pytest.raises(crds.ManifestError, match=match) as info:
        crds.parse_manifests([(file_name, text)])
    assert str(info.value).startswith(file_name)
