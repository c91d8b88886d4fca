"""The fence: after a loss of leadership no actor makes another Docker or Kubernetes call."""

from __future__ import annotations

import pykka
import pytest

from actors.runtime import fence
from messages.inbound import StepFailed, SyncContainer
from tests.unit._helpers import Env, barrier, wait_for


@pytest.fixture(autouse=True)
def _cleanup():
    yield
    fence.lower_fence()
    pykka.ActorRegistry.stop_all()


def test_fenced_actor_calls_nothing_and_keeps_the_request(tmp_path):
    env = Env(tmp_path)
    cid = env.docker.create("web")
    ref = env.start_actor(cid)
    ref.tell(SyncContainer(reason="test"))
    barrier(ref)
    env.store.client_annotate(cid, "restart")
    env.docker.calls.clear()
    writes_before = len(env.store.calls_of("patch_metadata"))
    fence.raise_fence()
    env.observe(ref, cid)
    failed = wait_for(lambda: env.reports.of(StepFailed), timeout=5, message="StepFailed")
    assert "Fenced" in failed[0].error and failed[0].retryable
    assert env.docker.calls == []
    assert len(env.store.calls_of("patch_metadata")) == writes_before
    assert env.annotation(cid) == "restart"  # left for the new leader
    assert ref.is_alive()


def test_fence_check():
    fence.check()
    fence.raise_fence()
    assert fence.is_fenced()
    with pytest.raises(fence.Fenced):
        fence.check()
    fence.lower_fence()
    fence.check()
