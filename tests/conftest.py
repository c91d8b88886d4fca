"""Shared pytest fixtures.

Integration fixtures start the real devenv (Docker engine + kube-apiserver) once per session via
``scripts/devenv up``; if it cannot start, the whole run fails with the reason (never a skip).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from tests.support.devenv import TEST_LABEL, Devenv, DevenvUnavailable, start_devenv, unique_name
from tests.support.docker_cleanup import force_remove

BUSYBOX = "busybox:local"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in item.nodeid.replace("\\", "/") or item.nodeid.startswith(
            "tests/integration"
        ):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def devenv() -> Iterator[Devenv]:
    """The running devenv (started if needed). Also exports KUBECONFIG/DOCKER_HOST."""
    try:
        dev = start_devenv()
    except DevenvUnavailable as e:
        pytest.exit(f"devenv could not start, integration tests cannot run:\n{e}", returncode=1)
    saved = {k: os.environ.get(k) for k in dev.env()}
    os.environ.update(dev.env())
    yield dev
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def api_client(devenv: Devenv) -> Iterator[k8s.ApiClient]:
    """kubernetes ApiClient authenticated as the devenv admin (system:masters)."""
    api = k8s_config.new_client_from_config(config_file=str(devenv.kubeconfig))
    yield api
    api.close()


@pytest.fixture(scope="session")
def docker_client(devenv: Devenv) -> Iterator[docker.DockerClient]:
    """docker SDK client for the devenv's engine."""
    dc = docker.DockerClient(base_url=devenv.docker_host, timeout=60)
    yield dc
    dc.close()


@pytest.fixture(scope="session")
def kubectl(devenv: Devenv) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``kubectl(*args, input=None, check=False, timeout=60)`` -> CompletedProcess (text)."""
    return devenv.kubectl


@pytest.fixture
def namespace(api_client: k8s.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for this test, deleted afterwards.

    The devenv runs no namespace controller, so deleted namespaces stay Terminating and their
    objects remain; names are unique, so that never collides.
    """
    name = unique_name("t", request.node.name)
    core = k8s.CoreV1Api(api_client)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as e:
        if e.status != 404:
            raise
    # A policy-mode service (the default) leaves its cluster-scoped binding on purpose.
    try:
        k8s.AdmissionregistrationV1Api(api_client).delete_validating_admission_policy_binding(
            f"dockmirror-{name}"
        )
    except ApiException as e:
        if e.status != 404:
            raise


class ContainerFactory:
    """Runs (or creates) labelled containers for one test; ``cleanup()`` removes them all."""

    def __init__(self, docker_client: docker.DockerClient, test_id: str) -> None:
        self.client = docker_client
        self.test_id = test_id
        self.label = f"{TEST_LABEL}={test_id}"

    def __call__(
        self,
        command: str | list[str] | None = ("sleep", "3600"),
        *,
        create_only: bool = False,
        image: str = BUSYBOX,
        **kwargs: Any,
    ) -> docker.models.containers.Container:
        """Run ``command`` in ``busybox:local`` detached (``create_only``: create, not start).

        Defaults: network_mode="none", the per-test label; kwargs go to the docker SDK.
        """
        labels = dict(kwargs.pop("labels", None) or {})
        labels[TEST_LABEL] = self.test_id
        kwargs.setdefault("network_mode", "none")
        if isinstance(command, tuple):
            command = list(command)
        stop_timeout = kwargs.pop("stop_timeout", None)
        if stop_timeout is not None:
            # The SDK's high-level run()/create() do not take StopTimeout; the low-level
            # API does. busybox ``sleep`` as PID 1 ignores SIGTERM, so a stop then takes
            # the whole grace period, like a real slow-stopping service.
            return self._create_with_stop_timeout(
                image, command, labels, stop_timeout, create_only=create_only, **kwargs
            )
        if create_only:
            return self.client.containers.create(image, command, labels=labels, **kwargs)
        kwargs.setdefault("detach", True)
        return self.client.containers.run(image, command, labels=labels, **kwargs)

    def _create_with_stop_timeout(
        self,
        image: str,
        command: str | list[str] | None,
        labels: dict[str, str],
        stop_timeout: int,
        *,
        create_only: bool,
        **kwargs: Any,
    ) -> docker.models.containers.Container:
        api = self.client.api
        kwargs.pop("detach", None)
        host_config = api.create_host_config(network_mode=kwargs.pop("network_mode", "none"))
        created = api.create_container(
            image,
            command,
            labels=labels,
            stop_timeout=stop_timeout,
            host_config=host_config,
            **kwargs,
        )
        if not create_only:
            api.start(created["Id"])
        return self.client.containers.get(created["Id"])

    def cleanup(self) -> None:
        for c in self.client.containers.list(
            all=True, ignore_removed=True, filters={"label": self.label}
        ):
            force_remove(c)


@pytest.fixture
def run_container(
    docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> Iterator[ContainerFactory]:
    """Factory: ``run_container(command=("sleep", "3600"), *, create_only=False, **sdk_kwargs)``.

    Every container carries the label ``dockmirror.test=<test id>`` (``run_container.label``)
    and ``network_mode="none"`` unless overridden; all are removed after the test.
    """
    factory = ContainerFactory(docker_client, unique_name("t", request.node.name, max_len=80))
    yield factory
    factory.cleanup()
