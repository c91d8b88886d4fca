"""The chaos campaigns' invariant logic (scripts/chaoslib/invariants.py), without a devenv."""

from __future__ import annotations

import calendar
import time
from collections import Counter

from scripts.chaoslib.invariants import (
    ACTION,
    Book,
    Request,
    Result,
    last_action_problems,
    outcome_problem,
    persistent_mismatches,
    restart_problems,
    status_mismatches,
    stuck_annotations,
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
    meta = {"annotations": {ACTION: annotation}} if annotation is not None else {}
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


def test_result_summary_and_failure_cap() -> None:
    r = Result("sigkill", figures={"kills": 3, "stuck": 0})
    assert r.ok and "PASS" in r.summary_line() and "kills=3" in r.summary_line()
    r.fail("status", [f"p{i}" for i in range(25)], limit=20)
    assert not r.ok and len(r.failures) == 21 and "5 more" in r.failures[-1]
    assert r.as_json()["ok"] is False
