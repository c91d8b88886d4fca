"""The chaos harness's teardown against a stuck engine: bounded removal, an engine
restart only where the harness owns the engine, reporting without touching verdicts,
and a run that goes on after a campaign's teardown failed. Driven by fakes (no devenv,
no engine)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker
import pytest
import requests

import scripts.chaos as chaos
from scripts.chaoslib.campaigns import _teardown
from scripts.chaoslib.harness import (
    Removal,
    record_removal,
    remove_containers,
    remove_pass,
)
from scripts.chaoslib.invariants import Result

A, B, C = "a" * 64, "b" * 64, "c" * 64
FILTERS = {"label": ["dockmirror.chaos=run"]}


class Clock:
    """Monotonic time that only moves when the code under test waits (or a call hangs)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


class FakeDocker:
    """The two calls of the Docker API the teardown uses, with Docker 20.10's behaviour
    that matters: a container stuck in ``restarting`` makes every ``rm -f`` hang until
    the client's timeout (``stuck``), a removal already under way answers 409, and
    listing never blocks."""

    def __init__(self, clock: Clock, states: dict[str, str], call_timeout: float = 15) -> None:
        self.clock = clock
        self.states = dict(states)
        self.stuck: set[str] = set()
        self.in_progress: set[str] = set()  # next rm answers 409, then the container goes
        self.call_timeout = call_timeout
        self.removes: list[str] = []

    def containers(self, all: bool, filters: dict[str, Any]) -> list[dict[str, Any]]:
        assert all and filters == FILTERS
        return [{"Id": cid, "State": state} for cid, state in sorted(self.states.items())]

    def remove_container(self, cid: str, force: bool) -> None:
        assert force
        self.removes.append(cid)
        if cid not in self.states:
            raise docker.errors.NotFound("No such container")
        if cid in self.stuck:
            self.clock.now += self.call_timeout
            raise requests.exceptions.ReadTimeout("read timed out (15 s)")
        if cid in self.in_progress:
            self.in_progress.discard(cid)
            self.states.pop(cid)  # Docker finishes the removal it had already begun
            raise docker.errors.APIError("409: removal of container is already in progress")
        self.states.pop(cid)


class FakeEngine:
    def __init__(self, fake: FakeDocker | None, owned: bool = True, fails: bool = False) -> None:
        self.fake = fake
        self._owned = owned
        self.fails = fails
        self.restarts = 0

    def __str__(self) -> str:
        return "extra engine 'x'"

    def owned(self) -> bool:
        return self._owned

    def restart(self) -> None:
        if self.fails:
            raise RuntimeError("scripts/devenv engine-down x exited 1: could not stop")
        self.restarts += 1
        if self.fake is not None:  # a fresh dockerd: the stuck container can go again
            self.fake.stuck.clear()
            self.fake.states = {cid: "exited" for cid in self.fake.states}


def _pass(fake: FakeDocker, clock: Clock, connect=None) -> tuple[int, dict[str, str], str]:
    return remove_pass(
        connect or (lambda: fake), FILTERS, deadline_s=60, poll_s=1, clock=clock, wait=clock.wait
    )


# --- remove_pass ---------------------------------------------------------------------------
def test_a_healthy_engine_is_emptied_in_one_pass_without_waiting() -> None:
    clock = Clock()
    fake = FakeDocker(clock, {A: "running", B: "exited"})
    assert _pass(fake, clock) == (2, {}, "")
    assert clock.waits == [] and fake.removes == [A, B]


def test_a_stuck_container_is_given_up_at_the_deadline_and_the_rest_removed() -> None:
    clock = Clock()
    fake = FakeDocker(clock, {A: "running", B: "restarting", C: "exited"})
    fake.stuck = {B}
    removed, left, error = _pass(fake, clock)
    assert (removed, left) == (2, {B: "restarting"})
    assert "ReadTimeout" in error and B[:12] in error
    # Bounded: the deadline plus at most one hung call, not one timeout per retry forever.
    assert 60 <= clock.now <= 60 + fake.call_timeout + 1
    assert A in fake.removes and C in fake.removes


def test_a_removal_in_progress_is_polled_until_it_is_gone() -> None:
    clock = Clock()
    fake = FakeDocker(clock, {A: "removing"})
    fake.in_progress = {A}
    assert _pass(fake, clock)[:2] == (1, {})
    assert clock.waits == [1]  # one poll, then the listing is empty


def test_an_engine_that_cannot_be_reached_is_retried_until_it_answers() -> None:
    clock = Clock()
    fake = FakeDocker(clock, {A: "running"})
    attempts: list[float] = []

    def connect() -> FakeDocker:
        attempts.append(clock.now)
        if len(attempts) < 3:
            raise docker.errors.DockerException("Error while fetching server API version")
        return fake

    assert _pass(fake, clock, connect)[:2] == (1, {})
    assert len(attempts) == 3 and clock.waits == [1, 1]


def test_an_engine_that_never_answers_reports_what_it_last_listed() -> None:
    clock = Clock()

    def connect() -> FakeDocker:
        raise requests.exceptions.ConnectionError("connection refused")

    removed, left, error = _pass(FakeDocker(clock, {}), clock, connect)
    assert (removed, left) == (0, {}) and "ConnectionError" in error
    assert clock.now >= 60


# --- remove_containers: restart only an engine the harness owns ----------------------------
def test_a_stuck_container_makes_the_harness_restart_its_engine_and_remove_again() -> None:
    clock = Clock()
    fake = FakeDocker(clock, {A: "running", B: "restarting"})
    fake.stuck = {B}
    engine = FakeEngine(fake)
    report = remove_containers(
        lambda: fake, FILTERS, engine, deadline_s=60, poll_s=1, clock=clock, wait=clock.wait
    )
    assert engine.restarts == 1 and report.engine_restarts == 1
    assert report.left == [] and report.removed == 2 and fake.states == {}
    assert any("not removed within 60s" in n and B[:12] in n for n in report.notes)
    assert "restarted extra engine 'x'" in report.notes


def test_an_engine_the_harness_does_not_own_is_never_restarted() -> None:
    clock = Clock()
    fake = FakeDocker(clock, {B: "restarting"})
    fake.stuck = {B}
    engine = FakeEngine(fake, owned=False)
    report = remove_containers(
        lambda: fake, FILTERS, engine, deadline_s=60, poll_s=1, clock=clock, wait=clock.wait
    )
    assert engine.restarts == 0 and report.engine_restarts == 0
    assert report.left == [f"{B[:12]} (restarting)"]
    assert any("not started by devenv" in n for n in report.notes)


def test_a_failed_restart_is_reported_and_the_removal_still_retried() -> None:
    clock = Clock()
    fake = FakeDocker(clock, {B: "restarting"})
    fake.stuck = {B}
    report = remove_containers(
        lambda: fake,
        FILTERS,
        FakeEngine(fake, fails=True),
        deadline_s=60,
        poll_s=1,
        clock=clock,
        wait=clock.wait,
    )
    assert report.engine_restarts == 0 and report.left == [f"{B[:12]} (restarting)"]
    assert any(n.startswith("restart of extra engine 'x' failed") for n in report.notes)
    assert clock.now >= 120  # two bounded passes


# --- reporting: a figure and notes, never a changed verdict --------------------------------
def test_an_engine_restart_is_a_figure_and_a_note_not_a_failure() -> None:
    result = Result("races", figures={"requested": 10})
    record_removal(result, Removal(removed=3, engine_restarts=1, notes=["restarted it"]))
    assert result.ok and result.figures["engine_restarts_in_teardown"] == 1
    assert result.notes == ["teardown: restarted it"]
    assert "engine_restarts_in_teardown=1" in result.summary_line()
    assert result.as_json()["notes"] == ["teardown: restarted it"]
    quiet = Result("sigkill")
    record_removal(quiet, Removal(removed=3))
    assert "engine_restarts_in_teardown" not in quiet.summary_line()
    assert quiet.figures["engine_restarts_in_teardown"] == 0


def test_containers_left_fail_teardown_only_and_keep_earlier_verdicts() -> None:
    result = Result("races")
    result.fail("status", ["c1: mismatch"])
    record_removal(result, Removal(left=["bbbbbbbbbbbb (restarting)"], engine_restarts=1))
    assert result.failed_invariants == {"status", "teardown"}
    assert result.failures[0] == "status: c1: mismatch"
    assert "even after an engine restart" in result.failures[1]


class TeardownEnv:
    def __init__(self, removal: Removal | Exception) -> None:
        self.removal = removal
        self.removed: list[str] = []

    def remove_containers(self, campaign: str) -> Removal:
        self.removed.append(campaign)
        if isinstance(self.removal, Exception):
            raise self.removal
        return self.removal

    def mirrors(self) -> dict[str, Any]:
        return {}

    def docker_states(self) -> dict[str, str]:
        return {}


class StoppableService:
    def __init__(self) -> None:
        self.running = True
        self.stops = 0

    def stop(self) -> int:
        self.stops += 1
        self.running = False
        return 0


def test_teardown_reports_a_restart_and_stops_the_service() -> None:
    result = Result("races", figures={"requested": 10})
    svc = StoppableService()
    _teardown(TeardownEnv(Removal(removed=2, engine_restarts=1)), "races", svc, result)
    assert result.ok and result.figures["engine_restarts_in_teardown"] == 1
    assert svc.stops == 1


def test_teardown_turns_a_harness_exception_into_a_teardown_failure() -> None:
    result = Result("races")
    svc = StoppableService()
    env = TeardownEnv(requests.exceptions.ReadTimeout("UnixHTTPConnectionPool: read timed out"))
    _teardown(env, "races", svc, result)  # must not raise
    assert result.failed_invariants == {"teardown"} and "ReadTimeout" in result.failures[0]
    assert svc.stops == 1  # the service is stopped all the same


# --- the run goes on after a campaign's teardown failed ------------------------------------
class RunEnv:
    """What scripts/chaos.py's main needs of Env."""

    def __init__(self, workdir: Path | None = None, engine_name: str | None = None) -> None:
        self.run_id = "0123abcd"
        self.namespace = "chaos-0123abcd"
        self.workdir = workdir
        self.engine = f"extra engine {engine_name!r}"
        self.devenv = SimpleNamespace(docker_host="unix:///x/docker.sock")
        self.services: list[Any] = []
        self.removals: list[str | None] = []
        self.cleaned = False

    def remove_containers(self, campaign: str | None = None) -> Removal:
        self.removals.append(campaign)
        if campaign == "sigkill":
            raise requests.exceptions.ReadTimeout("read timed out")
        return Removal()

    def stop_services(self) -> None:
        pass

    def cleanup(self) -> None:
        self.cleaned = True


def test_a_crashed_campaign_whose_cleanup_raises_does_not_end_the_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made: list[RunEnv] = []
    ran: list[str] = []

    def make_env(workdir: Path | None = None, engine_name: str | None = None) -> RunEnv:
        made.append(RunEnv(workdir, engine_name))
        return made[-1]

    def crashes(env: Any, sizes: Any, rng: random.Random) -> Result:
        ran.append("sigkill")
        raise requests.exceptions.ReadTimeout("docker rm -f timed out (60 s)")

    def passes(env: Any, sizes: Any, rng: random.Random) -> Result:
        ran.append("races")
        result = Result("races", figures={"requested": 5})
        record_removal(result, Removal(engine_restarts=1, notes=["restarted extra engine"]))
        return result

    monkeypatch.setattr(chaos, "Env", make_env)
    monkeypatch.setitem(chaos.CAMPAIGNS, "sigkill", crashes)
    monkeypatch.setitem(chaos.CAMPAIGNS, "races", passes)
    out = tmp_path / "figures.json"
    code = chaos.main(
        ["--quick", "--only", "sigkill,races", "--engine", "chaos", "--json", str(out)]
    )
    assert code == 1 and ran == ["sigkill", "races"] and made[0].cleaned
    figures = json.loads(out.read_text())
    assert figures["engine"] == "chaos"
    first, second = figures["campaigns"]
    assert not first["ok"] and {f.split(":")[0] for f in first["failures"]} == {
        "campaign crashed",
        "teardown",
    }
    assert second["ok"] and second["figures"]["engine_restarts_in_teardown"] == 1
    printed = capsys.readouterr().out
    assert "note: races: teardown: restarted extra engine" in printed
    assert "1/2 campaigns passed" in printed
