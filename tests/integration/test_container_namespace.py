"""ContainerNamespace/moby with the real service and kube-apiserver (docs/contract.md §5.2,
§6.1; issue 13 point 5).

* ``kubectl get cns`` shows the ``EngineReady`` printer column;
* ``kubectl delete cns moby`` succeeds with the warning
  ``namespace delete validation not implemented``, in both admission modes (policy: the
  apiserver prefixes it with the policy and binding names; webhook: as is);
* the service puts ``ContainerNamespace/moby`` back, with its ``EngineReady`` condition, at
  the next resync (``--resync-interval 1`` here; the shared Docker engine is never
  restarted).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from actors.domain.admission_policy import NAMESPACE_POLICY_NAME, namespace_binding_name
from actors.domain.names import CONTAINER_NAMESPACES, GROUP, MOBY, VERSION
from actors.domain.webhook_review import NAMESPACE_DELETE_WARNING
from tests.support.devenv import Devenv
from tests.support.service import Service
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration


def moby_uid(api_client: k8s.ApiClient, namespace: str) -> str | None:
    try:
        obj = k8s.CustomObjectsApi(api_client).get_namespaced_custom_object(
            GROUP, VERSION, namespace, CONTAINER_NAMESPACES, MOBY
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj["metadata"]["uid"]


def expected_warning(mode: str, namespace: str) -> str:
    """What kubectl prints on stderr for the delete (docs/contract.md §5.2)."""
    if mode == "policy":
        return (
            f"Warning: Validation failed for ValidatingAdmissionPolicy '{NAMESPACE_POLICY_NAME}' "
            f"with binding '{namespace_binding_name(namespace)}': {NAMESPACE_DELETE_WARNING}"
        )
    return f"Warning: {NAMESPACE_DELETE_WARNING}"


def test_kubectl_get_cns_shows_engine_ready(service: Service, devenv: Devenv) -> None:
    out = devenv.kubectl("get", "cns", "-n", service.namespace, check=True).stdout
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "ENGINEREADY", "AGE"]
    assert row.split()[:2] == ["moby", "True"]


@pytest.mark.parametrize("mode", ["policy", "webhook"])
def test_deleting_moby_warns_and_the_next_resync_recreates_it(
    mode: str,
    service_factory: Callable[..., Service],
    devenv: Devenv,
    api_client: k8s.ApiClient,
) -> None:
    service = service_factory(extra_args=("--admission", mode, "--resync-interval", "1"))
    ns = service.namespace
    before = moby_uid(api_client, ns)
    assert before is not None
    warning = expected_warning(mode, ns)

    # A freshly applied policy takes a moment to load; a server-side dry run goes
    # through admission without deleting anything.
    def dry_run_warns() -> bool:
        res = devenv.kubectl("delete", "cns", MOBY, "-n", ns, "--dry-run=server", check=True)
        return warning in res.stderr.splitlines()

    wait_for(dry_run_warns, timeout=30, interval=0.2, message=f"the {mode} delete warning")

    res = devenv.kubectl("delete", "cns", MOBY, "-n", ns, "--wait=false", check=True)
    assert warning in res.stderr.splitlines(), res.stderr
    assert res.stderr.rstrip().endswith(NAMESPACE_DELETE_WARNING)
    assert f'{MOBY}" deleted' in res.stdout

    def recreated() -> bool:
        uid = moby_uid(api_client, ns)
        return uid is not None and uid != before and service.engine_ready() == ("True", "Connected")

    wait_for(recreated, timeout=30, interval=0.2, message="ContainerNamespace/moby recreated")
    assert "creating it" in service.log_since_start()
