"""``actors.runtime.actions``: the dispatch table against FakeDocker, and its helpers.

Contract: docs/contract.md §4.4.
"""

from __future__ import annotations

import secrets

import pytest

from actors.domain.names import ACTION_ANNOTATION, DISPATCH_ANNOTATION
from actors.ports.docker_port import DockerUnavailable
from actors.runtime.actions import (
    DispatchRecord,
    ReplayVerdict,
    annotation_write_time,
    dispatch,
    dispatch_record_of,
    encode_dispatch_record,
    has_dispatch_record,
    is_valid_action,
    judge_restart_replay,
    last_action,
)
from tests.fakes.docker import FakeDocker

STATES = ("running", "paused", "exited", "created", "missing")
MUTATING = ("start", "stop", "pause", "unpause", "restart")


def _container(docker: FakeDocker, state: str) -> str:
    if state == "missing":
        return secrets.token_hex(32)
    cid = docker.create("c-" + state, running=state != "created")
    if state == "paused":
        docker.docker_pause_direct(cid)
    elif state == "exited":
        docker.docker_stop_direct(cid)
    return cid


def _no_such(cid: str) -> str:
    return f"Error response from daemon: No such container: {cid}"


# (action, state) -> (error text or None, final Docker state, Docker mutating call made)
# The error is a callable of the container ID.
EXPECTED = {
    ("start", "running"): (None, "running", True),  # 304
    ("start", "paused"): (
        lambda c: (
            "Error response from daemon: cannot start a paused container, try unpause instead"
        ),
        "paused",
        True,
    ),
    ("start", "exited"): (None, "running", True),
    ("start", "created"): (None, "running", True),
    ("start", "missing"): (_no_such, None, False),  # the inspect first fails
    ("stop", "running"): (None, "exited", True),
    ("stop", "paused"): (None, "exited", True),
    ("stop", "exited"): (None, "exited", True),  # 304
    ("stop", "created"): (None, "created", True),  # 304
    ("stop", "missing"): (_no_such, None, False),  # the inspect first fails
    ("pause", "running"): (None, "paused", True),
    ("pause", "paused"): (None, "paused", False),  # pre-check: no Docker call
    ("pause", "exited"): (
        lambda c: f"Error response from daemon: Container {c} is not running",
        "exited",
        True,
    ),
    ("pause", "created"): (
        lambda c: f"Error response from daemon: Container {c} is not running",
        "created",
        True,
    ),
    ("pause", "missing"): (_no_such, None, False),  # the pre-check inspect fails
    ("unpause", "running"): (None, "running", False),  # pre-check: no Docker call
    ("unpause", "paused"): (None, "running", True),
    ("unpause", "exited"): (
        lambda c: f"cannot unpause container {c}: not running",
        "exited",
        False,
    ),
    ("unpause", "created"): (
        lambda c: f"cannot unpause container {c}: not running",
        "created",
        False,
    ),
    ("unpause", "missing"): (_no_such, None, False),
    ("restart", "running"): (None, "running", True),
    ("restart", "paused"): (None, "running", True),
    ("restart", "exited"): (None, "running", True),
    ("restart", "created"): (None, "running", True),
    ("restart", "missing"): (_no_such, None, False),  # the inspect first fails
}


def test_a_container_named_like_the_id_is_never_acted_on():
    """Docker resolves an exact name after an exact ID: the answer's Id must match."""
    docker = FakeDocker()
    ghost_id = secrets.token_hex(32)  # the hand-made Container's name; no such ID
    victim = docker.create(ghost_id, running=True)  # a real container *named* like it
    for action in MUTATING:
        docker.calls.clear()
        assert dispatch(docker, action, ghost_id) == _no_such(ghost_id)
        assert {op for op, _ in docker.calls} == {"inspect"}, docker.calls
    assert docker.state_of(victim) == "running"


def test_stop_and_restart_pass_the_containers_stop_timeout():
    calls = []

    class Recording(FakeDocker):
        def stop(self, container_id, *, stop_timeout_s=None):
            calls.append(("stop", stop_timeout_s))
            super().stop(container_id, stop_timeout_s=stop_timeout_s)

        def restart(self, container_id, *, stop_timeout_s=None):
            calls.append(("restart", stop_timeout_s))
            super().restart(container_id, stop_timeout_s=stop_timeout_s)

    docker = Recording()
    cid = docker.create("c", running=True)
    dispatch(docker, "stop", cid)
    dispatch(docker, "restart", cid, inspect={**docker.inspect(cid), "Config": {"StopTimeout": 42}})
    assert calls == [("stop", None), ("restart", 42)]


def test_table_is_total():
    assert set(EXPECTED) == {(a, s) for a in MUTATING for s in STATES}


@pytest.mark.parametrize(("action", "state"), sorted(EXPECTED))
def test_dispatch_table(action: str, state: str):
    docker = FakeDocker()
    cid = _container(docker, state)
    started_before = docker.inspect(cid)["State"]["StartedAt"] if state != "missing" else None
    docker.calls.clear()

    error = dispatch(docker, action, cid)

    want_error, want_state, want_call = EXPECTED[(action, state)]
    assert error == (want_error(cid) if want_error else None)
    assert docker.state_of(cid) == want_state
    assert (docker.calls_of(action) == [cid]) is want_call, docker.calls
    # Pre-checks only ever inspect; nothing else is called.
    assert {op for op, _ in docker.calls} <= {action, "inspect"}
    if action == "restart" and state == "running":
        assert docker.inspect(cid)["State"]["StartedAt"] > started_before


def test_pause_on_exited_error_contains_is_not_running():
    docker = FakeDocker()
    cid = _container(docker, "exited")
    assert "is not running" in (dispatch(docker, "pause", cid) or "")
    assert "not running" in (dispatch(docker, "unpause", cid) or "")


@pytest.mark.parametrize("action", MUTATING)
def test_docker_unavailable_propagates(action: str):
    docker = FakeDocker()
    cid = docker.create("web")
    docker.unavailable = True
    with pytest.raises(DockerUnavailable):
        dispatch(docker, action, cid)


def test_is_valid_action_is_case_sensitive():
    assert all(is_valid_action(a) for a in MUTATING)
    for bad in ("", "Start", "kill", None, " stop"):
        assert not is_valid_action(bad)


def test_last_action_record():
    ok = last_action("stop", None, "2025-01-01T00:00:00Z", "2025-01-01T00:00:01Z")
    assert ok == {
        "action": "stop",
        "state": "Succeeded",
        "observedAt": "2025-01-01T00:00:00Z",
        "completedAt": "2025-01-01T00:00:01Z",
        "error": None,  # nulls a previous error in the merge patch
    }
    failed = last_action("pause", "boom", "a", "b")
    assert failed["state"] == "Failed" and failed["error"] == "boom"


def _with_annotation_time(at: str) -> dict:
    return {
        "metadata": {
            "managedFields": [
                {"manager": "other", "time": "2030-01-01T00:00:00Z", "fieldsV1": {}},
                {
                    "manager": "kubectl-annotate",
                    "time": at,
                    "fieldsV1": {"f:metadata": {"f:annotations": {f"f:{ACTION_ANNOTATION}": {}}}},
                },
            ]
        }
    }


def test_annotation_write_time_reads_the_owning_manager_only():
    assert annotation_write_time(_with_annotation_time("2025-05-05T05:05:05Z")) == (
        "2025-05-05T05:05:05Z"
    )
    assert annotation_write_time({"metadata": {}}) == ""


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


DISPATCH_NS = 1_750_000_000 * 10**9 + 500_000_000  # 2025-06-15T15:06:40.5Z (host clock)
STAMP = "2025-06-15T15:06:40Z"  # the apiserver's stamp of the annotation write


def _record(started: str = "S0", *, dispatch_ns: int = DISPATCH_NS, stamp: str = STAMP):
    """``dispatch_ns`` is the dispatching host's clock: it is not even stored any more,
    which is the point of the tests below (no verdict may depend on it)."""
    del dispatch_ns
    return DispatchRecord(started_at=started, annotation_time=stamp)


# The host clock at dispatch may disagree with the apiserver's by seconds (skew) or
# jump by an hour: the verdict depends only on the apiserver's stamps.
SKEWS_S = (-3600, -5, -1, 0, 1, 5, 3600)


@pytest.mark.parametrize("skew_s", SKEWS_S)
@pytest.mark.parametrize("later_s", (1, 5, 60))
def test_judge_rewritten_annotation_is_a_new_request_whatever_the_clocks(skew_s, later_s):
    clock = _Clock()
    rewritten = f"2025-06-15T15:{6 + later_s // 60:02d}:{(40 + later_s) % 60:02d}Z"
    verdict = judge_restart_replay(
        _record(dispatch_ns=DISPATCH_NS + skew_s * 10**9),
        _with_annotation_time(rewritten),
        lambda: pytest.fail("a new request needs no inspect"),
        settle_s=5,
        clock=clock,
        wait=clock.wait,
    )
    assert verdict is ReplayVerdict.NEW_REQUEST


@pytest.mark.parametrize("skew_s", SKEWS_S)
def test_judge_same_stamp_is_a_replay_whatever_the_clocks(skew_s):
    clock = _Clock()
    answers = iter(["S0", "S0", "S1"])
    verdict = judge_restart_replay(
        _record(dispatch_ns=DISPATCH_NS + skew_s * 10**9),
        _with_annotation_time(STAMP),
        lambda: {"State": {"StartedAt": next(answers)}},
        settle_s=5,
        clock=clock,
        wait=clock.wait,
    )
    assert verdict is ReplayVerdict.ALREADY_DONE
    assert len(clock.waits) == 2


def test_judge_record_without_stamp_is_a_replay():
    clock = _Clock()
    verdict = judge_restart_replay(
        _record(stamp=""),
        _with_annotation_time("2030-01-01T00:00:00Z"),
        lambda: {"State": {"StartedAt": "S1"}},
        settle_s=5,
        clock=clock,
        wait=clock.wait,
    )
    assert verdict is ReplayVerdict.ALREADY_DONE


def test_judge_run_again_after_settle_time():
    clock = _Clock()
    verdict = judge_restart_replay(
        _record(),
        _with_annotation_time(STAMP),
        lambda: {"State": {"StartedAt": "S0"}},
        settle_s=1.0,
        clock=clock,
        wait=clock.wait,
    )
    assert verdict is ReplayVerdict.RUN_AGAIN
    assert clock.now >= 1.0


def test_dispatch_record_round_trip_and_garbage():
    record = DispatchRecord(started_at="S0", annotation_time=STAMP)
    text = encode_dispatch_record(record)
    assert text == '{"startedAt":"S0","annotationTime":"2025-06-15T15:06:40Z"}'
    obj = {"metadata": {"annotations": {DISPATCH_ANNOTATION: text}}}
    assert dispatch_record_of(obj) == record and has_dispatch_record(obj)
    garbage = {"metadata": {"annotations": {DISPATCH_ANNOTATION: "{"}}}
    assert dispatch_record_of(garbage) is None and has_dispatch_record(garbage)
    assert dispatch_record_of({"metadata": {}}) is None
    assert not has_dispatch_record({"metadata": {"annotations": None}})
