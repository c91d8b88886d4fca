"""What ``/healthz`` and ``/readyz`` answer: pure decisions and the liveness snapshot.

The transport is :mod:`actors.infra.http_endpoint`; this module decides, so every answer is
tested without sockets or threads (like :mod:`actors.domain.webhook_review` for the webhook).

* ``/healthz`` (liveness): the supervisor's 1 s liveness sweep (``Supervisor.sweep``)
  records which top-level actors (and the webhook server) are alive *after* its restarts
  in a :class:`Liveness` snapshot. 503 names what is dead, or says that the sweep itself
  has not run for :data:`STALE_AFTER_S` (a stuck main thread restarts nothing). A
  restart that healed an actor within the sweep is not a failure here: it is counted in
  ``dockmirror_actor_restarts_total``, and the restart budget ends the process when
  restarts pile up.
* ``/readyz`` (readiness): 200 when this instance leads (or leader election is
  disabled) and its initial full sync is done (EngineReady written True), or when it is
  a hot standby; the body says which. Not ready while stopping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

LeaderState = Literal["leader", "standby", "disabled"]
#: Where readiness learns the leader election's state; called from the HTTP thread, so it
#: must be cheap and thread-safe. Leader election (issue 11, point 4) provides one;
#: without it, :func:`election_disabled` (this instance acts as the leader).
LeaderStateFn = Callable[[], str]

#: The sweep runs every second; this much silence means the supervisor's loop is stuck.
STALE_AFTER_S = 10.0


def election_disabled() -> str:
    """The leader state without leader election: act as the leader."""
    return "disabled"


@dataclass(frozen=True)
class LivenessSnapshot:
    alive: Mapping[str, bool] = field(default_factory=dict)
    observed_at: float | None = None  # monotonic seconds of the last sweep; None: starting
    stopping: bool = False


class Liveness:
    """The last liveness sweep's result, readable from any thread.

    ``observe`` and ``stop`` are called by the supervisor's main thread; ``snapshot`` by
    the HTTP threads. A lock guards the one reference swapped on each call.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot = LivenessSnapshot()

    def observe(self, alive: Mapping[str, bool]) -> None:
        """Main thread, at the end of every sweep: which supervised parts are alive."""
        with self._lock:
            self._snapshot = LivenessSnapshot(dict(alive), self._clock(), self._snapshot.stopping)

    def stop(self) -> None:
        """Main thread, when shutting down: readiness ends, the sweep ends."""
        with self._lock:
            old = self._snapshot
            self._snapshot = LivenessSnapshot(old.alive, old.observed_at, stopping=True)

    def snapshot(self) -> LivenessSnapshot:
        with self._lock:
            return self._snapshot

    def alive(self) -> dict[str, bool]:
        """The last sweep's view, for the ``dockmirror_actors_alive`` gauge."""
        return dict(self.snapshot().alive)


def health_answer(
    snap: LivenessSnapshot, now: float, stale_after_s: float = STALE_AFTER_S
) -> tuple[int, str]:
    """``/healthz``: (HTTP status, one line of text)."""
    dead = sorted(name for name, is_alive in snap.alive.items() if not is_alive)
    if dead:
        return 503, "dead: " + ", ".join(dead)
    if snap.stopping:
        return 200, "ok: stopping"
    if snap.observed_at is None:
        return 200, "ok: starting"
    silent = now - snap.observed_at
    if silent > stale_after_s:
        return 503, f"supervisor loop stalled: no liveness sweep for {silent:.0f} s"
    return 200, "ok"


def ready_answer(leader_state: str, synced: bool, *, stopping: bool = False) -> tuple[int, str]:
    """``/readyz``: (HTTP status, one line of text).

    ``leader_state`` is "leader", "standby" or "disabled" (no election: act as the
    leader); ``synced`` is the router's ``ready`` (EngineReady written True).
    """
    if stopping:
        return 503, "not ready: stopping"
    if leader_state == "standby":
        return 200, "ready: standby (another instance leads this namespace)"
    if leader_state not in ("leader", "disabled"):
        return 503, f"not ready: unknown leader state {leader_state!r}"
    role = "leader" if leader_state == "leader" else "leader election disabled"
    if synced:
        return 200, f"ready: initial sync done ({role})"
    return 503, f"not ready: initial sync in progress ({role})"
