"""The CustomResourceDefinitions of the API group :data:`~actors.domain.names.GROUP`, from YAML.

Each CRD is one manifest file next to this module, ``<plural>.<group>.yaml`` (for
example the Container CRD's, :data:`CONTAINER_CRD_NAME` + ``.yaml``), shipped as package data.
:func:`all_crds` returns every ``*.yaml`` of this directory, in file-name order, so a
new kind's CRD is a new file and nothing else here. Contract: docs/contract.md §1
(Container), §1.7 (ContainerCreateRequest), §6.1 (ContainerNamespace), §6.2 (Image) and
§6.3 (Volume).

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

from actors.domain.names import (
    CONTAINER_CREATE_REQUESTS,
    CONTAINER_NAMESPACES,
    CONTAINERS,
    GROUP,
    IMAGES,
    VOLUMES,
)

CONTAINER_CRD_NAME = f"{CONTAINERS}.{GROUP}"
CONTAINER_CREATE_REQUEST_CRD_NAME = f"{CONTAINER_CREATE_REQUESTS}.{GROUP}"
CONTAINER_NAMESPACE_CRD_NAME = f"{CONTAINER_NAMESPACES}.{GROUP}"
IMAGE_CRD_NAME = f"{IMAGES}.{GROUP}"
VOLUME_CRD_NAME = f"{VOLUMES}.{GROUP}"

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
    """:data:`CONTAINER_CRD_NAME` (docs/contract.md §1)."""
    return crd(CONTAINER_CRD_NAME)


def container_create_request_crd() -> dict[str, Any]:
    """The inert ``containercreaterequests`` CRD (docs/contract.md §1.7)."""
    return crd(CONTAINER_CREATE_REQUEST_CRD_NAME)


def container_namespace_crd() -> dict[str, Any]:
    """:data:`CONTAINER_NAMESPACE_CRD_NAME` (docs/contract.md §6.1)."""
    return crd(CONTAINER_NAMESPACE_CRD_NAME)


def image_crd() -> dict[str, Any]:
    """The Image CRD, ``<IMAGES>.<GROUP>`` (docs/contract.md §6.2)."""
    return crd(IMAGE_CRD_NAME)


def volume_crd() -> dict[str, Any]:
    """The Volume CRD, ``<VOLUMES>.<GROUP>`` (docs/contract.md §6.3)."""
    return crd(VOLUME_CRD_NAME)
