"""The four end-of-campaign invariants, as pure functions over observations.

Nothing here talks to Docker or Kubernetes; the harness gathers the observations (mirror
objects, Docker states, request book, restart event counts) and these functions return
human-readable problems (an empty list means the invariant holds).

Semantics (docs/reliability.md):

* **Single slot.** A request overwritten before the service picked it up never runs;
  only the *last value written* to a container's slot is "its last request".
* **Outcome of the last request.** ``lastAction.action`` equals the last value written,
  ``observedAt`` is not older than that write (second precision) and ``state``/``error``
  are consistent. In *strict* campaigns nobody but the service touches the containers,
  so the outcome must also agree with Docker's final state (table below). In racing
  campaigns (docker CLI, restart policies, engine restarts) Docker's state may have
  changed after the action, so only a valid outcome shape is required, while
  ``status.status == Docker state`` is still checked after quiescence.
* **Exactly-once restart.** Docker's ``restart`` events (emitted only by
  ``POST /containers/{id}/restart``; restart-policy restarts emit ``die``+``start``) per
  container equal the number of ``restart`` requests that completed ``Succeeded``.
"""

from __future__ import annotations

import calendar
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

ACTION = "containers.rancherdesktop.io/action"
VALID_ACTIONS = ("start", "stop", "pause", "unpause", "restart")
STOPPED = frozenset({"exited", "created", "dead"})

# (action, state) -> Docker states allowed after quiescence, and an error substring
# (Failed only). Only for strict campaigns: nobody but the service acts on the container.
STRICT_OUTCOMES: dict[tuple[str, str], tuple[frozenset[str], str | None]] = {
    ("start", "Succeeded"): (frozenset({"running"}), None),
    ("start", "Failed"): (frozenset({"paused"}), "cannot start a paused container"),
    ("stop", "Succeeded"): (STOPPED, None),
    ("pause", "Succeeded"): (frozenset({"paused"}), None),
    ("pause", "Failed"): (STOPPED, "is not running"),
    ("unpause", "Succeeded"): (frozenset({"running"}), None),
    ("unpause", "Failed"): (STOPPED, "cannot unpause container"),
    ("restart", "Succeeded"): (frozenset({"running"}), None),
}


def parse_kube_time(text: str) -> int | None:
    """``2026-11-28T00:34:07Z`` -> epoch seconds (None if malformed)."""
    try:
        return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return None


@dataclass
class Request:
    container_id: str
    value: str
    written_at: float  # time.time() when the write returned


@dataclass
class Book:
    """Every annotation write the campaign made, in order, per container."""

    requests: dict[str, list[Request]] = field(default_factory=dict)
    # restart requests that completed Succeeded (read when their annotation disappeared)
    restarts_succeeded: Counter = field(default_factory=Counter)
    completed: int = 0  # requests whose consumption the driver observed
    overwritten: int = 0  # values replaced in the slot before they were consumed

    def record(self, container_id: str, value: str, written_at: float) -> Request:
        req = Request(container_id, value, written_at)
        self.requests.setdefault(container_id, []).append(req)
        return req

    def last(self, container_id: str) -> Request | None:
        reqs = self.requests.get(container_id)
        return reqs[-1] if reqs else None

    @property
    def requested(self) -> int:
        return sum(len(v) for v in self.requests.values())


def annotations_of(obj: dict[str, Any]) -> dict[str, Any]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def stuck_annotations(
    mirrors: dict[str, dict[str, Any]], exclude: set[str] = frozenset()
) -> list[str]:
    """Invariant 1: no mirror still carries the action annotation after quiescence."""
    return [
        f"{name[:12]}: annotation {annotations_of(obj)[ACTION]!r} never consumed"
        for name, obj in sorted(mirrors.items())
        if ACTION in annotations_of(obj) and name not in exclude
    ]


def outcome_problem(
    req: Request, last_action: dict[str, Any] | None, docker_state: str | None, *, strict: bool
) -> str | None:
    """Why ``last_action`` is not a valid outcome of ``req`` (None when it is)."""
    if not last_action:
        return f"no lastAction for last request {req.value!r}"
    action, state, error = (
        last_action.get("action"),
        last_action.get("state"),
        last_action.get("error"),
    )
    if action != req.value:
        return f"lastAction.action={action!r} but the last request was {req.value!r}"
    if state not in ("Succeeded", "Failed"):
        return f"lastAction.state={state!r}"
    if (state == "Failed") != bool(error):
        return f"lastAction state {state} with error {error!r}"
    observed = parse_kube_time(last_action.get("observedAt", ""))
    completed = parse_kube_time(last_action.get("completedAt", ""))
    if observed is None or completed is None:
        return f"malformed lastAction times {last_action!r}"
    if observed < int(req.written_at) - 1:
        return (
            f"lastAction observedAt {last_action['observedAt']} predates the last request "
            f"(written {time.strftime('%H:%M:%S', time.gmtime(req.written_at))}Z): stale outcome"
        )
    if completed < observed:
        return f"completedAt {last_action['completedAt']} before observedAt"
    if strict:
        expected = STRICT_OUTCOMES.get((action, state))
        if expected is None:
            return f"{action}/{state} is not an expected outcome ({error!r})"
        states, needle = expected
        if docker_state not in states:
            return f"{action}/{state} but Docker says {docker_state!r} (expected {sorted(states)})"
        if needle is not None and needle not in (error or ""):
            return f"{action}/Failed error {error!r} lacks {needle!r}"
    return None


def last_action_problems(
    book: Book,
    mirrors: dict[str, dict[str, Any]],
    docker_states: dict[str, str],
    *,
    strict: bool,
) -> list[str]:
    """Invariant 2: each requested container's lastAction is the outcome of its last request."""
    problems = []
    for cid in sorted(book.requests):
        req = book.last(cid)
        assert req is not None
        obj = mirrors.get(cid)
        if obj is None:
            problems.append(f"{cid[:12]}: mirror missing (last request {req.value!r})")
            continue
        la = (obj.get("status") or {}).get("lastAction")
        why = outcome_problem(req, la, docker_states.get(cid), strict=strict)
        if why:
            problems.append(f"{cid[:12]}: {why}")
    return problems


def status_mismatches(
    docker_states: dict[str, str], mirror_states: dict[str, str | None]
) -> dict[str, str]:
    """Invariant 3 on one snapshot: id -> what is wrong (empty when consistent)."""
    out: dict[str, str] = {}
    for cid, state in docker_states.items():
        if cid not in mirror_states:
            out[cid] = f"Docker container ({state}) has no mirror"
        elif mirror_states[cid] != state:
            out[cid] = f"mirror status {mirror_states[cid]!r} != Docker {state!r}"
    for cid in mirror_states:
        if cid not in docker_states:
            out[cid] = f"mirror (status {mirror_states[cid]!r}) has no Docker container"
    return out


def persistent_mismatches(
    snapshots: list[tuple[dict[str, str], dict[str, str]]],
) -> dict[str, str]:
    """Mismatches present in every snapshot with the same Docker state in each.

    Other engineers create and remove containers on the same engine while we check, so a
    single snapshot can catch their container between Docker's event and the mirror write.
    A mismatch that survives several snapshots seconds apart while Docker's state for that
    container did not change is the service's fault.
    """
    if not snapshots:
        return {}
    common: dict[str, str] | None = None
    for docker_states, mirror_states in snapshots:
        found = status_mismatches(docker_states, mirror_states)
        keyed = {cid: (docker_states.get(cid), why) for cid, why in found.items()}
        if common is None:
            common = {cid: k for cid, k in keyed.items()}
        else:
            common = {cid: k for cid, k in common.items() if cid in keyed and keyed[cid][0] == k[0]}
    return {cid: why for cid, (_, why) in (common or {}).items()}


def restart_problems(expected: Counter, seen: Counter) -> tuple[list[str], int, int]:
    """Invariant 4: Docker restart events == Succeeded restart requests, per container.

    Returns (problems, double restarts, missing restarts).
    """
    problems, doubles, missing = [], 0, 0
    for cid in sorted(set(expected) | set(seen)):
        want, got = expected.get(cid, 0), seen.get(cid, 0)
        if got > want:
            doubles += got - want
            problems.append(f"{cid[:12]}: Docker restarted it {got}x for {want} restart request(s)")
        elif got < want:
            missing += want - got
            problems.append(f"{cid[:12]}: {want} restart request(s) Succeeded, Docker saw {got}")
    return problems, doubles, missing


@dataclass
class Result:
    """One campaign's figures and failures; ``ok`` when no invariant failed."""

    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, invariant: str, problems: list[str], limit: int = 20) -> None:
        for p in problems[:limit]:
            self.failures.append(f"{invariant}: {p}")
        if len(problems) > limit:
            self.failures.append(f"{invariant}: ... and {len(problems) - limit} more")

    def summary_line(self) -> str:
        keys = (
            "kills",
            "faults_fired",
            "requested",
            "completed",
            "overwritten",
            "stuck",
            "outcome_errors",
            "mismatches",
            "restarts_requested",
            "double_restarts",
            "missing_restarts",
            "cases",
            "rss_start_mb",
            "rss_end_mb",
            "rss_growth_pct",
        )
        parts = [f"{k}={self.figures[k]}" for k in keys if k in self.figures]
        verdict = "PASS" if self.ok else f"FAIL ({len(self.failures)})"
        return f"chaos {self.name:<11} {verdict:<9} {self.seconds:6.1f}s  " + " ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "campaign": self.name,
            "ok": self.ok,
            "seconds": round(self.seconds, 1),
            "figures": self.figures,
            "failures": self.failures,
        }
