"""The CustomResourceDefinitions of ``containers.rancherdesktop.io``, read from YAML.

Each CRD is one manifest file next to this module, ``<plural>.<group>.yaml`` (for
example ``containers.containers.rancherdesktop.io.yaml``), shipped as package data.
:func:`all_crds` returns every ``*.yaml`` of this directory, in file-name order, so a
new kind's CRD is a new file and nothing else here. Contract: docs/contract.md §1
(Container), §1.7 (ContainerCreateRequest) and §6.1 (ContainerNamespace).

Facts defined in code (the group, version and plurals of ``actors/domain/names.py``, the
enums of ``names.ACTIONS``, ``names.ACTION_STATES`` and
``actors/domain/mirror_status.CONTAINER_STATUSES``) are checked against the files by
``tests/unit/test_crds.py``, as is a description on every field.

Pure: the files are read once (package resources, no network, no apiserver) and parsed
with PyYAML; callers get fresh deep copies they may mutate. Installing them is the
service's job (``actors/service/crd_install.py``); ``dockmirror crds`` prints them.
A malformed file raises :class:`ManifestError` naming it.

``selectableFields`` needs Kubernetes >= 1.31 (GA in 1.32); we run 1.35.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from importlib import resources
from typing import Any

import yaml

from actors.domain.names import CONTAINER_CREATE_REQUESTS, CONTAINER_NAMESPACES, CONTAINERS, GROUP

CONTAINER_CRD_NAME = f"{CONTAINERS}.{GROUP}"
CONTAINER_CREATE_REQUEST_CRD_NAME = f"{CONTAINER_CREATE_REQUESTS}.{GROUP}"
CONTAINER_NAMESPACE_CRD_NAME = f"{CONTAINER_NAMESPACES}.{GROUP}"

#: Label selector of the "is it served" probe (a list that matches nothing, answered by
#: the watch cache): ``actors/service/crd_install.py`` and ``startup_checks.py`` use it.
SERVED_PROBE_SELECTOR = f"{GROUP}/install-probe=none"

MANIFEST_SUFFIX = ".yaml"


class ManifestError(ValueError):
    """A CRD manifest file is not one CustomResourceDefinition named like its file."""


def parse_manifests(sources: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Parse ``(file name, YAML text)`` pairs into CRDs, ordered by file name.

    Each text must hold exactly one ``apiextensions.k8s.io/v1`` CustomResourceDefinition
    whose ``metadata.name`` is the file name without ``.yaml``; anything else raises
    :class:`ManifestError` naming the file. Pure.
    """
    crds: list[dict[str, Any]] = []
    for file_name, text in sorted(sources):
        try:
            documents = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as exc:
            raise ManifestError(f"{file_name}: not valid YAML: {exc}") from exc
        if len(documents) != 1 or not isinstance(documents[0], dict):
            raise ManifestError(f"{file_name}: expected one YAML mapping, got {len(documents)}")
        crd = documents[0]
        if (crd.get("apiVersion"), crd.get("kind")) != (
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
        ):
            raise ManifestError(f"{file_name}: not an apiextensions.k8s.io/v1 CRD")
        name = (crd.get("metadata") or {}).get("name")
        if f"{name}{MANIFEST_SUFFIX}" != file_name:
            raise ManifestError(f"{file_name}: metadata.name is {name!r}; name the file after it")
        crds.append(crd)
    return crds


@functools.cache
def _loaded() -> tuple[dict[str, Any], ...]:
    """The package's manifest files, parsed once (each call of the API copies them)."""
    files = resources.files(__name__)
    sources = [
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in files.iterdir()
        if entry.name.endswith(MANIFEST_SUFFIX)
    ]
    return tuple(parse_manifests(sources))


def all_crds() -> list[dict[str, Any]]:
    """Every CRD of the package, in file-name order (fresh copies)."""
    return copy.deepcopy(list(_loaded()))


def crd_names() -> list[str]:
    """The ``metadata.name`` of every CRD, in the order of :func:`all_crds`."""
    return [crd["metadata"]["name"] for crd in _loaded()]


def crd(name: str) -> dict[str, Any]:
    """One CRD by ``metadata.name`` (a fresh copy); KeyError if there is none."""
    for manifest in _loaded():
        if manifest["metadata"]["name"] == name:
            return copy.deepcopy(manifest)
    raise KeyError(name)


def container_crd() -> dict[str, Any]:
    """``containers.containers.rancherdesktop.io`` (docs/contract.md §1)."""
    return crd(CONTAINER_CRD_NAME)


def container_create_request_crd() -> dict[str, Any]:
    """The inert ``containercreaterequests`` CRD (docs/contract.md §1.7)."""
    return crd(CONTAINER_CREATE_REQUEST_CRD_NAME)


def container_namespace_crd() -> dict[str, Any]:
    """``containernamespaces.containers.rancherdesktop.io`` (docs/contract.md §6.1)."""
    return crd(CONTAINER_NAMESPACE_CRD_NAME)


# --- the former builders, kept only to prove the YAML equivalent (to be deleted) ---------
# tests/unit/test_crds.py compares them with the YAML files, descriptions aside.
from actors.domain.mirror_status import CONTAINER_STATUSES  # noqa: E402
from actors.domain.names import ACTIONS, VERSION  # noqa: E402

CONTAINER_STATUS_ENUM = list(CONTAINER_STATUSES)
ACTION_ENUM = list(ACTIONS)
ACTION_STATE_ENUM = ["Succeeded", "Failed"]


def _string() -> dict[str, Any]:
    return {"type": "string"}


def _date_time() -> dict[str, Any]:
    return {"type": "string", "format": "date-time"}


def _conditions_schema() -> dict[str, Any]:
    """``[]metav1.Condition`` as controller-gen renders it, list-map keyed by ``type``."""
    return {
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["lastTransitionTime", "message", "reason", "status", "type"],
            "properties": {
                "lastTransitionTime": _date_time(),
                "message": {"type": "string", "maxLength": 32768},
                "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
                "reason": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 1024,
                    "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
                },
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "type": {
                    "type": "string",
                    "maxLength": 316,
                    "pattern": (
                        r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
                    ),
                },
            },
        },
    }


def _ports_schema() -> dict[str, Any]:
    """ContainerPort list (§1.5): list-map keyed by ``name``; ``bindings`` atomic."""
    return {
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "description": 'Port and protocol, e.g. "80/tcp".'},
                "bindings": {
                    "type": "array",
                    "x-kubernetes-list-type": "atomic",
                    "items": {
                        "type": "object",
                        "required": ["hostIP", "hostPort"],
                        "properties": {"hostIP": _string(), "hostPort": _string()},
                    },
                },
            },
        },
    }


def _args_schema() -> dict[str, Any]:
    return {"type": "array", "items": _string(), "x-kubernetes-list-type": "atomic"}


def _labels_schema() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": _string()}


def _crd(
    *,
    plural: str,
    singular: str,
    kind: str,
    version: dict[str, Any],
    short_names: list[str] | None = None,
    categories: list[str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    names: dict[str, Any] = {
        "plural": plural,
        "singular": singular,
        "kind": kind,
        "listKind": f"{kind}List",
    }
    if short_names:
        names["shortNames"] = short_names
    if categories:
        names["categories"] = categories
    metadata: dict[str, Any] = {"name": f"{plural}.{GROUP}"}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": metadata,
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": names,
            "versions": [{"name": VERSION, "served": True, "storage": True, **version}],
        },
    }


def _root_schema(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "openAPIV3Schema": {
            "type": "object",
            "properties": {
                "apiVersion": _string(),
                "kind": _string(),
                "metadata": {"type": "object"},
                **properties,
            },
        }
    }


def legacy_container_crd() -> dict[str, Any]:
    """``containers.containers.rancherdesktop.io`` (§1.1-§1.7)."""
    status_schema = {
        "type": "object",
        "required": ["image", "name", "namespace", "path", "status"],
        "properties": {
            "name": _string(),
            "namespace": _string(),
            "path": _string(),
            "args": _args_schema(),
            "image": _string(),
            "ports": _ports_schema(),
            "labels": _labels_schema(),
            "status": {"type": "string", "enum": list(CONTAINER_STATUS_ENUM), "default": "unknown"},
            "pid": {"type": "integer", "format": "int32"},
            "exitCode": {"type": "integer", "format": "int32"},
            "error": _string(),
            "createdAt": _date_time(),
            "startedAt": _date_time(),
            "finishedAt": _date_time(),
            "conditions": _conditions_schema(),
            "lastAction": {
                "type": "object",
                "required": ["action", "state"],
                "properties": {
                    "action": {"type": "string", "enum": list(ACTION_ENUM)},
                    "state": {"type": "string", "enum": list(ACTION_STATE_ENUM)},
                    "error": _string(),
                    "observedAt": _date_time(),
                    "completedAt": _date_time(),
                },
            },
        },
    }
    version = {
        "schema": _root_schema(
            {
                # No properties: anything under spec is pruned (§1.2).
                "spec": {"type": "object"},
                "status": status_schema,
            }
        ),
        "subresources": {"status": {}},
        "selectableFields": [{"jsonPath": ".status.namespace"}],
        # kubectl drops its implicit AGE column once any column is declared, so Age is
        # listed explicitly.
        # Deviation from §1.7 ("type boolean"; docs/contract.md §9, D15): condition status is
        # the *string* "True"/"False", and the apiserver's table converter renders a non-bool value
        # in a boolean column as empty (verified on 1.35), so upstream's column would
        # never show anything. Type string shows True/False as §7 scenario 52 expects.
        "additionalPrinterColumns": [
            {
                "name": "Running",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Running")].status',
            },
            {"name": "Docker-Name", "type": "string", "jsonPath": ".status.name"},
            {"name": "Status", "type": "string", "jsonPath": ".status.status"},
            {"name": "Last-Action", "type": "string", "jsonPath": ".status.lastAction.action"},
            {"name": "Action-State", "type": "string", "jsonPath": ".status.lastAction.state"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    }
    return _crd(
        plural="containers",
        singular="container",
        kind="Container",
        categories=["all"],
        version=version,
    )


def legacy_container_create_request_crd() -> dict[str, Any]:
    """Inert ``containercreaterequests`` CRD (§1.7): installed, implemented by nothing."""
    spec_schema = {
        "type": "object",
        "properties": {
            "name": _string(),
            "namespace": _string(),
            "path": _string(),
            "args": _args_schema(),
            "image": _string(),
            "ports": _ports_schema(),
            "labels": _labels_schema(),
            "state": {"type": "string", "enum": ["created", "running"], "default": "running"},
        },
    }
    status_schema = {
        "type": "object",
        "properties": {"name": _string(), "conditions": _conditions_schema()},
    }
    version = {
        "schema": _root_schema({"spec": spec_schema, "status": status_schema}),
        "subresources": {"status": {}},
    }
    return _crd(
        plural="containercreaterequests",
        singular="containercreaterequest",
        kind="ContainerCreateRequest",
        version=version,
        annotations={"rdd.rancherdesktop.io/controller": "container"},
    )


def legacy_container_namespace_crd() -> dict[str, Any]:
    """``containernamespaces.containers.rancherdesktop.io`` (§6.1), short name ``cns``.

    Deviation from §6.1 ("metadata only"; docs/contract.md §9, D2): this port writes an
    ``EngineReady`` condition on ``ContainerNamespace/moby`` so that
    ``kubectl wait --for=condition=EngineReady containernamespace/moby`` works. The CRD
    therefore has a ``status`` holding ``conditions`` (metav1.Condition list-map keyed by
    ``type``) and a status subresource. There is still no spec and no printer column.
    """
    version = {
        "schema": _root_schema(
            {"status": {"type": "object", "properties": {"conditions": _conditions_schema()}}}
        ),
        "subresources": {"status": {}},
    }
    return _crd(
        plural="containernamespaces",
        singular="containernamespace",
        kind="ContainerNamespace",
        short_names=["cns"],
        categories=["all"],
        version=version,
    )


def legacy_all_crds() -> list[dict[str, Any]]:
    return [
        legacy_container_crd(),
        legacy_container_create_request_crd(),
        legacy_container_namespace_crd(),
    ]
