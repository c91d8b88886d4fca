"""The chaos harness's racer, exit tracking, campaign wrapper and self-test verdicts,
driven by small fakes (no devenv). The invariant functions themselves are in
test_chaos_invariants.py."""

from __future__ import annotations

import copy
import random
import threading
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
import urllib3
from kubernetes.client.rest import ApiException

from actors import faults
from scripts.chaos import run_campaign
from scripts.chaoslib.harness import ACTION, REQUEST_ID, Driver, Exit, RacerErrors
from scripts.chaoslib.invariants import Result
from scripts.chaoslib.selftest import self_test

CID = "c" * 64


class FakeApi:
    """The part of CustomObjectsApi the racer uses, with the apiserver's semantics that
    matter here: every write bumps resourceVersion, a merge patch carrying a stale
    ``metadata.resourceVersion`` is a 409, and the answer of a write can be lost after
    it was applied (``lose_response``) or the write refused before (``refuse``)."""

    def __init__(self) -> None:
        self.rv = 100
        self.objs: dict[str, dict[str, Any]] = {
            CID: {"metadata": {"name": CID, "resourceVersion": "100", "annotations": {}}}
        }
        self.patches = 0
        self.script: list[str] = []  # per patch: "ok", "lose_response", "refuse", "race"

    def _bump(self, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def get_namespaced_custom_object(self, group, version, ns, plural, name):
        if name not in self.objs:
            raise ApiException(status=404)
        return copy.deepcopy(self.objs[name])

    def patch_namespaced_custom_object(self, group, version, ns, plural, name, body):
        self.patches += 1
        step = self.script.pop(0) if self.script else "ok"
        obj = self.objs[name]
        if step == "race":  # the service writes status between our read and our patch
            self._bump(obj)
        if step == "refuse":
            raise ApiException(status=500, reason="failed calling webhook")
        meta = body["metadata"]
        if meta.get("resourceVersion") not in (None, obj["metadata"]["resourceVersion"]):
            raise ApiException(status=409, reason="Conflict")
        ann = obj["metadata"]["annotations"]
        for key, value in meta.get("annotations", {}).items():
            if value is None:
                ann.pop(key, None)
            else:
                ann[key] = value
        self._bump(obj)
        if step == "lose_response":
            raise urllib3.exceptions.ProtocolError("connection reset after the write")
        return copy.deepcopy(obj)

    def consume(self, name: str = CID) -> None:
        """What the service does at the end of a request: remove the action annotation."""
        self.objs[name]["metadata"]["annotations"].pop(ACTION, None)
        self._bump(self.objs[name])


@pytest.fixture
def driver() -> Driver:
    env = SimpleNamespace(api=FakeApi(), namespace="ns", docker_states=lambda: {CID: "running"})
    return Driver(env, observer=None, containers=[CID], seed=1)


def test_a_write_into_an_empty_slot_replaces_nothing(driver: Driver) -> None:
    req = driver.write(CID, "stop")
    api = driver.env.api
    ann = api.objs[CID]["metadata"]["annotations"]
    assert ann == {ACTION: "stop", REQUEST_ID: req.request_id}
    assert req.write_rv == api.rv and not req.replaced
    assert driver.initial == {CID: "running"}


def test_a_write_over_a_pending_request_marks_it_replaced(driver: Driver) -> None:
    first = driver.write(CID, "pause")
    second = driver.write(CID, "stop")
    assert first.replaced and not second.replaced
    driver.env.api.consume()
    third = driver.write(CID, "start")  # the slot was empty: stop is not replaced
    assert not second.replaced and not third.replaced
    assert driver.book.requested == 3


def test_a_conflict_rereads_and_writes_once(driver: Driver) -> None:
    driver.env.api.script = ["race", "ok"]
    req = driver.write(CID, "start")
    assert driver.conflicts == 1 and driver.book.requested == 1
    assert driver.env.api.objs[CID]["metadata"]["annotations"][REQUEST_ID] == req.request_id


def test_a_lost_response_is_read_back_not_written_twice(driver: Driver) -> None:
    api = driver.env.api
    api.script = ["lose_response"]
    req = driver.write(CID, "restart")
    assert api.patches == 1  # a second restart request would be a real second restart
    assert driver.book.requested == 1 and driver.write_errors == 1
    assert req.write_rv <= api.rv


def test_a_refused_write_is_retried_until_it_lands(driver: Driver) -> None:
    api = driver.env.api
    api.script = ["refuse", "refuse", "ok"]
    driver.write(CID, "pause")
    assert api.patches == 3 and driver.write_errors == 2 and driver.book.requested == 1


def test_choice_never_repeats_the_excluded_values(driver: Driver) -> None:
    picks = Counter(driver._choose(exclude=("restart", "stop", None)) for _ in range(300))
    assert set(picks) == {"start", "pause", "unpause"}


def test_racer_errors_are_caught_and_classified() -> None:
    racers = RacerErrors()

    def gone() -> None:
        raise ProcessLookupError("no such process")

    def broken() -> None:
        raise KeyError("metadata")

    threads = [racers.guarded("killer", gone, expected=(ProcessLookupError,))]
    threads.append(racers.guarded("worker", broken))
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    got = sorted((e.thread, e.expected) for e in racers.errors)
    assert got == [("killer", True), ("worker", False)]


def test_exit_records() -> None:
    assert Exit(1, -9, killed=True, stopped=False, kill_fault_armed=False).problem() is None
    assert "code 3" in Exit(1, 3, False, False, False).problem()
    slow = Exit(7, -9, killed=False, stopped=True, kill_fault_armed=False, note="did not stop")
    assert slow.problem() == "pid 7: did not stop; exit code -9 after SIGTERM"


class FakeEnv:
    def __init__(self, exits: list[str]) -> None:
        self.services: list[Any] = []
        self.exits = exits
        self.stopped = self.removed = 0

    def stop_services(self) -> None:
        self.stopped += 1

    def remove_containers(self, campaign: str) -> None:
        self.removed += 1

    def add_service(self) -> None:
        self.services.append(SimpleNamespace(unexpected_exits=lambda: list(self.exits)))


def test_run_campaign_adds_exits_and_minimums() -> None:
    env = FakeEnv(["pid 9: exited on its own with code 3"])
    env.add_service()  # an earlier campaign's service is not this campaign's business

    def body() -> Result:
        env.add_service()
        return Result("x", figures={"requested": 5}, minimums={"requested": 10})

    result = run_campaign(env, "x", body)
    assert result.failed_invariants == {"service exit", "minimum counts"}
    assert result.figures["unexpected_exits"] == 1 and env.stopped == 1


def test_run_campaign_turns_a_crash_into_a_failure() -> None:
    env = FakeEnv([])

    def body() -> Result:
        raise RuntimeError("boom")

    result = run_campaign(env, "x", body)
    assert result.failed_invariants == {"campaign crashed"} and env.removed == 1


def test_self_test_passes_only_when_every_bug_is_caught_by_its_invariant() -> None:
    catches = {
        None: set(),
        "double_restart": {"restart count"},
        "drop_last_action": {"request outcome", "identity"},
        "leave_annotation": {"stuck annotation", "driver"},
        "wrong_status": {"status"},
    }

    def run(env: Any, rng: random.Random, bug: str | None) -> tuple[Result, bool]:
        result = Result(bug or "control")
        for inv in catches[bug]:
            result.fail(inv, ["planted"])
        return result, bug is not None

    verdicts = self_test(None, random.Random(0), run)
    assert [v.bug for v in verdicts] == [None, *faults.BUGS]
    assert all(not v.problems for v in verdicts)
    assert "also: identity" in verdicts[2].line

    catches["wrong_status"] = {"lastAction"}  # caught, but not by the status invariant
    verdicts = self_test(None, random.Random(0), run)
    assert [v.bug for v in verdicts if v.problems] == ["wrong_status"]


def test_self_test_reports_an_unwired_hook() -> None:
    def run(env: Any, rng: random.Random, bug: str | None) -> tuple[Result, bool]:
        return Result("x"), False

    verdicts = self_test(None, random.Random(0), run, bugs=("wrong_status",))
    assert "never fired" in verdicts[1].problems[0]


def test_guarded_threads_are_daemons() -> None:
    t = RacerErrors().guarded("x", lambda: None)
    assert isinstance(t, threading.Thread) and t.daemon


def _obj(rv: int, la: dict | None = None, annotations: dict | None = None) -> dict:
    status = {"lastAction": la} if la else {}
    meta = {"name": CID, "resourceVersion": str(rv), "annotations": annotations or {}}
    return {"metadata": meta, "status": status}


def test_outcome_watch_keeps_each_distinct_record_in_order() -> None:
    from scripts.chaoslib.harness import OutcomeWatch

    w = OutcomeWatch(SimpleNamespace())  # no thread: feed it objects as the watch would
    stop = {"action": "stop", "state": "Succeeded"}
    start = {"action": "start", "state": "Succeeded"}
    for rv, la in ((5, None), (6, stop), (7, stop), (8, start), (9, stop)):
        w._see(_obj(rv, la))
    records, gaps = w.snapshot()
    assert [(r.rv, r.last_action["action"]) for r in records[CID]] == [
        (6, "stop"),
        (8, "start"),
        (9, "stop"),
    ]
    assert gaps == []
    assert w.caught_up({CID: _obj(9)}, timeout=0)
    assert not w.caught_up({CID: _obj(10)}, timeout=0)


def test_consumed_needs_the_final_requests_marker_and_no_annotation() -> None:
    from scripts.chaoslib.harness import _consumed

    pending = {CID: _obj(3, annotations={ACTION: "stop", REQUEST_ID: "r2"})}
    done = {CID: _obj(4, annotations={REQUEST_ID: "r2"})}
    assert _consumed(pending, CID, "r2") is None
    assert _consumed(done, CID, "r2") is done[CID]
    assert _consumed(done, CID, "r3") is None  # a later request's consumption is not ours
    assert _consumed({}, CID, "r2") is None


def test_outcome_watch_keeps_the_marker_and_flags_relisted_records() -> None:
    from scripts.chaoslib.harness import OutcomeWatch

    listed = {"metadata": {"resourceVersion": "40"}, "items": []}
    api = SimpleNamespace(list_namespaced_custom_object=lambda *a: listed)
    w = OutcomeWatch(SimpleNamespace(api=api, namespace="ns"))
    stop = {"action": "stop", "state": "Succeeded"}
    unpause = {"action": "unpause", "state": "Failed", "error": "not running"}
    w._see(_obj(6, stop, {ACTION: "stop", REQUEST_ID: "r1"}))
    # 410 Gone: the relist sees a later version (annotation consumed) after a gap.
    listed["items"] = [_obj(38, unpause, {REQUEST_ID: "r3"})]
    w._relist(gap_from=6)
    records, gaps = w.snapshot()
    first, second = records[CID]
    assert (first.marker, first.pending, first.relisted) == ("r1", "stop", False)
    assert (second.rv, second.marker, second.pending, second.relisted) == (38, "r3", None, True)
    assert gaps == [(6, 40)]
    # The initial list (no gap) is not a relist.
    w2 = OutcomeWatch(SimpleNamespace(api=api, namespace="ns"))
    w2._relist(gap_from=None)
    assert w2.snapshot()[0][CID][0].relisted is False and w2.snapshot()[1] == []
