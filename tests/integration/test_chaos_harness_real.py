"""The chaos harness's own machinery against the real devenv (issue 10, point 10).

Unit tests (tests/unit/test_chaos_*.py) check the invariant logic on constructed
observations; these check the two assumptions that only the real apiserver and service
can confirm: the outcome watch sees every ``lastAction`` even when one replaces the
next within milliseconds, and a small strict campaign against the correct service
passes every invariant (the self-test's control run).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from actors.domain.names import CONTAINERS, GROUP, VERSION
from scripts.chaoslib.harness import Env, OutcomeWatch
from scripts.chaoslib.selftest import BUDGET, probe
from tests.support.devenv import Devenv
from tests.support.wait import wait_for


@pytest.fixture
def chaos_env(devenv: Devenv) -> Iterator[Env]:
    env = Env()
    try:
        yield env
    finally:
        env.cleanup()


def test_outcome_watch_sees_back_to_back_last_action_writes(chaos_env: Env) -> None:
    env = chaos_env
    cid = env.container("watch-probe")
    svc = env.service("watch-probe")
    svc.start()
    svc.wait_status(cid, "running")
    records = [
        {"action": action, "state": "Succeeded", "observedAt": at, "completedAt": at}
        for action, at in (
            ("pause", "2026-01-01T00:00:01Z"),
            ("unpause", "2026-01-01T00:00:02Z"),
            ("stop", "2026-01-01T00:00:03Z"),
        )
    ]
    with OutcomeWatch(env) as watch:
        for la in records:  # no pause between the writes: a 0.2 s poll would miss some
            env.api.patch_namespaced_custom_object_status(
                GROUP, VERSION, env.namespace, CONTAINERS, cid, {"status": {"lastAction": la}}
            )
        final = env.mirrors()
        assert watch.caught_up(final)
        seen = wait_for(
            lambda: (lambda r: r if len(r) >= 3 else None)(watch.snapshot()[0].get(cid, [])),
            timeout=10,
            message="three outcome records",
        )
    assert [r.last_action["action"] for r in seen] == ["pause", "unpause", "stop"]
    assert [r.rv for r in seen] == sorted({r.rv for r in seen})


def test_small_strict_campaign_passes_against_the_correct_service(chaos_env: Env) -> None:
    result, fired = probe(chaos_env, random.Random(10), None)
    assert not fired
    assert result.ok, result.failures
    assert result.figures["completed"] >= BUDGET
    assert result.figures["lost"] == 0 and result.figures["stuck"] == 0
    assert (
        result.figures["requested"] == result.figures["completed"] + result.figures["overwritten"]
    )
    assert not [e for svc in chaos_env.services for e in svc.unexpected_exits()]
