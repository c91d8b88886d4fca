"""Issue 3 acceptance: 200 existing containers are mirrored, then followed live, and
``scripts/trace --container <prefix> --follow`` shows that container's messages live."""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.devenv import REPO_ROOT
from tests.support.wait import wait_for

EXISTING = 200


# 200 creates, a service start and a 120 s mirroring deadline: more than the suite's 120 s.
@pytest.mark.timeout(420)
def test_mirrors_200_existing_containers_then_follows(service_factory, run_container):
    # Create the containers before the service starts ("existing"): created, not
    # running, is what most of a desktop's containers are; a few run.
    with ThreadPoolExecutor(max_workers=8) as pool:
        created = list(pool.map(lambda i: run_container(create_only=True), range(EXISTING - 10)))
        running = list(pool.map(lambda i: run_container(), range(10)))
    ids = {c.id for c in created} | {c.id for c in running}
    svc = service_factory(extra_args=("--idle-timeout", "2"))

    def mirrored():
        names = {m["metadata"]["name"]: m for m in svc.mirrors()}
        return ids <= names.keys() and all(
            names[i].get("status", {}).get("status") in ("created", "running") for i in ids
        )

    wait_for(mirrored, timeout=120, interval=0.5, message=f"{EXISTING} mirrors")

    # Then follow one container live through the trace viewer.
    target = running[0]
    follower = subprocess.Popen(
        [
            str(REPO_ROOT / "scripts" / "trace"),
            "--file",
            str(svc.trace_file),
            "--container",
            target.id[:12],
            "--follow",
            "--limit",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        selector = selectors.DefaultSelector()
        selector.register(follower.stdout, selectors.EVENT_READ)
        # --limit 1 prints the newest existing line first: once it is out, the viewer
        # is reading, and the pause below can only appear as a live line.
        if not selector.select(timeout=30):
            follower.terminate()
            raise AssertionError(
                f"trace --follow printed nothing for {target.id[:12]} in {svc.trace_file}: "
                f"exit {follower.wait(timeout=10)}, stderr {follower.stderr.read()!r}"
            )
        seen: list[str] = [follower.stdout.readline()]
        target.pause()
        deadline = time.monotonic() + 30
        while not any(
            "docker_event action=pause" in line and target.id[:12] in line for line in seen
        ):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"trace --follow did not show the pause; saw: {seen[-10:]}"
            if selector.select(timeout=remaining):
                line = follower.stdout.readline()
                assert line, f"trace exited: {follower.stderr.read()}"
                seen.append(line)
        svc.wait_status(target.id, "paused")
    finally:
        follower.terminate()
        follower.wait(timeout=10)
