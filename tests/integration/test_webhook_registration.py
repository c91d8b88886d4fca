"""The Container admission webhook against the real kube-apiserver.

Contract: docs/contract.md §5.1, §7 scenarios 19, 20, 30, 31.

The API server calls our WebhookServer on 127.0.0.1 over HTTPS, verifying it with the
generated CA from the registered caBundle.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from actors.domain.names import (
    ACTION_ANNOTATION,
    CONTAINER_NAMESPACES,
    CONTAINERS,
    GROUP,
    MERGE_PATCH,
    VERSION,
)
from actors.infra.certs import ensure_certificates
from actors.infra.webhook import (
    NAMESPACE_WEBHOOK_NAME,
    VALIDATE_PATH,
    WEBHOOK_NAME,
    WebhookRegistration,
    WebhookServer,
)
from actors.ports.kube_port import KubeHttp
from actors.service.crd_install import install_crds
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

CRD_NAME = f"{CONTAINERS}.{GROUP}"


@pytest.fixture(scope="module")
def container_crd(api_client: k8s.ApiClient) -> None:
    """Install the project's CRDs only if the Container CRD is absent (never clobber)."""
    try:
        k8s.ApiextensionsV1Api(api_client).read_custom_resource_definition(CRD_NAME)
    except ApiException as exc:
        if exc.status != 404:
            raise
        install_crds(KubeHttp(api_client))


@pytest.fixture
def webhook(
    api_client: k8s.ApiClient, namespace: str, tmp_path: Path, container_crd: None
) -> Iterator[tuple[WebhookRegistration, WebhookServer]]:
    bundle = ensure_certificates(tmp_path)
    server = WebhookServer(bundle.cert_path, bundle.key_path, port=0)
    server.start()
    reg = WebhookRegistration(
        KubeHttp(api_client), namespace, server.port, bundle.ca_pem, server=server
    )
    try:
        reg.register()
        reg.wait_until_called(timeout=30)
        yield reg, server
    finally:
        reg.delete()
        server.stop()


def _container(name: str, namespace: str, annotations: dict[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations is not None:
        meta["annotations"] = annotations
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Container",
        "metadata": meta,
    }


def _custom(api_client: k8s.ApiClient) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(api_client)


def _create(api_client: k8s.ApiClient, namespace: str, body: dict) -> dict:
    return _custom(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, CONTAINERS, body
    )


def _annotate(api_client: k8s.ApiClient, namespace: str, name: str, value: str | None) -> dict:
    return _custom(api_client).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        CONTAINERS,
        name,
        {"metadata": {"annotations": {ACTION_ANNOTATION: value}}},
        _content_type=MERGE_PATCH,
    )


def _denial(call: Callable[[], Any]) -> str:
    with pytest.raises(ApiException) as info:
        call()
    body = info.value.body
    text = body.decode() if isinstance(body, bytes) else str(body)
    return json.loads(text)["message"]


def test_registered_configuration_shape(
    api_client: k8s.ApiClient, namespace: str, webhook: tuple[WebhookRegistration, WebhookServer]
) -> None:
    reg, server = webhook
    raw = k8s.AdmissionregistrationV1Api(api_client).read_validating_webhook_configuration(
        reg.name, _preload_content=False
    )
    cfg = json.loads(raw.data)
    assert cfg["metadata"]["name"] == f"dockmirror-{namespace}"
    hook, namespace_hook = cfg["webhooks"]
    assert hook["name"] == WEBHOOK_NAME
    assert hook["clientConfig"]["url"] == (f"https://127.0.0.1:{server.port}{VALIDATE_PATH}")
    assert base64.b64decode(hook["clientConfig"]["caBundle"]) == reg.ca_pem
    (rule,) = hook["rules"]
    assert sorted(rule["operations"]) == ["CREATE", "UPDATE"]
    assert rule["apiGroups"] == [GROUP]
    assert rule["apiVersions"] == [VERSION]
    assert rule["resources"] == [CONTAINERS]
    assert hook["failurePolicy"] == "Fail"
    assert hook["sideEffects"] == "None"
    assert hook["matchPolicy"] == "Equivalent"
    assert hook["timeoutSeconds"] == 5
    assert hook["admissionReviewVersions"] == ["v1", "v1beta1"]
    assert hook["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    # The ContainerNamespace delete warning (docs/contract.md §5.2): same endpoint, warns only.
    assert namespace_hook["name"] == NAMESPACE_WEBHOOK_NAME
    assert namespace_hook["clientConfig"] == hook["clientConfig"]
    (rule,) = namespace_hook["rules"]
    assert (rule["operations"], rule["resources"]) == (["DELETE"], [CONTAINER_NAMESPACES])
    assert namespace_hook["failurePolicy"] == "Ignore"
    assert namespace_hook["namespaceSelector"] == hook["namespaceSelector"]
    # Registering again replaces in place (409 path).
    reg.register()
    reg.wait_until_called(timeout=30)


@pytest.mark.parametrize("value", ["start", ""])
def test_create_with_annotation_is_denied(
    api_client: k8s.ApiClient,
    namespace: str,
    webhook: tuple[WebhookRegistration, WebhookServer],
    value: str,
) -> None:
    # Scenarios 20 and 30.
    body = _container("c-create", namespace, {ACTION_ANNOTATION: value})
    message = _denial(lambda: _create(api_client, namespace, body))
    assert f'admission webhook "{WEBHOOK_NAME}" denied the request' in message
    assert "not allowed on create" in message


def test_kubectl_annotate_bogus_is_denied_and_valid_stop_allowed(
    api_client: k8s.ApiClient,
    namespace: str,
    webhook: tuple[WebhookRegistration, WebhookServer],
    kubectl: Callable[..., Any],
) -> None:
    name = "c-update"
    _create(api_client, namespace, _container(name, namespace))

    # Scenario 19, with kubectl like the BATS test.
    res = kubectl(
        "annotate", "-n", namespace, f"container/{name}", f"{ACTION_ANNOTATION}=bogus",
        "--overwrite",
    )  # fmt: skip
    assert res.returncode != 0
    assert "invalid" in res.stderr
    assert f'invalid {ACTION_ANNOTATION} annotation "bogus"' in res.stderr

    # Scenario 31.
    for value in ("", "Start"):
        message = _denial(lambda v=value: _annotate(api_client, namespace, name, v))
        assert f'invalid {ACTION_ANNOTATION} annotation "{value}"' in message

    # Valid value allowed; removal allowed.
    obj = _annotate(api_client, namespace, name, "stop")
    assert obj["metadata"]["annotations"][ACTION_ANNOTATION] == "stop"
    obj = _annotate(api_client, namespace, name, None)
    assert ACTION_ANNOTATION not in (obj["metadata"].get("annotations") or {})


def test_other_namespaces_are_not_affected(
    api_client: k8s.ApiClient,
    webhook: tuple[WebhookRegistration, WebhookServer],
    request: pytest.FixtureRequest,
) -> None:
    from tests.support.devenv import unique_name

    other = unique_name("t", request.node.name + "-other")
    core = k8s.CoreV1Api(api_client)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=other)))
    try:
        created = _create(
            api_client, other, _container("c-other", other, {ACTION_ANNOTATION: "start"})
        )
        assert created["metadata"]["annotations"][ACTION_ANNOTATION] == "start"
    finally:
        core.delete_namespace(other)


def test_server_down_fails_writes_then_delete_unblocks(
    api_client: k8s.ApiClient, namespace: str, webhook: tuple[WebhookRegistration, WebhookServer]
) -> None:
    reg, server = webhook
    server.stop()
    message = _denial(lambda: _create(api_client, namespace, _container("c-down", namespace)))
    assert "failed calling webhook" in message

    reg.delete()
    reg.delete()  # NotFound is fine
    # The configuration removal takes a moment to reach the admission plugin.
    wait_for(
        lambda: _create(api_client, namespace, _container("c-after", namespace)),
        timeout=30,
        interval=0.2,
        ignore=(ApiException,),
        message="Container create allowed after webhook configuration deletion",
    )
