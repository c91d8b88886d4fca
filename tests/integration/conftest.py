"""Integration fixtures: the real service as a child process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.support.devenv import Devenv
from tests.support.service import Service


@pytest.fixture
def service_factory(
    devenv: Devenv,
    api_client: k8s.ApiClient,
    namespace: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., Service]]:
    """``service_factory(extra_args=(), env=None, start=True)`` -> a Service in ``namespace``.

    Every service is stopped (SIGTERM, then SIGKILL) after the test; if the test failed,
    the tail of its log is printed to help diagnosis.
    """
    made: list[Service] = []

    def make(
        *,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        start: bool = True,
        ns: str | None = None,
    ) -> Service:
        svc = Service(
            devenv,
            api_client,
            ns or namespace,
            tmp_path / f"svc{len(made)}",
            extra_args=extra_args,
            env=env,
        )
        made.append(svc)
        if start:
            svc.start()
        return svc

    yield make
    failed = getattr(request.node, "rep_call", None)
    for svc in made:
        try:
            svc.stop()
        except AssertionError:
            svc.kill()
        if failed is not None and failed.failed:
            print(f"--- service log {svc.log_file} (tail)\n{svc.log_text()[-6000:]}")


@pytest.fixture
def service(service_factory: Callable[..., Service]) -> Service:
    """A running service in this test's namespace (EngineReady=True)."""
    return service_factory()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
