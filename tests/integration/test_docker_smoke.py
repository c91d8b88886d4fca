"""Smoke tests: the devenv Docker engine runs busybox:local and reports lifecycle events."""

from __future__ import annotations

import time

import docker
import pytest

from tests.support.wait import wait_for

pytestmark = pytest.mark.integration


def test_busybox_shell_features(run_container) -> None:
    c = run_container(["sh", "-c", "trap 'exit 0' TERM; sleep 0.1; true && echo ok"])
    result = c.wait(timeout=30)
    assert result["StatusCode"] == 0
    assert c.logs().decode().strip() == "ok"
    assert c.attrs["HostConfig"]["NetworkMode"] == "none"


def test_lifecycle_events(docker_client: docker.DockerClient, run_container) -> None:
    since = int(time.time()) - 1
    c = run_container()
    wait_for(lambda: (c.reload() or c.status) == "running", timeout=10, message="running")
    c.pause()
    c.reload()
    assert c.status == "paused"
    c.unpause()
    c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(c.id)

    wanted = {"create", "start", "pause", "unpause", "die", "destroy"}

    def seen() -> set[str]:
        evs = docker_client.events(
            since=since,
            until=int(time.time()) + 1,
            filters={"container": c.id},
            decode=True,
        )
        actions = {e.get("Action") or e.get("status") for e in evs}
        return actions if wanted <= actions else set()

    wait_for(seen, timeout=15, interval=0.5, message=f"docker events {sorted(wanted)}")


def test_containers_labelled_for_cleanup(docker_client: docker.DockerClient, run_container) -> None:
    c = run_container(create_only=True)
    assert c.labels["dockmirror.test"] == run_container.test_id
    found = docker_client.containers.list(
        all=True, ignore_removed=True, filters={"label": run_container.label}
    )
    assert [x.id for x in found] == [c.id]
