"""App mode at start (actors/service/app_mode.py): the App CRD and the namespace."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from actors.domain.names import APP_CRD_NAME
from actors.infra.journal import Journal
from actors.ports.kube_port import KubeForbidden, KubeUnavailable
from actors.service.app_mode import AppMode
from tests.fakes.app_api import FakeCluster
from tests.support.wait import wait_for

#: Deadline of every wait (generous: a loaded machine is slow; a pass is quick).
WAIT_S = 30.0


def app_mode(tmp_path: Path, cluster: FakeCluster, *, install_crd: bool = True) -> AppMode:
    return AppMode(
        http=None,  # type: ignore[arg-type]  # every call goes to the fake api
        journal=Journal(path=tmp_path / "t.jsonl"),
        install_crd=install_crd,
        on_moved=lambda _ns: None,
        api=cluster.app_api,  # type: ignore[arg-type]
    )


def resolve(mode: AppMode, stop: threading.Event | None = None, **kwargs: Any) -> str | None:
    kwargs.setdefault("timeout", 5.0)
    kwargs.setdefault("fatal", lambda exc: None)
    kwargs.setdefault("unreachable", lambda exc: f"unreachable: {exc}")
    return mode.resolve_namespace(stop or threading.Event(), **kwargs)


def test_installs_a_missing_crd_and_reads_the_namespace(tmp_path: Path) -> None:
    cluster = FakeCluster(app_crd=False)
    mode = app_mode(tmp_path, cluster)
    found: list[str | None] = []
    waiter = threading.Thread(target=lambda: found.append(resolve(mode)), daemon=True)
    waiter.start()
    wait_for(lambda: cluster.app_crd, timeout=WAIT_S, message="the CRD installed")
    assert [c["metadata"]["name"] for c in cluster.created_crds] == [APP_CRD_NAME]
    cluster.client_create_app(namespace="from-the-app")
    waiter.join(timeout=WAIT_S)
    assert found == ["from-the-app"] and mode.namespace == "from-the-app"


def test_an_existing_crd_is_never_replaced(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.client_create_app(namespace=None)
    assert resolve(app_mode(tmp_path, cluster)) == "default"
    assert cluster.calls_of("create_crd") == []


def test_skip_crd_install_never_writes_the_crd(tmp_path: Path) -> None:
    cluster = FakeCluster(app_crd=False)
    stop = threading.Event()
    mode = app_mode(tmp_path, cluster, install_crd=False)
    found: list[str | None] = []
    waiter = threading.Thread(target=lambda: found.append(resolve(mode, stop)), daemon=True)
    waiter.start()
    wait_for(lambda: len(cluster.calls_of("get_app")) >= 1, timeout=WAIT_S, message="a first read")
    stop.set()
    waiter.join(timeout=WAIT_S)
    assert found == [None]  # a signal while waiting
    assert cluster.calls_of("crd_installed") == [] and not cluster.app_crd


def test_a_fatal_answer_ends_the_start(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.fail_next("get_app", KubeForbidden(403, "forbidden"))

    def fatal(exc: BaseException) -> None:
        raise SystemExit(f"dockmirror: {exc}")

    with pytest.raises(SystemExit, match="forbidden"):
        resolve(app_mode(tmp_path, cluster), fatal=fatal)


def test_an_unreachable_apiserver_ends_the_start_after_the_timeout(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.fail_next("get_app", KubeUnavailable(503, "down"), times=100)
    with pytest.raises(SystemExit, match="unreachable: 503"):
        resolve(app_mode(tmp_path, cluster), timeout=0.0)
