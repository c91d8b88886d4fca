"""The webhook server's limits against the real kube-apiserver (issue 10, point 8).

The unit tests (tests/unit/test_webhook_starvation.py) show the limits with a plain HTTPS
client; here the client is the API server itself, which keeps idle keep-alive
connections to webhooks and reuses them:

* while slow clients fill every connection slot, the API server still gets our answer
  within the webhook's timeoutSeconds (our denial, not "failed calling webhook");
* an idle API server connection is not cut by the request deadline: idle time between
  requests is governed by the (much longer) idle timeout.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from actors.domain.names import ACTION_ANNOTATION, CONTAINERS, GROUP, VERSION
from actors.infra.certs import ensure_certificates
from actors.infra.webhook import (
    MAX_CONNECTIONS,
    WEBHOOK_NAME,
    WebhookRegistration,
    WebhookServer,
)
from actors.ports.kube_port import KubeHttp
from actors.service.crd_install import install_crds
from tests.support.slow_clients import Slowpoke, Trickler
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

CRD_NAME = f"{CONTAINERS}.{GROUP}"
SLOW_CLIENTS = 300
#: The registration's timeoutSeconds: past it the API server reports a failed call.
WEBHOOK_TIMEOUT = 5.0

Factory = Callable[..., tuple[WebhookRegistration, WebhookServer, ssl.SSLContext]]


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
def limited_webhook(
    api_client: k8s.ApiClient, namespace: str, tmp_path: Path, container_crd: None
) -> Iterator[Factory]:
    """``make(**limits)``: a registered WebhookServer with the given limits, already
    called by the API server once (so it holds an idle keep-alive connection)."""
    bundle = ensure_certificates(tmp_path)
    made: list[tuple[WebhookRegistration, WebhookServer]] = []

    def make(**limits: float) -> tuple[WebhookRegistration, WebhookServer, ssl.SSLContext]:
        server = WebhookServer(bundle.cert_path, bundle.key_path, port=0, **limits)
        server.start()
        reg = WebhookRegistration(
            KubeHttp(api_client), namespace, server.port, bundle.ca_pem, server=server
        )
        made.append((reg, server))
        reg.register()
        reg.wait_until_called(timeout=30)
        return reg, server, ssl.create_default_context(cadata=bundle.ca_pem.decode())

    yield make
    for reg, server in made:
        reg.delete()
        server.stop()


def dry_run_create_denial(api_client: k8s.ApiClient, namespace: str) -> tuple[float, str]:
    """A server-side dry-run CREATE with the action annotation: (seconds, denial text)."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Container",
        "metadata": {
            "generateName": "limits-",
            "namespace": namespace,
            "annotations": {ACTION_ANNOTATION: "start"},
        },
    }
    start = time.monotonic()
    with pytest.raises(ApiException) as info:
        k8s.CustomObjectsApi(api_client).create_namespaced_custom_object(
            GROUP, VERSION, namespace, CONTAINERS, body, dry_run="All"
        )
    elapsed = time.monotonic() - start
    raw: Any = info.value.body
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return elapsed, json.loads(text)["message"]


def assert_our_denial(message: str) -> None:
    assert f'admission webhook "{WEBHOOK_NAME}" denied the request' in message, message
    assert "not allowed on create" in message, message


def test_apiserver_is_answered_while_slow_clients_fill_the_server(
    api_client: k8s.ApiClient, namespace: str, limited_webhook: Factory
) -> None:
    # A long deadline, so that the slow clients hold their slots throughout.
    _, server, ctx = limited_webhook(request_deadline=60.0)
    trickler = Trickler()
    trickler.start()
    try:
        for i in range(SLOW_CLIENTS):
            trickler.add(Slowpoke(server.port, ctx, handshake=i % 10 != 0))
        wait_for(
            lambda: server.open_connections == MAX_CONNECTIONS,
            timeout=10,
            message="every slot taken",
        )
        # The API server's call either reuses its idle connection (idle ones are evicted
        # last) or opens a new one, which evicts the oldest slow client: both are fine.
        elapsed, message = dry_run_create_denial(api_client, namespace)
        assert_our_denial(message)
        assert elapsed < WEBHOOK_TIMEOUT
    finally:
        trickler.stop()


def test_idle_apiserver_connection_outlives_the_request_deadline(
    api_client: k8s.ApiClient, namespace: str, limited_webhook: Factory
) -> None:
    deadline = 2.0
    _, server, _ = limited_webhook(request_deadline=deadline)
    # wait_until_called left the API server's keep-alive connection idle in its pool.
    wait_for(lambda: server.open_connections >= 1, timeout=5, message="an API server connection")
    idle_since = time.monotonic()
    wait_for(
        lambda: time.monotonic() - idle_since > 2 * deadline,
        timeout=30,
        message="idle for two request deadlines",
    )
    assert server.open_connections >= 1, "the idle API server connection was cut"
    _, message = dry_run_create_denial(api_client, namespace)
    assert_our_denial(message)
