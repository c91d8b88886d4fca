"""The chaos campaigns' invariant logic (scripts/chaoslib/invariants.py), without a devenv."""

from __future__ import annotations

import calendar
import time
from collections import Counter

from actors.domain.names import ACTION_ANNOTATION
from actors.infra import faults
from scripts.chaoslib.invariants import (
    BUG_INVARIANT,
    Book,
    OutcomeRecord,
    RacerError,
    Request,
    Result,
    docker_view_from_inspect,
    docker_view_from_list,
    exit_problem,
    identity_problems,
    last_action_problems,
    match_outcomes,
    minimum_problems,
    mirror_view,
    model_maybe,
    model_state,
    model_step,
    outcome_problem,
    persistent_mismatches,
    racer_problems,
    restart_problems,
    self_test_problems,
    status_mismatches,
    stuck_annotations,
    stuck_problems,
)

T0 = calendar.timegm((2026, 11, 28, 0, 0, 10, 0, 0, 0))


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def la(action: str, state: str = "Succeeded", error: str | None = None, at: float = T0) -> dict:
    out = {"action": action, "state": state, "observedAt": stamp(at), "completedAt": stamp(at + 1)}
    if error is not None:
        out["error"] = error
    return out


def mirror(status: str, last: dict | None = None, annotation: str | None = None) -> dict:
    meta = {"annotations": {ACTION_ANNOTATION: annotation}} if annotation is not None else {}
    st = {"status": status}
    if last is not None:
        st["lastAction"] = last
    return {"metadata": meta, "status": st}


def test_stuck_annotations_lists_only_annotated_mirrors() -> None:
    mirrors = {"a" * 64: mirror("running", annotation="stop"), "b" * 64: mirror("running")}
    assert stuck_annotations(mirrors) == [f"{'a' * 12}: annotation 'stop' never consumed"]
    assert stuck_annotations(mirrors, exclude={"a" * 64}) == []


def test_outcome_must_be_of_the_last_request_value() -> None:
    req = Request("c", "unpause", T0)
    assert outcome_problem(req, la("unpause"), "running", strict=True) is None
    assert "last request was 'unpause'" in outcome_problem(req, la("pause"), "paused", strict=False)
    assert "no lastAction" in outcome_problem(req, None, "running", strict=False)


def test_stale_outcome_older_than_the_request_is_rejected() -> None:
    req = Request("c", "stop", T0 + 5.7)
    assert "stale outcome" in outcome_problem(req, la("stop", at=T0), "exited", strict=False)
    # Same second (and one second of slack for truncation) is fine.
    assert outcome_problem(req, la("stop", at=T0 + 4), "exited", strict=False) is None


def test_stale_is_judged_against_when_the_write_was_sent_not_answered() -> None:
    # Full run ab26819f (soak, machine under heavy load): the write was sent at T0, the
    # service observed it at T0 + 1 and completed it, and only at T0 + 3 did the PATCH's
    # answer reach the racer. The outcome is the request's own, not a stale one.
    req = Request("c", "unpause", T0 + 3.2, sent_at=T0 + 0.4)
    assert req.not_before == T0 + 0.4
    assert outcome_problem(req, la("unpause", at=T0 + 1), "running", strict=False) is None
    # Before the write was even sent (beyond the 1 s of truncation slack): stale.
    why = outcome_problem(req, la("unpause", at=T0 - 2), "running", strict=False)
    assert why is not None and "stale outcome" in why
    # Without a send time the answer's time is the bound, as before.
    assert Request("c", "stop", T0 + 5.7).not_before == T0 + 5.7


def test_state_and_error_must_agree() -> None:
    req = Request("c", "pause", T0)
    assert "with error" in outcome_problem(req, la("pause", "Failed"), "exited", strict=False)
    assert "with error" in outcome_problem(req, la("pause", error="x"), "paused", strict=False)


def test_strict_outcome_checks_docker_state_and_error_text() -> None:
    req = Request("c", "pause", T0)
    failed = la("pause", "Failed", "Container c is not running")
    assert outcome_problem(req, failed, "exited", strict=True) is None
    assert "Docker says 'running'" in outcome_problem(req, failed, "running", strict=True)
    # Not strict (racing campaigns): Docker may have moved on after the action.
    assert outcome_problem(req, failed, "running", strict=False) is None
    odd = la("pause", "Failed", "boom")
    assert "lacks 'is not running'" in outcome_problem(req, odd, "exited", strict=True)
    assert "not an expected outcome" in outcome_problem(
        Request("c", "stop", T0), la("stop", "Failed", "x"), "exited", strict=True
    )


def test_last_action_problems_uses_only_the_last_write_single_slot() -> None:
    book = Book()
    cid = "c" * 64
    book.record(cid, "pause", T0)
    book.record(cid, "unpause", T0)  # overwrote pause before it ran: only unpause counts
    mirrors = {cid: mirror("running", la("unpause"))}
    assert last_action_problems(book, mirrors, {cid: "running"}, strict=True) == []
    mirrors = {cid: mirror("paused", la("pause"))}
    assert last_action_problems(book, mirrors, {cid: "paused"}, strict=True)
    assert "mirror missing" in last_action_problems(book, {}, {}, strict=False)[0]


def test_status_mismatches_both_directions() -> None:
    docker = {"a": "running", "b": "exited"}
    mirrors = {"a": "running", "b": "running", "z": "exited"}
    found = status_mismatches(docker, mirrors)
    assert set(found) == {"b", "z"}
    assert "has no Docker container" in found["z"]
    assert "has no mirror" in status_mismatches({"q": "created"}, {})["q"]


def test_persistent_mismatches_ignore_transients_and_changing_docker_state() -> None:
    snaps = [
        ({"a": "running", "o": "created"}, {"a": "exited"}),
        ({"a": "running", "o": "running"}, {"a": "exited"}),  # o still being mirrored
        ({"a": "running"}, {"a": "exited"}),  # o removed meanwhile
    ]
    assert set(persistent_mismatches(snaps)) == {"a"}
    assert persistent_mismatches([]) == {}


def test_restart_counts_flag_doubles_and_missing() -> None:
    problems, doubles, missing = restart_problems(
        Counter({"a" * 64: 2, "b" * 64: 1}), Counter({"a" * 64: 3, "c" * 64: 1})
    )
    assert (doubles, missing) == (2, 1)
    assert len(problems) == 3
    assert restart_problems(Counter({"a": 1}), Counter({"a": 1})) == ([], 0, 0)


def test_a_failed_restart_may_have_run_but_never_twice() -> None:
    # One restart request answered Failed (reported as timed out after the call was
    # made): Docker restarting it once is legal, twice is a double restart.
    assert restart_problems(Counter(), Counter({"a": 1}), Counter({"a": 1})) == ([], 0, 0)
    problems, doubles, _ = restart_problems(Counter(), Counter({"a": 2}), Counter({"a": 1}))
    assert doubles == 1 and "2x for 1" in problems[0]
    # A Succeeded one must have run.
    assert restart_problems(Counter({"a": 1}), Counter(), Counter({"a": 1}))[2] == 1


def test_match_counts_answered_and_succeeded_restarts() -> None:
    m = match_outcomes(
        reqs(("restart", 10), ("stop", 20), ("restart", 30)),
        [rec(11, "restart", "Failed", "timeout"), rec(21, "stop"), rec(31, "restart")],
        strict=False,
    )
    assert (m.restarts_answered, m.restarts_succeeded) == (2, 1)


def test_result_summary_and_failure_cap() -> None:
    r = Result("sigkill", figures={"kills": 3, "stuck": 0})
    assert r.ok and "PASS" in r.summary_line() and "kills=3" in r.summary_line()
    r.fail("status", [f"p{i}" for i in range(25)], limit=20)
    assert not r.ok and len(r.failures) == 21 and "5 more" in r.failures[-1]
    assert r.as_json()["ok"] is False


# --- every request, strictly -------------------------------------------------------------
def reqs(*specs: tuple[str, int] | tuple[str, int, bool]) -> list[Request]:
    """(value, write_rv[, replaced]) -> requests written one second apart."""
    out = []
    for i, spec in enumerate(specs):
        value, rv, *rest = spec
        out.append(Request("c" * 64, value, T0 + i, f"r{i}", rv, bool(rest and rest[0])))
    return out


def rec(rv: int, action: str, state: str = "Succeeded", error: str | None = None, at=T0 + 10):
    return OutcomeRecord(rv, la(action, state, error, at=at))


def test_every_request_answered_in_order_is_completed() -> None:
    m = match_outcomes(
        reqs(("start", 10), ("pause", 20), ("stop", 30)),
        [rec(11, "start"), rec(21, "pause"), rec(31, "stop")],
        initial_state="stopped",
        final_docker_state="exited",
        strict=True,
    )
    assert (m.completed, m.overwritten, m.lost, m.problems) == ([0, 1, 2], [], [], [])


def test_a_dropped_outcome_is_lost_even_when_the_last_request_is_fine() -> None:
    # drop_last_action: pause's annotation was removed without a record; the harness
    # then wrote stop. Checking only the last request would pass.
    m = match_outcomes(
        reqs(("start", 10), ("pause", 20), ("stop", 30)),
        [rec(11, "start"), rec(31, "stop")],
        strict=False,
    )
    assert m.lost == [1] and "lost" in m.problems[0]


def test_replaced_request_without_record_is_overwritten_with_record_completed() -> None:
    requests = reqs(("pause", 10, True), ("stop", 12), ("start", 20))
    m = match_outcomes(requests, [rec(13, "stop"), rec(21, "start")], strict=False)
    assert (m.completed, m.overwritten, m.lost) == ([1, 2], [0], [])
    # Dispatched before the overwrite (spec 4.6 "concurrent rewrite"): pause has its own
    # record, written after stop's write; it is completed, not overwritten.
    m = match_outcomes(
        requests, [rec(13, "pause"), rec(14, "stop"), rec(21, "start")], strict=False
    )
    assert (m.completed, m.overwritten, m.lost, m.problems) == ([0, 1, 2], [], [], [])


def test_records_before_the_write_or_for_no_request_are_problems() -> None:
    m = match_outcomes(reqs(("stop", 10)), [rec(5, "stop")], strict=False)
    assert m.lost == [0] and any("answers no request" in p for p in m.problems)
    m = match_outcomes(reqs(("stop", 10)), [rec(11, "stop"), rec(12, "restart")], strict=False)
    assert m.completed == [0] and any("answers no request" in p for p in m.problems)


def test_replay_records_of_the_same_request_are_allowed() -> None:
    m = match_outcomes(
        reqs(("restart", 10), ("pause", 20)),
        [rec(11, "restart"), rec(13, "restart", at=T0 + 12), rec(21, "pause")],
        strict=False,
    )
    assert (m.completed, m.replays, m.restarts_succeeded, m.problems) == ([0, 1], 1, 1, [])


def test_each_record_is_checked_not_only_the_last() -> None:
    # The middle record is older than its request: a stale outcome.
    stale = OutcomeRecord(21, la("pause", at=T0 - 30))
    m = match_outcomes(
        reqs(("start", 10), ("pause", 20), ("stop", 30)),
        [rec(11, "start"), stale, rec(31, "stop")],
        strict=False,
    )
    assert any("request 2" in p and "stale outcome" in p for p in m.problems)


def test_strict_model_checks_every_outcome_against_the_possible_states() -> None:
    # From stopped, "pause" must fail with "is not running"; Succeeded is impossible.
    m = match_outcomes(
        reqs(("pause", 10), ("start", 20)),
        [rec(11, "pause"), rec(21, "start")],
        initial_state="stopped",
        final_docker_state="running",
        strict=True,
    )
    assert any("request 1: pause/Succeeded" in p for p in m.problems)
    ok = match_outcomes(
        reqs(("pause", 10), ("start", 20)),
        [rec(11, "pause", "Failed", "Container x is not running"), rec(21, "start")],
        initial_state="stopped",
        final_docker_state="running",
        strict=True,
    )
    assert ok.problems == []
    # Non-strict campaigns (Docker changed by others) do not apply the model.
    assert (
        match_outcomes(
            reqs(("pause", 10)), [rec(11, "pause")], initial_state="stopped", strict=False
        ).problems
        == []
    )


def test_strict_model_allows_an_overwritten_request_to_have_run_or_not() -> None:
    # pause overwritten by start: if pause ran, start fails on the paused container.
    requests = reqs(("pause", 10, True), ("start", 12))
    for record in (
        rec(13, "start"),
        rec(13, "start", "Failed", "cannot start a paused container, try unpause instead"),
    ):
        m = match_outcomes(
            requests, [record], initial_state="running", final_docker_state=None, strict=True
        )
        assert m.problems == [] and m.overwritten == [0]


def test_strict_model_lets_a_replaced_request_land_after_the_next_one() -> None:
    # stop dispatched, service SIGKILLed, the daemon keeps stopping; start (which
    # replaced it) gets a 304 on the still running container, then the stop completes.
    # pause then fails on the stopped container: legal. Two requests later: not.
    requests = reqs(("stop", 10, True), ("start", 12), ("pause", 20), ("unpause", 30))
    records = [
        rec(13, "start"),
        rec(21, "pause", "Failed", "Container x is not running"),
        rec(31, "unpause", "Failed", "cannot unpause container x: not running"),
    ]
    m = match_outcomes(
        requests, records, initial_state="running", final_docker_state="exited", strict=True
    )
    assert m.problems == []
    late = reqs(("stop", 10, True), ("start", 12), ("unpause", 20), ("pause", 30))
    records = [
        rec(13, "start"),
        rec(21, "unpause"),
        rec(31, "pause", "Failed", "Container x is not running"),
    ]
    m = match_outcomes(
        late, records, initial_state="running", final_docker_state="exited", strict=True
    )
    assert any("request 4: pause/Failed" in p for p in m.problems)


def test_strict_model_checks_the_final_docker_state() -> None:
    m = match_outcomes(
        reqs(("stop", 10)),
        [rec(11, "stop")],
        initial_state="running",
        final_docker_state="running",
        strict=True,
    )
    assert any("Docker ends 'running'" in p for p in m.problems)


def test_a_watch_gap_makes_a_missing_outcome_unverified_not_lost() -> None:
    requests = reqs(("start", 10), ("stop", 20))
    m = match_outcomes(requests, [rec(21, "stop")], gaps=[(12, 18)], strict=True)
    assert (m.unverified, m.lost) == ([0], [])
    m = match_outcomes(requests, [rec(21, "stop")], gaps=[(25, 30)], strict=False)
    assert m.lost == [0]


# Engine campaign 9a5c9203, container 105d210e696d, requests 20-27 as the journal shows
# them (value, write rv, replaced): the apiserver restarted, the harness's watch had seen
# up to rv 27126 and relisted at 27423 (410 Gone). The relist carried request 25's
# unpause/Failed; the watch then saw request 26's pause/Failed at 27433 and 27's start.
APISERVER_RESTART = (
    ("start", 27097),
    ("stop", 27146, True),  # replaced by 22 while in flight (it still got stop/Succeeded)
    ("unpause", 27169),
    ("pause", 27329),  # its pause/Failed (27357), 24's stop and 22's record: in the gap
    ("stop", 27396),
    ("unpause", 27421),
    ("pause", 27432),
    ("start", 27441),
)
NOT_RUNNING = "Container x is not running"


def _apiserver_restart_records(markers: bool) -> list[OutcomeRecord]:
    def mk(i: int) -> str:
        return f"r{i}" if markers else ""

    return [
        OutcomeRecord(27126, la("start"), mk(0), "start"),
        OutcomeRecord(27423, la("unpause", "Failed", "not running", T0 + 20), mk(5), None, True),
        OutcomeRecord(27433, la("pause", "Failed", NOT_RUNNING, T0 + 21), mk(6), "pause"),
        OutcomeRecord(27465, la("start", at=T0 + 22), mk(7), "start"),
    ]


def test_records_after_a_watch_gap_answer_their_own_requests() -> None:
    # The first-candidate rule gave the relisted unpause to request 22 and 26's pause to
    # request 23 (both of their records were in the gap) and reported 26 as lost.
    m = match_outcomes(
        reqs(*APISERVER_RESTART),
        _apiserver_restart_records(True),
        gaps=[(27126, 27423)],
        strict=False,
    )
    assert (m.completed, m.overwritten, m.unverified, m.lost) == ([0, 5, 6, 7], [1], [2, 3, 4], [])
    assert m.problems == [] and m.replays == 0


def test_without_markers_the_next_write_bounds_a_watched_record() -> None:
    # Records of an older harness (no marker): 26's pause at 27433 cannot answer 23,
    # which was consumed before 24 was written at 27396.
    m = match_outcomes(
        reqs(*APISERVER_RESTART),
        _apiserver_restart_records(False),
        gaps=[(27126, 27423)],
        strict=False,
    )
    assert m.lost == [] and 6 in m.completed and m.problems == []


def test_a_dropped_outcome_after_a_gap_is_still_lost() -> None:
    # Request 26 consumed without a record (drop_last_action), after the gap: lost.
    records = [r for r in _apiserver_restart_records(True) if r.rv != 27433]
    m = match_outcomes(reqs(*APISERVER_RESTART), records, gaps=[(27126, 27423)], strict=False)
    assert m.lost == [6] and "request 7 ('pause'" in m.problems[0]


def test_a_marker_pins_a_record_to_its_request_or_an_earlier_replaced_one() -> None:
    # pause replaced by stop while in flight: its record carries stop's marker.
    requests = reqs(("pause", 10, True), ("stop", 12), ("start", 20))
    records = [
        OutcomeRecord(13, la("pause"), "r1", "stop"),
        OutcomeRecord(14, la("stop"), "r1", "stop"),
        OutcomeRecord(21, la("start", at=T0 + 10), "r2", "start"),
    ]
    m = match_outcomes(requests, records, strict=False)
    assert (m.completed, m.overwritten, m.lost, m.problems) == ([0, 1, 2], [], [], [])
    # A record naming request 2 (stop) cannot answer an earlier stop whose record is
    # missing: that one is lost, not silently swapped in.
    requests = reqs(("stop", 10), ("start", 20), ("stop", 30))
    records = [
        OutcomeRecord(21, la("start"), "r1", "start"),
        OutcomeRecord(31, la("stop"), "r2", "stop"),
    ]
    m = match_outcomes(requests, records, strict=False)
    assert (m.completed, m.lost) == ([1, 2], [0])


def test_a_replay_carrying_the_marker_is_a_replay() -> None:
    requests = reqs(("restart", 10), ("pause", 20))
    records = [
        OutcomeRecord(11, la("restart"), "r0", "restart"),
        OutcomeRecord(13, la("restart", at=T0 + 12), "r0", "restart"),
        OutcomeRecord(21, la("pause"), "r1", "pause"),
    ]
    m = match_outcomes(requests, records, strict=False)
    assert (m.completed, m.replays, m.restarts_succeeded, m.problems) == ([0, 1], 1, 1, [])


def test_a_restart_hidden_in_a_watch_gap_bounds_the_restart_count() -> None:
    # Engine campaign 66bb2a26, container 22659dcdbb1b, requests 11-18: the restart at
    # rv 19361 was written just before the apiserver stopped; its restart/Succeeded
    # (19431) was replaced by the next start/Succeeded (19460) before the harness
    # relisted (gap 19340-19470). The service restarted the container once per request
    # (its journal: docker.restart and a restart event each), so Docker's 3 events are
    # right; counting only the answered restarts reported "3x for 2 restart request(s)".
    requests = reqs(
        ("restart", 18957),
        ("start", 19113),
        ("unpause", 19166),
        ("start", 19212),
        ("stop", 19245),
        ("restart", 19361),
        ("start", 19458),
        ("restart", 19481),
    )
    records = [
        OutcomeRecord(19102, la("restart"), "r0", "restart"),
        OutcomeRecord(19121, la("start", at=T0 + 1), "r1", "start"),
        OutcomeRecord(19178, la("unpause", at=T0 + 2), "r2", "unpause"),
        OutcomeRecord(19228, la("start", at=T0 + 3), "r3", "start"),
        OutcomeRecord(19330, la("stop", at=T0 + 4), "r4", "stop"),
        OutcomeRecord(19470, la("start", at=T0 + 6), "r6", None, True),
        OutcomeRecord(19595, la("restart", at=T0 + 7), "r7", "restart"),
    ]
    m = match_outcomes(requests, records, gaps=[(19340, 19470)], strict=False)
    assert (m.unverified, m.lost, m.problems) == ([5], [], [])
    assert (m.restarts_succeeded, m.restarts_answered, m.restarts_unanswered) == (2, 2, 1)
    cid = "c" * 64
    succeeded, docker = Counter({cid: 2}), Counter({cid: 3})
    bound = Counter({cid: m.restarts_answered + m.restarts_unanswered})
    assert restart_problems(succeeded, docker, bound) == ([], 0, 0)
    # A fourth Docker restart is still a double restart.
    problems, doubles, _ = restart_problems(succeeded, Counter({cid: 4}), bound)
    assert doubles == 1 and "4x for 3 restart request(s)" in problems[0]


def test_model_step_and_maybe() -> None:
    states, why = model_step(frozenset({"running", "paused"}), "start", la("start"))
    assert (states, why) == (frozenset({"running"}), None)
    assert model_maybe(frozenset({"running"}), "pause") == {"running", "paused"}
    assert model_state("created") == "stopped" and model_state("restarting") is None


# --- mirrors on more than status ---------------------------------------------------------
INSPECT = {
    "Name": "/web",
    "State": {"Status": "exited", "Pid": 0, "ExitCode": 137},
    "Config": {"Labels": {"dockmirror.chaos": "r1"}},
}


def mirror_full(**over: object) -> dict:
    st = {
        "status": "exited",
        "pid": 0,
        "exitCode": 137,
        "name": "web",
        "namespace": "moby",
        "labels": {"dockmirror.chaos": "r1"},
        **over,
    }
    return {"metadata": {}, "status": st}


def test_mirror_compared_on_exit_code_pid_name_and_labels() -> None:
    docker = {"a": docker_view_from_inspect(INSPECT)}
    assert status_mismatches(docker, {"a": mirror_view(mirror_full())}) == {}
    for field, wrong in (
        ("exitCode", 136),
        ("pid", 4242),
        ("name", "webb"),
        ("labels", {}),
        ("status", "running"),
    ):
        found = status_mismatches(docker, {"a": mirror_view(mirror_full(**{field: wrong}))})
        assert field in found["a"], (field, found)


def test_docker_names_with_a_namespace_and_list_views() -> None:
    view = docker_view_from_inspect({**INSPECT, "Name": "/k8s/web"})
    assert (view["namespace"], view["name"]) == ("k8s", "web")
    listed = docker_view_from_list({"State": "running", "Labels": None})
    assert listed == {"status": "running", "labels": {}}
    assert (
        status_mismatches(
            {"b": listed}, {"b": mirror_view(mirror_full(status="running", labels={}))}
        )
        == {}
    )


def test_persistent_mismatch_of_a_wrong_exit_code() -> None:
    docker = {"a": docker_view_from_inspect(INSPECT)}
    wrong = {"a": mirror_view(mirror_full(exitCode=138))}
    assert "exitCode" in persistent_mismatches([(docker, wrong)] * 3)["a"]


# --- stuck, minimums, identity, exits, racers, self-test ---------------------------------
def test_a_failed_or_incomplete_listing_is_not_nothing_stuck() -> None:
    assert "could not list" in stuck_problems(None, {"a"}, list_error="boom")[0]
    assert "no mirror listed" in stuck_problems({}, {"a" * 64})[0]
    assert stuck_problems({"a" * 64: mirror("running")}, {"a" * 64}) == []
    assert (
        "never consumed"
        in stuck_problems({"a" * 64: mirror("running", annotation="stop")}, {"a" * 64})[0]
    )


def test_minimum_counts() -> None:
    assert minimum_problems({"kills": 8, "requested": 500}, {"kills": 8, "requested": 100}) == []
    problems = minimum_problems({"kills": 3}, {"kills": 8, "requested": 1})
    assert problems == [
        "kills=3 below the campaign's minimum 8",
        "requested=0 below the campaign's minimum 1",
    ]


def test_identity_completed_equals_requested_minus_overwritten() -> None:
    assert identity_problems(100, 85, 15, 0) == []
    assert "1 request(s) unaccounted" in identity_problems(100, 84, 15, 0)[0]
    assert identity_problems(100, 80, 15, 5) == []


def test_exit_verdicts() -> None:
    assert exit_problem(-9, killed=True, stopped=False, kill_fault_armed=False) is None
    assert exit_problem(0, killed=False, stopped=True, kill_fault_armed=False) is None
    assert "after SIGTERM" in exit_problem(1, killed=False, stopped=True, kill_fault_armed=False)
    assert exit_problem(-9, killed=False, stopped=False, kill_fault_armed=True) is None
    assert "code 3" in exit_problem(3, killed=False, stopped=False, kill_fault_armed=True)
    assert "code -9" in exit_problem(-9, killed=False, stopped=False, kill_fault_armed=False)
    assert "code 0" in exit_problem(0, killed=False, stopped=False, kill_fault_armed=False)
    assert exit_problem(None, killed=False, stopped=False, kill_fault_armed=False) is None


def test_racer_errors_fail_only_when_unexpected() -> None:
    errors = [
        RacerError("policy-killer", "ProcessLookupError", expected=True),
        RacerError("w-abc", "KeyError: 'metadata'", expected=False),
    ]
    assert racer_problems(errors) == ["w-abc: KeyError: 'metadata'"]


def test_self_test_verdicts() -> None:
    assert self_test_problems(None, set(), fired=False) == []
    assert "control run failed" in self_test_problems(None, {"status"}, fired=False)[0]
    assert self_test_problems("wrong_status", {"status", "request outcome"}, fired=True) == []
    assert "never fired" in self_test_problems("wrong_status", {"status"}, fired=False)[0]
    missed = self_test_problems("double_restart", {"status"}, fired=True)
    assert "not caught by 'restart count'" in missed[0]
    assert set(BUG_INVARIANT) == set(faults.BUGS)


def test_result_records_which_invariants_failed() -> None:
    r = Result("x")
    r.fail("status", [])
    r.fail("stuck annotation", ["a"])
    assert r.failed_invariants == {"stuck annotation"}
