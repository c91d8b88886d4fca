"""The Image and Volume CRD manifests: names, columns, selectable fields, descriptions, and
that every status the mappings produce is valid under their schemas."""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.domain import image_status, volume_status
from actors.domain.desired import Unmappable
from actors.domain.names import GROUP, IMAGES, VERSION, VOLUMES
from tests.support.samples import IMAGE_INSPECT, IMAGE_LIST, VOLUME_INSPECT

ROOT = Path(__file__).resolve().parents[2]
MANIFEST_DIRS = [ROOT / "actors/domain/crds"]
DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@functools.cache
def _manifest(plural: str) -> dict[str, Any]:
    name = f"{plural}.{GROUP}.yaml"
    for directory in MANIFEST_DIRS:
        if (directory / name).exists():
            [crd] = [d for d in yaml.safe_load_all((directory / name).read_text()) if d]
            return crd
    raise FileNotFoundError(name)


def manifest(plural: str) -> dict[str, Any]:
    """The parsed manifest (parsed once: hypothesis calls this per example)."""
    return copy.deepcopy(_manifest(plural))


def version_of(crd: dict[str, Any]) -> dict[str, Any]:
    [version] = crd["spec"]["versions"]
    return version


def columns(version: dict[str, Any]) -> list[dict[str, Any]]:
    """The printer columns without their descriptions (tests/unit/test_crds.py wants one)."""
    return [
        {k: v for k, v in c.items() if k != "description"}
        for c in version["additionalPrinterColumns"]
    ]


def status_schema(plural: str) -> dict[str, Any]:
    return version_of(manifest(plural))["schema"]["openAPIV3Schema"]["properties"]["status"]


@pytest.mark.parametrize(("plural", "kind"), [(IMAGES, "Image"), (VOLUMES, "Volume")])
def test_identity(plural, kind):
    crd = manifest(plural)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{plural}.{GROUP}"
    spec = crd["spec"]
    assert (spec["group"], spec["scope"]) == (GROUP, "Namespaced")
    assert spec["names"] == {
        "plural": plural,
        "singular": kind.lower(),
        "kind": kind,
        "listKind": f"{kind}List",
        "categories": ["all"],
    }
    version = version_of(crd)
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {"status": {}}


def test_image_columns_and_selectable_fields_are_upstreams():
    version = version_of(manifest(IMAGES))
    assert version["selectableFields"] == [
        {"jsonPath": ".status.namespace"},
        {"jsonPath": ".status.id"},
        {"jsonPath": ".status.repoTag"},
    ]
    assert columns(version) == [
        {"name": "Tag", "type": "string", "jsonPath": ".status.repoTag"},
        {"name": "Created", "type": "date", "jsonPath": ".status.createdAt"},
        {"name": "Size", "type": "integer", "format": "byte", "jsonPath": ".status.size"},
    ]
    assert status_schema(IMAGES)["required"] == ["architecture", "id", "namespace", "os", "size"]


def test_volume_columns_and_selectable_fields():
    version = version_of(manifest(VOLUMES))
    assert version["selectableFields"] == [
        {"jsonPath": ".status.namespace"},
        {"jsonPath": ".status.name"},  # kubectl get volumes --field-selector status.name=x
    ]
    assert columns(version) == [
        {"name": "Docker-Name", "type": "string", "jsonPath": ".status.name"},  # D23
        {"name": "Driver", "type": "string", "jsonPath": ".status.driver"},
    ]
    assert status_schema(VOLUMES)["required"] == [
        "createdAt",
        "driver",
        "mountpoint",
        "name",
        "namespace",
        "scope",
    ]


def _undescribed(schema: dict[str, Any], path: str) -> list[str]:
    missing = [] if schema.get("description") else [path]
    for key, child in (schema.get("properties") or {}).items():
        if key == "metadata" and path == "":
            continue  # the apiserver allows nothing but the type there
        missing += _undescribed(child, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        missing += _undescribed(schema["items"], f"{path}[]")
    return missing


@pytest.mark.parametrize("plural", [IMAGES, VOLUMES])
def test_every_field_has_a_description(plural):
    root = version_of(manifest(plural))["schema"]["openAPIV3Schema"]
    assert _undescribed(root, "") == []


# --- the mappings' output is valid under the schemas ---------------------------------


def validate(value: Any, schema: dict[str, Any], path: str = "status") -> list[str]:
    """The subset of structural-schema validation our schemas use."""
    errors: list[str] = []
    kind = schema.get("type")
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
    }
    if kind and not checks[kind](value):
        return [f"{path}: {value!r} is not {kind}"]
    if schema.get("format") == "date-time" and not DATE_TIME.match(value):
        errors.append(f"{path}: {value!r} is not a date-time")
    if schema.get("format") == "int64" and not -(2**63) <= value < 2**63:
        errors.append(f"{path}: {value} is not int64")
    if kind == "object":
        properties = schema.get("properties")
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}.{key}: required")
        for key, item in value.items():
            if properties is not None:
                if key not in properties:
                    errors.append(f"{path}.{key}: unknown field (would be pruned)")
                else:
                    errors += validate(item, properties[key], f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += validate(item, schema["additionalProperties"], f"{path}.{key}")
    if kind == "array":
        for i, item in enumerate(value):
            errors += validate(item, schema["items"], f"{path}[{i}]")
    return errors


def test_samples_are_valid():
    for mirror in image_status.image_mirrors(IMAGE_INSPECT):
        assert validate(mirror.status, status_schema(IMAGES)) == []
    assert (
        validate(volume_status.volume_mirror(VOLUME_INSPECT).status, status_schema(VOLUMES)) == []
    )
    assert image_status.listed_mirror_names(IMAGE_LIST)


text = st.text(max_size=12)
garbage = st.none() | st.integers(min_value=-(2**70), max_value=2**70) | text | st.booleans()
string_map = st.dictionaries(text, text | garbage, max_size=3) | garbage


@settings(max_examples=200)
@given(
    st.fixed_dictionaries(
        {"Id": st.text(min_size=1, max_size=12)},
        optional={
            "RepoTags": st.lists(text | garbage, max_size=3) | garbage,
            "RepoDigests": st.lists(text | garbage, max_size=3) | garbage,
            "Created": st.sampled_from(["2026-12-04T12:40:49.488604466Z", "x"]) | garbage,
            "Architecture": garbage,
            "Os": garbage,
            "Size": garbage,
            "Config": st.fixed_dictionaries({}, optional={"Labels": string_map}) | garbage,
        },
    )
)
def test_every_image_status_is_valid(inspect):
    mirrors = image_status.image_mirrors(inspect)
    assert not isinstance(mirrors, Unmappable)
    for mirror in mirrors:
        assert validate(mirror.status, status_schema(IMAGES)) == []


@settings(max_examples=200)
@given(
    st.fixed_dictionaries(
        {"Name": st.text(min_size=1, max_size=12)},
        optional={
            "CreatedAt": st.sampled_from(["2026-12-04T12:40:32Z", "2026-12-04T13:40:32+01:00"])
            | garbage,
            "Driver": garbage,
            "Mountpoint": garbage,
            "Scope": garbage,
            "Labels": string_map,
            "Options": string_map,
        },
    )
)
def test_every_volume_status_is_valid_or_skipped(volume):
    mirror = volume_status.volume_mirror(volume)
    if isinstance(mirror, Unmappable):
        assert "CreatedAt" in mirror.reason
        return
    assert validate(mirror.status, status_schema(VOLUMES)) == []
