"""The Image and Volume CRDs on the real kube-apiserver, filled from the real engine.

The manifests are installed as they are (no service involved); objects get the statuses
the pure mappings make of Docker's answers for ``busybox:local`` and a test volume. Checks
what only the apiserver can tell: the schemas accept those statuses unchanged, the
selectable fields work with ``--field-selector`` and the printer columns show.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes.client as k8s
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from actors.domain import image_status, volume_status
from actors.domain.names import API_VERSION, GROUP, IMAGES, JSON, MERGE_PATCH, VERSION, VOLUMES
from actors.ports.docker_port import DockerPort
from tests.unit.test_crds_images_volumes import MANIFEST_DIRS

pytestmark = pytest.mark.integration


def _manifest(plural: str) -> dict[str, Any]:
    for directory in MANIFEST_DIRS:
        path = directory / f"{plural}.{GROUP}.yaml"
        if path.exists():
            return yaml.safe_load(path.read_text())
    raise FileNotFoundError(plural)


def _install(api_client: k8s.ApiClient, plural: str) -> None:
    """Create or replace the CRD, then wait until it is Established (60 s)."""
    api = k8s.ApiextensionsV1Api(api_client)
    body = _manifest(plural)
    name = body["metadata"]["name"]
    try:
        api.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        current = api.read_custom_resource_definition(name)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        api.replace_custom_resource_definition(name, body)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conditions = api.read_custom_resource_definition(name).status.conditions or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} not Established within 60 s")


@pytest.fixture(scope="module")
def custom(api_client: k8s.ApiClient) -> k8s.CustomObjectsApi:
    _install(api_client, IMAGES)
    _install(api_client, VOLUMES)
    return k8s.CustomObjectsApi(api_client)


@pytest.fixture
def test_volume(devenv) -> Iterator[tuple[DockerPort, str]]:
    import docker

    client = docker.DockerClient(base_url=devenv.docker_host, timeout=60)
    name = f"dockmirror-test_Vol_{uuid.uuid4().hex[:8]}"  # upper case and "_": hashed name
    client.volumes.create(name, labels={"dockmirror.test": "crds"})
    try:
        yield DockerPort(devenv.docker_host), name
    finally:
        client.volumes.get(name).remove(force=True)
        client.close()


def _put(custom: k8s.CustomObjectsApi, namespace: str, plural: str, kind: str, mirror) -> dict:
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        plural,
        {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": mirror.name}},
    )
    return custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        plural,
        mirror.name,
        {"status": mirror.status},
        _content_type=MERGE_PATCH,
    )


def _table(api_client: k8s.ApiClient, namespace: str, plural: str, selector: str) -> dict:
    response = api_client.call_api(
        f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}",
        "GET",
        query_params=[("fieldSelector", selector)],
        header_params={"Accept": f"{JSON};as=Table;v=v1;g=meta.k8s.io"},
        auth_settings=["BearerToken"],
        _preload_content=False,
    )
    return json.loads(response.data)


def test_volume_status_fits_and_field_selector_finds_it(custom, api_client, namespace, test_volume):
    port, name = test_volume
    mirror = volume_status.volume_mirror(port.inspect_volume(name))
    stored = _put(custom, namespace, VOLUMES, "Volume", mirror)
    assert stored["status"] == mirror.status  # nothing pruned, nothing defaulted
    assert mirror.status["labels"] == {"dockmirror.test": "crds"}

    found = custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, VOLUMES, field_selector=f"status.name={name}"
    )["items"]
    assert [o["metadata"]["name"] for o in found] == [volume_status.mirror_name(name)]
    none = custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, VOLUMES, field_selector=f"status.name={name.lower()}"
    )["items"]
    assert none == []

    table = _table(api_client, namespace, VOLUMES, f"status.namespace=moby,status.name={name}")
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns == ["Name", "Docker-Name", "Driver"]
    assert table["rows"][0]["cells"] == [mirror.name, name, "local"]


def test_image_statuses_fit_and_select_by_id_and_tag(custom, api_client, namespace, devenv):
    port = DockerPort(devenv.docker_host)
    inspect = port.inspect_image("busybox:local")
    mirrors = image_status.image_mirrors(inspect)
    assert [m.status.get("repoTag") for m in mirrors] == inspect["RepoTags"]
    dangling = image_status.image_mirrors(dict(inspect, RepoTags=[]))
    for mirror in [*mirrors, *dangling]:
        stored = _put(custom, namespace, IMAGES, "Image", mirror)
        assert stored["status"] == mirror.status

    by_id = custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, IMAGES, field_selector=f"status.id={inspect['Id']}"
    )["items"]
    assert len(by_id) == len(mirrors) + 1
    by_tag = custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, IMAGES, field_selector="status.repoTag=busybox:local"
    )["items"]
    assert [o["metadata"]["name"] for o in by_tag] == [
        image_status.mirror_name(inspect["Id"], "busybox:local")
    ]

    table = _table(api_client, namespace, IMAGES, "status.repoTag=busybox:local")
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Tag", "Created", "Size"]
    cells = table["rows"][0]["cells"]
    assert cells[1] == "busybox:local" and cells[3] == inspect["Size"]


def test_status_without_required_fields_is_refused(custom, namespace):
    name = "img-" + "0" * 64
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        IMAGES,
        {"apiVersion": API_VERSION, "kind": "Image", "metadata": {"name": name}},
    )
    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            IMAGES,
            name,
            {"status": {"id": "x"}},
            _content_type=MERGE_PATCH,
        )
    assert err.value.status == 422
    for field in ("architecture", "namespace", "os", "size"):
        assert f"status.{field}: Required value" in err.value.body
