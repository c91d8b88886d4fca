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

from actors.domain.names import ACTION_ANNOTATION
from actors.infra import faults
from scripts.chaos import run_campaign
from scripts.chaoslib import harness
from scripts.chaoslib.harness import REQUEST_ID, Driver, Exit, RacerErrors
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
        self.objs[name]["metadata"]["annotations"].pop(ACTION_ANNOTATION, None)
        self._bump(self.objs[name])


@pytest.fixture
def driver() -> Driver:
    env = SimpleNamespace(api=FakeApi(), namespace="ns", docker_states=lambda: {CID: "running"})
    return Driver(env, observer=None, containers=[CID], seed=1)


def test_a_write_into_an_empty_slot_replaces_nothing(driver: Driver) -> None:
    req = driver.write(CID, "stop")
    api = driver.env.api
    ann = api.objs[CID]["metadata"]["annotations"]
    assert ann == {ACTION_ANNOTATION: "stop", REQUEST_ID: req.request_id}
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


@pytest.fixture
def ticking_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """time.time() that advances one second per call (records the values handed out)."""
    handed: list[float] = []

    def tick() -> float:
        handed.append(1000.0 + len(handed))
        return handed[-1]

    monkeypatch.setattr(harness.time, "time", tick)
    return handed


def test_a_request_keeps_when_its_write_was_sent(driver: Driver, ticking_clock) -> None:
    req = driver.write(CID, "stop")
    assert ticking_clock == [1000.0, 1001.0]  # sent, then answered
    assert (req.sent_at, req.written_at, req.not_before) == (1000.0, 1001.0, 1000.0)


def test_after_a_conflict_the_send_time_is_the_landed_attempts(
    driver: Driver, ticking_clock
) -> None:
    driver.env.api.script = ["race", "ok"]  # the first attempt is a definite 409
    req = driver.write(CID, "start")
    assert ticking_clock == [1000.0, 1001.0, 1002.0]
    assert req.sent_at == 1001.0 and req.written_at == 1002.0


def test_after_a_lost_answer_the_send_time_stays_the_first(driver: Driver, ticking_clock) -> None:
    driver.env.api.script = ["lose_response"]  # applied, answer lost, read back
    req = driver.write(CID, "restart")
    assert req.sent_at == ticking_clock[0] and req.written_at == ticking_clock[-1]


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

    pending = {CID: _obj(3, annotations={ACTION_ANNOTATION: "stop", REQUEST_ID: "r2"})}
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
    w._see(_obj(6, stop, {ACTION_ANNOTATION: "stop", REQUEST_ID: "r1"}))
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


def test_restart_counter_merges_live_and_final_reads_of_the_same_event() -> None:
    from scripts.chaoslib.harness import RestartCounter

    live = {"id": CID, "Actor": {"ID": CID}, "time": 100, "timeNano": 100_000_000_001}
    # Read again at the end; an API without the deprecated "id" names it by Actor.ID.
    again = {"Actor": {"ID": CID}, "time": 100, "timeNano": 100_000_000_001}
    missed = {"Actor": {"ID": CID}, "time": 101, "timeNano": 101_000_000_002}
    other = {"Actor": {"ID": "o" * 64}, "time": 101, "timeNano": 101_000_000_003}
    api = SimpleNamespace(events=lambda **kw: iter([again, missed, other]))
    rc = RestartCounter(SimpleNamespace(label="l", docker=SimpleNamespace(api=api)))
    rc._add(live)
    rc._add(dict(live))  # replayed by a reconnect (since has whole-second precision)
    assert rc.counts({CID}) == Counter({CID: 2})
    assert rc.events_of(CID) == [
        {"timeNano": 100_000_000_001, "source": "live"},
        {"timeNano": 101_000_000_002, "source": "final"},
    ]


def test_harness_views_are_written_per_failing_container_and_named_in_problems(
    tmp_path,
) -> None:
    import json

    from scripts.chaoslib.harness import _problems_of, _with_views, write_harness_views
    from scripts.chaoslib.invariants import OutcomeRecord, Request, harness_view, match_outcomes

    requests = [
        Request(CID, "stop", 10.0, "r0", 10),
        Request(CID, "start", 11.0, "r1", 20, replaced=True),
        Request(CID, "pause", 12.0, "r2", 21),
    ]
    la = {"action": "stop", "state": "Succeeded", "observedAt": "x", "completedAt": "x"}
    records = [OutcomeRecord(11, la, "r0", "stop"), OutcomeRecord(30, la, "r0", None, True)]
    m = match_outcomes(requests, records, gaps=[(25, 30)], strict=False)
    problems = [f"{CID[:12]}: request 3 lost", f"{'d' * 12}: other", "no container"]
    mine = _problems_of(CID, problems[:1], problems[1:])
    assert mine == problems[:1]
    view = harness_view(
        CID,
        requests,
        records,
        [(25, 30)],
        m,
        [{"timeNano": 5, "source": "final"}],
        restarts_succeeded=0,
        restarts_bound=1,
        problems=mine,
    )
    paths = write_harness_views(tmp_path / "engine", {CID: view})
    path = paths[CID]
    assert path == tmp_path / "engine" / f"harness-view-{CID[:12]}.json"
    data = json.loads(path.read_text())
    assert [r["class"] for r in data["requests"]] == ["completed", "overwritten", "unverified"]
    assert data["requests"][1]["replaced"] is True and data["requests"][2]["write_rv"] == 21
    assert [(r["rv"], r["answers"], r["replay"], r["relisted"]) for r in data["records"]] == [
        (11, 1, False, False),
        (30, 1, True, True),
    ]
    assert data["gaps"] == [[25, 30]] and data["problems"] == mine
    assert data["restarts"]["docker_events"] == [{"timeNano": 5, "source": "final"}]
    tagged = _with_views(problems, paths)
    assert tagged[0] == f"{problems[0]} [harness view: {path}]" and tagged[1:] == problems[1:]


def _settle(tmp_path, records, restart_count: int = 0):
    """settle_and_check on fakes: one container, requests of the engine campaign's
    apiserver restart (test_chaos_invariants.APISERVER_RESTART), a relist gap."""
    from scripts.chaoslib.harness import settle_and_check
    from scripts.chaoslib.invariants import Book
    from tests.unit.test_chaos_invariants import APISERVER_RESTART

    book = Book()
    for i, (value, rv, *replaced) in enumerate(APISERVER_RESTART):
        book.record(CID, value, 1_000.0 + i, f"r{i}", rv).replaced = bool(replaced)
    last = records[-1].last_action
    mirror = {
        "metadata": {"name": CID, "resourceVersion": "27486", "annotations": {}},
        "status": {"status": "running", "lastAction": last},
    }
    view = {"status": "running"}
    env = SimpleNamespace(
        workdir=tmp_path,
        mirrors=lambda: {CID: mirror},
        docker_views=lambda ours: {CID: view},
    )
    driver = SimpleNamespace(
        containers=[CID],
        book=book,
        initial={CID: "running"},
        problems=[],
        racers=RacerErrors(),
        write_errors=0,
        conflicts=0,
    )
    restarts = SimpleNamespace(
        counts=lambda ours: Counter({CID: restart_count}) if restart_count else Counter(),
        events_of=lambda cid: [{"timeNano": 1, "source": "live"}] * restart_count,
    )
    outcomes = SimpleNamespace(
        caught_up=lambda mirrors: True, snapshot=lambda: ({CID: records}, [(27126, 27423)])
    )
    result = Result("engine")
    settle_and_check(
        env, result, driver, restarts, outcomes, strict=False, allow_gaps=True, mirror_timeout=0
    )
    return result


def test_settle_passes_the_engine_campaigns_apiserver_restart(tmp_path) -> None:
    from tests.unit.test_chaos_invariants import _apiserver_restart_records

    result = _settle(tmp_path, _apiserver_restart_records(True))
    assert result.ok, result.failures
    assert (result.figures["lost"], result.figures["unverified"]) == (0, 3)
    assert not list(tmp_path.glob("engine/harness-view-*.json"))


def test_settle_writes_the_view_of_a_failing_container_and_names_it(tmp_path) -> None:
    import json

    from tests.unit.test_chaos_invariants import _apiserver_restart_records

    # A real loss (26's outcome never written) and a restart nobody asked for.
    records = [r for r in _apiserver_restart_records(True) if r.rv != 27433]
    result = _settle(tmp_path, records, restart_count=1)
    path = tmp_path / "engine" / f"harness-view-{CID[:12]}.json"
    assert {"request outcome", "restart count"} <= result.failed_invariants
    lost = [f for f in result.failures if f.startswith("request outcome")]
    assert lost and all(f"[harness view: {path}]" in f for f in lost)
    data = json.loads(path.read_text())
    assert data["requests"][6]["class"] == "lost" and data["gaps"] == [[27126, 27423]]
    assert data["restarts"]["docker_events"] == [{"timeNano": 1, "source": "live"}]
    assert len(data["problems"]) == 2
