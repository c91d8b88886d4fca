"""The lease decision (pure, injected clock), the elector's rounds against a fake Lease
store with the apiserver's optimistic concurrency, and that fake itself."""

from __future__ import annotations

import threading

import pytest

from actors.ports.kube_port import KubeConflict, KubeForbidden, KubeNotFound
from actors.runtime.leader import (
    LEADER,
    STANDBY,
    LeaderElector,
    LeaseDecider,
    LeaseSpec,
    LeaseTiming,
    Step,
)
from actors.service.config import load_config
from tests.fakes.lease import FakeLeaseClient, FakeLeaseServer

T = LeaseTiming()  # 15 s lease, 10 s renew deadline, 2 s retry period
WALL = "2026-12-04T10:00:00.000000Z"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def held_by(holder: str, duration: int = 15, transitions: int = 3) -> LeaseSpec:
    return LeaseSpec(holder, duration, "x", "y", transitions)


# --- pure decision --------------------------------------------------------------------------
def test_no_lease_is_created_with_us_as_holder():
    d = LeaseDecider("me", T)
    d.observe(None, None, 0.0)
    plan = d.plan(0.0, WALL)
    assert plan.step is Step.CREATE
    assert plan.spec == LeaseSpec("me", 15, WALL, WALL, 0)


def test_free_lease_is_taken_at_once():
    d = LeaseDecider("me", T)
    released = LeaseSpec("", 1, "a", "a", 4)
    d.observe(released, "7", 0.0)
    plan = d.plan(0.0, WALL)
    assert plan.step is Step.TAKE
    assert plan.spec == LeaseSpec("me", 15, WALL, WALL, 5)


def test_held_lease_is_waited_for_until_our_observation_expires():
    d = LeaseDecider("me", T)
    d.observe(held_by("other"), "1", 100.0)
    assert d.plan(100.0, WALL).step is Step.WAIT
    assert d.plan(114.9, WALL).holder == "other"
    # The same content seen again does not restart our observation clock ...
    d.observe(held_by("other"), "1", 110.0)
    assert d.plan(114.9, WALL).step is Step.WAIT
    plan = d.plan(115.0, WALL)
    assert plan.step is Step.TAKE and plan.spec is not None and plan.spec.transitions == 4


def test_a_renewal_seen_restarts_the_expiry_clock():
    d = LeaseDecider("me", T)
    d.observe(held_by("other"), "1", 100.0)
    d.observe(LeaseSpec("other", 15, "x", "renewed", 3), "2", 110.0)
    assert d.plan(124.9, WALL).step is Step.WAIT
    assert d.plan(125.0, WALL).step is Step.TAKE


@pytest.mark.parametrize("stamp", ["1970-01-01T00:00:00.000000Z", "2999-01-01T00:00:00.000000Z"])
def test_stamps_in_the_lease_are_never_compared_with_our_clock(stamp):
    """A renewTime far in the past or future changes nothing: only our observation counts."""
    d = LeaseDecider("me", T)
    d.observe(LeaseSpec("other", 15, stamp, stamp, 0), "1", 50.0)
    assert d.plan(64.0, WALL).step is Step.WAIT
    assert d.plan(65.0, WALL).step is Step.TAKE


def test_the_holders_lease_duration_counts():
    d = LeaseDecider("me", T)
    d.observe(held_by("other", duration=40), "1", 0.0)
    assert d.plan(39.0, WALL).step is Step.WAIT
    assert d.plan(40.0, WALL).step is Step.TAKE


def test_renew_keeps_acquire_time_and_transitions():
    d = LeaseDecider("me", T)
    ours = LeaseSpec("me", 15, "acq", "r1", 2)
    d.written(ours, "5", 10.0, started=9.5)
    d.observe(ours, "5", 12.0)
    plan = d.plan(12.0, WALL)
    assert plan.step is Step.RENEW
    assert plan.spec == LeaseSpec("me", 15, "acq", WALL, 2)


def test_renew_deadline_counts_from_the_last_successful_write():
    d = LeaseDecider("me", T)
    assert d.lost(0.0) is None  # not leading: nothing to lose
    d.written(LeaseSpec("me", 15, "a", "a", 0), "1", 100.5, started=100.0)
    assert d.lost(110.0) is None
    reason = d.lost(110.1)
    assert reason is not None and "not renewed" in reason


def test_another_holder_seen_while_leading_is_lost_never_retaken():
    d = LeaseDecider("me", T)
    d.written(LeaseSpec("me", 15, "a", "a", 0), "1", 0.0, started=0.0)
    d.observe(held_by("thief"), "2", 1.0)
    assert d.plan(100.0, WALL).step is Step.LOST  # even once expired: fence first
    assert "thief" in (d.lost(1.0) or "")


def test_release_frees_the_lease_keeping_transitions():
    d = LeaseDecider("me", T)
    assert d.release_spec(WALL) is None
    d.written(LeaseSpec("me", 15, "a", "a", 6), "1", 0.0, started=0.0)
    assert d.release_spec(WALL) == LeaseSpec("", 1, WALL, WALL, 6)


@pytest.mark.parametrize(
    ("timing", "text"),
    [
        (LeaseTiming(10, 10, 2), "--lease-duration must be greater than --renew-deadline"),
        (LeaseTiming(15, 2, 2), "--renew-deadline must be greater than 1.2 x --retry-period"),
        (LeaseTiming(15, 10, 0), "--retry-period must be greater than 0"),
    ],
)
def test_timing_checks(timing, text):
    assert timing.problem() == text
    assert LeaseTiming().problem() is None


def test_lease_spec_round_trip_and_garbage():
    spec = LeaseSpec("h", 15, "a", "r", 2)
    assert LeaseSpec.from_object({"spec": spec.to_spec()}) == spec
    assert LeaseSpec.from_object({"spec": {"holderIdentity": 3, "leaseDurationSeconds": "x"}}) == (
        LeaseSpec()
    )


# --- the fake Lease store behaves like the apiserver -------------------------------------------
def test_fake_lease_store_optimistic_concurrency():
    server = FakeLeaseServer()
    a, b = FakeLeaseClient(server), FakeLeaseClient(server)
    assert a.get() == (None, None)
    with pytest.raises(KubeNotFound):
        a.update(held_by("a"), "1")
    rv = a.create(held_by("a"))
    with pytest.raises(KubeConflict):
        b.create(held_by("b"))
    spec, seen = b.get()
    assert spec == held_by("a") and seen == rv
    b.update(held_by("b"), seen)
    with pytest.raises(KubeConflict):
        a.update(held_by("a"), rv)  # stale resourceVersion
    with pytest.raises(KubeConflict):
        a.update(held_by("a"), None)


# --- the elector's rounds ----------------------------------------------------------------------
def elector(server: FakeLeaseServer, name: str, clock: Clock) -> LeaderElector:
    # renewTime follows the injected clock, so every renewal changes the Lease's content.
    return LeaderElector(
        FakeLeaseClient(server), name, T, clock=clock, wall=lambda: f"t={clock.now:.3f}"
    )


def test_two_candidates_one_leader_then_takeover_after_expiry():
    server, clock = FakeLeaseServer(), Clock()
    a, b = elector(server, "a", clock), elector(server, "b", clock)
    assert a.try_once().step is Step.CREATE and a.decider.leading
    assert b.try_once().step is Step.WAIT and not b.decider.leading
    clock.now += 2
    assert a.try_once().step is Step.RENEW
    assert b.try_once().step is Step.WAIT  # saw the renewal: its clock restarts
    # a dies (no more renewals); b takes over once 15 s passed since it saw a change.
    clock.now += 14.9
    assert b.try_once().step is Step.WAIT
    clock.now += 0.1
    assert b.try_once().step is Step.TAKE and b.decider.leading
    assert server.spec is not None and server.spec.holder == "b" and server.spec.transitions == 1
    # a comes back (it was only paused): it sees another holder and must fence.
    assert a.try_once().step is Step.LOST
    assert "held by b" in (a.lost() or "")


def test_racing_takeover_has_one_winner():
    server, clock = FakeLeaseServer(), Clock()
    server.spec, server.rv = LeaseSpec("", 1, "a", "a", 0), 1  # released
    a, b = elector(server, "a", clock), elector(server, "b", clock)
    # Both read the same free Lease; only the first write passes its precondition.
    spec, rv = a.client.get()
    a.decider.observe(spec, rv, clock())
    b.decider.observe(spec, rv, clock())
    assert a.try_once().step is Step.TAKE
    plan_b = b.decider.plan(clock(), WALL)
    assert plan_b.step is Step.TAKE and plan_b.spec is not None
    with pytest.raises(KubeConflict):
        b.client.update(plan_b.spec, rv)
    assert b.try_once().step is Step.WAIT
    assert [holder for holder in (a, b) if holder.decider.leading] == [a]


def test_failed_renewals_past_the_deadline_lose_the_leadership():
    server, clock = FakeLeaseServer(), Clock()
    a = elector(server, "a", clock)
    a.try_once()
    server.fail_next(100)
    for _ in range(5):
        clock.now += 2
        a.try_once()  # errors are swallowed and retried
        assert a.lost() is None
    clock.now += 0.5
    assert "not renewed" in (a.lost() or "")


def test_acquire_logs_one_standby_line_and_returns_when_released(caplog):
    server, clock = FakeLeaseServer(), Clock()
    server.spec, server.rv = held_by("other-host_1_ab"), 1
    state_changes: list[str] = []
    b = elector(server, "b", clock)
    stop = threading.Event()
    rounds = 0

    class Waiter(threading.Event):
        def wait(self, timeout=None):  # the retry period passes instantly in this test
            nonlocal rounds
            rounds += 1
            state_changes.append(b.state.get())
            if rounds == 3:  # the holder stops cleanly and releases
                server.spec, server.rv = LeaseSpec("", 1, "z", "z", 3), 2
            return stop.is_set()

    with caplog.at_level("INFO", logger="dockmirror.leader"):
        assert b.acquire(Waiter())
    standby_lines = [r.message for r in caplog.records if r.message.startswith("standby")]
    assert len(standby_lines) == 1 and "other-host_1_ab" in standby_lines[0]
    assert state_changes[0] == STANDBY and b.state.holder() == ""
    assert b.state.get() == LEADER and rounds == 3


def test_release_lets_a_standby_take_over_at_once():
    server, clock = FakeLeaseServer(), Clock()
    a, b = elector(server, "a", clock), elector(server, "b", clock)
    a.try_once()
    assert b.try_once().step is Step.WAIT
    a.release()
    assert server.spec is not None and server.spec.holder == ""
    assert b.try_once().step is Step.TAKE  # no waiting for the 15 s


def test_acquire_returns_false_when_stopped():
    server, clock = FakeLeaseServer(), Clock()
    server.spec, server.rv = held_by("other"), 1
    stop = threading.Event()
    stop.set()
    assert elector(server, "b", clock).acquire(stop) is False


def test_acquire_hands_every_lease_error_to_fatal_first():
    """The supervisor's hook ends the start with one line on a 401/403: no endless wait."""
    server, clock = FakeLeaseServer(), Clock()
    forbidden = KubeForbidden(403, 'leases.coordination.k8s.io "dockmirror" is forbidden')
    server.fail_next(1, forbidden)
    seen: list[BaseException] = []

    class Refused(Exception):
        pass

    def fatal(exc: BaseException) -> None:
        seen.append(exc)
        raise Refused

    with pytest.raises(Refused):
        elector(server, "a", clock).acquire(threading.Event(), fatal=fatal)
    assert seen == [forbidden]


def test_a_restarted_instance_takes_its_own_lease_back_at_once():
    """Same state directory, same identity (actors/infra/state_dir.py): no lease wait."""
    server, clock = FakeLeaseServer(), Clock()
    assert elector(server, "a", clock).try_once().step is Step.CREATE
    restarted = elector(server, "a", clock)  # the process died; the Lease still names it
    assert restarted.try_once().step is Step.RENEW and restarted.decider.leading


def test_step_down_after_a_loss_then_renew_at_once_if_still_ours():
    """Renewals failed (apiserver away) but nobody took the Lease: when the apiserver
    answers again, the next acquire renews it at once (client-go does the same)."""
    server, clock = FakeLeaseServer(), Clock()
    a = elector(server, "a", clock)
    a.try_once()
    server.fail_next(100)
    clock.now += 11
    assert a.lost() is not None
    a.step_down()
    assert a.lost() is None and a.state.get() == STANDBY
    server.failures.clear()
    assert a.try_once().step is Step.RENEW and a.decider.leading


# --- the CLI -------------------------------------------------------------------------------------
def test_cli_defaults_and_opt_out():
    cfg = load_config([], {})
    assert (cfg.leader_elect, cfg.lease_duration, cfg.renew_deadline, cfg.retry_period) == (
        True,
        15.0,
        10.0,
        2.0,
    )
    assert load_config(["--no-leader-elect"], {}).leader_elect is False
    assert load_config([], {"DOCKMIRROR_LEADER_ELECT": "no"}).leader_elect is False


def test_cli_refuses_inconsistent_timing_in_one_line(capsys):
    with pytest.raises(SystemExit) as exited:
        load_config(["--lease-duration", "5"], {})
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "error: --lease-duration must be greater than --renew-deadline" in err[-1]
    assert "Traceback" not in "\n".join(err)
