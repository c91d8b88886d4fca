"""The end-of-campaign invariants, as pure functions over observations.

Nothing here talks to Docker or Kubernetes; the harness gathers the observations (mirror
objects, Docker inspect data, the request book, the outcome records its watch saw,
restart event counts, service exit codes) and these functions return human-readable
problems (an empty list means the invariant holds). docs/reliability.md has the table.

Semantics:

* **Single slot.** A request replaced in the slot before the service picked it up never
  runs; one replaced while in flight still gets its own outcome (docs/contract.md §4.6).
* **Every request.** Each request ends with its own ``lastAction`` record
  (:func:`match_outcomes`) or was replaced in the slot; each record is checked for shape
  and, in *strict* campaigns where nobody but the service touches the containers,
  against a model of the states the container can be in (:data:`MODEL`). In racing
  campaigns (docker CLI, restart policies, engine restarts, calls reported as timed out
  after they ran) only the shape is checked, while the mirror must still match Docker.
* **Mirrors match Docker** on status, pid, exit code, name, namespace and labels.
* **Exactly-once restart.** Docker's ``restart`` events (emitted only by
  ``POST /containers/{id}/restart``; restart-policy restarts emit ``die``+``start``) per
  container equal the number of ``restart`` requests that completed ``Succeeded``.
* **Evidence, not silence.** A failed listing is a failure, a campaign below its minimum
  counts proves nothing, and a service exit the harness did not cause is a failure.
"""

from __future__ import annotations

import calendar
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from actors.domain.names import ACTION_ANNOTATION, ACTIONS

VALID_ACTIONS = ACTIONS
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
    """One annotation write of the harness (a request)."""

    container_id: str
    value: str
    written_at: float  # time.time() when the write returned (an upper bound of the write)
    request_id: str = ""  # the harness's marker annotation written with the value
    write_rv: int = 0  # resourceVersion of the write (or a lower bound when unknown)
    # A later write found this request still in the slot (the annotation held its value
    # and marker) and replaced it. Set by the racer, which wrote with a resourceVersion
    # precondition, so it is a fact, not a guess.
    replaced: bool = False
    # time.time() before the write that landed was sent: a lower bound of the write (the
    # service cannot have seen it earlier). None: not known, ``written_at`` stands in.
    sent_at: float | None = None

    @property
    def not_before(self) -> float:
        """The earliest time the service can have seen this request."""
        return self.written_at if self.sent_at is None else self.sent_at


@dataclass
class Book:
    """Every annotation write the campaign made, in order, per container."""

    requests: dict[str, list[Request]] = field(default_factory=dict)
    # restart requests that completed Succeeded (filled by :func:`match_outcomes`)
    restarts_succeeded: Counter = field(default_factory=Counter)
    completed: int = 0  # requests whose consumption the driver observed
    overwritten: int = 0  # values replaced in the slot before they were consumed
    by_id: dict[str, Request] = field(default_factory=dict)

    def record(
        self,
        container_id: str,
        value: str,
        written_at: float,
        request_id: str = "",
        write_rv: int = 0,
        sent_at: float | None = None,
    ) -> Request:
        req = Request(container_id, value, written_at, request_id, write_rv, sent_at=sent_at)
        self.requests.setdefault(container_id, []).append(req)
        if request_id:
            self.by_id[request_id] = req
        return req

    def mark_replaced(self, request_id: str) -> bool:
        """A later write replaced the request with this marker while it was in the slot."""
        req = self.by_id.get(request_id)
        if req is None or req.replaced:
            return False
        req.replaced = True
        return True

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
        f"{name[:12]}: annotation {annotations_of(obj)[ACTION_ANNOTATION]!r} never consumed"
        for name, obj in sorted(mirrors.items())
        if ACTION_ANNOTATION in annotations_of(obj) and name not in exclude
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
    # Against the time the write was sent, not when its answer came back: on a loaded
    # machine the answer reached the racer 2 s after the service had already completed
    # the request (full run ab26819f, soak), which is no stale outcome.
    if observed < int(req.not_before) - 1:
        return (
            f"lastAction observedAt {last_action['observedAt']} predates the last request "
            f"(sent {time.strftime('%H:%M:%S', time.gmtime(req.not_before))}Z): stale outcome"
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
    docker_states: dict[str, Any], mirror_states: dict[str, Any]
) -> dict[str, str]:
    """Invariant 3 on one snapshot: id -> what is wrong (empty when consistent).

    Values are views (field -> value: :func:`docker_view_from_inspect`,
    :func:`docker_view_from_list`, :func:`mirror_view`) or a bare ``status.status``
    string. Every field of the Docker view must match the mirror's.
    """
    out: dict[str, str] = {}
    for cid, raw in docker_states.items():
        want = _view(raw)
        if cid not in mirror_states:
            out[cid] = f"Docker container ({want.get('status')}) has no mirror"
            continue
        got = _view(mirror_states[cid])
        diffs = [f"{k} {got.get(k)!r} != Docker {v!r}" for k, v in want.items() if got.get(k) != v]
        if diffs:
            out[cid] = "mirror " + ", ".join(diffs)
    for cid, raw in mirror_states.items():
        if cid not in docker_states:
            out[cid] = f"mirror (status {_show(raw)!r}) has no Docker container"
    return out


def persistent_mismatches(
    snapshots: list[tuple[dict[str, Any], dict[str, Any]]],
) -> dict[str, str]:
    """Mismatches present in every snapshot with the same Docker view in each.

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


def restart_problems(
    expected: Counter, seen: Counter, answered: Counter | None = None
) -> tuple[list[str], int, int]:
    """Invariant 4: per container, Docker's restart events lie between the ``restart``
    requests that Succeeded (``expected``) and those that may have run (``answered``,
    default ``expected``: the answered ones plus those replaced in the slot or hidden
    in a watch gap): a Failed restart may have run (a call reported as timed out after
    it was made), a replaced one may have run before it was replaced, a Succeeded one
    must have, and none may run twice.

    Returns (problems, double restarts, missing restarts).
    """
    answered = expected if answered is None else answered
    problems, doubles, missing = [], 0, 0
    for cid in sorted(set(expected) | set(seen) | set(answered)):
        want, got = expected.get(cid, 0), seen.get(cid, 0)
        most = max(want, answered.get(cid, 0))
        if got > most:
            doubles += got - most
            problems.append(f"{cid[:12]}: Docker restarted it {got}x for {most} restart request(s)")
        elif got < want:
            missing += want - got
            problems.append(f"{cid[:12]}: {want} restart request(s) Succeeded, Docker saw {got}")
    return problems, doubles, missing


# --- every request, strictly (invariant 2, per request) --------------------------------
@dataclass(frozen=True)
class OutcomeRecord:
    """A ``status.lastAction`` value as the harness's watch saw it appear.

    ``marker`` is the harness's request marker on the object version that carried the
    record and ``pending`` its action annotation (None: consumed). The service writes
    ``lastAction`` before it removes the annotation, so the version a watch delivers
    names the request in the slot: the answered one when the actions agree, else a later
    one (the answered request was replaced while in flight). A ``relisted`` record was
    read by the list after a watch gap: that version may be later still (the next
    request may already be in the slot) and ``rv`` is only an upper bound.
    """

    rv: int  # resourceVersion of the object version that first carried it
    last_action: dict[str, Any]
    marker: str = ""
    pending: str | None = None
    relisted: bool = False


@dataclass
class Matching:
    """How one container's requests ended (each request is in exactly one class)."""

    completed: list[int] = field(default_factory=list)  # request indexes with an outcome
    overwritten: list[int] = field(default_factory=list)  # replaced, no outcome of their own
    unverified: list[int] = field(default_factory=list)  # outcome may hide in a watch gap
    lost: list[int] = field(default_factory=list)  # neither: the invariant fails
    replays: int = 0  # extra records for a request already completed (crash replays)
    restarts_succeeded: int = 0
    restarts_answered: int = 0  # restart requests with a record, Succeeded or Failed
    # Restart requests without a record of their own (replaced in the slot, or whose
    # outcome may hide in a watch gap): each may have run once before it was replaced.
    restarts_unanswered: int = 0
    problems: list[str] = field(default_factory=list)
    # Per record (same order): the request index it answers, or None (answers none).
    owners: list[int | None] = field(default_factory=list)
    replay_records: set[int] = field(default_factory=set)  # indexes of replay records

    def request_class(self, k: int) -> str:
        for name in ("completed", "overwritten", "unverified", "lost"):
            if k in getattr(self, name):
                return name
        return "?"


# Strict model of one container that nobody but the service touches (docs/contract.md §4.4).
# (action, state) -> (outcome state, error substring when Failed, state afterwards);
# "stopped" stands for Docker's created/exited/dead.
MODEL: dict[tuple[str, str], tuple[str, str | None, str]] = {
    ("start", "running"): ("Succeeded", None, "running"),
    ("start", "paused"): ("Failed", "cannot start a paused container", "paused"),
    ("start", "stopped"): ("Succeeded", None, "running"),
    ("stop", "running"): ("Succeeded", None, "stopped"),
    ("stop", "paused"): ("Succeeded", None, "stopped"),
    ("stop", "stopped"): ("Succeeded", None, "stopped"),
    ("pause", "running"): ("Succeeded", None, "paused"),
    ("pause", "paused"): ("Succeeded", None, "paused"),
    ("pause", "stopped"): ("Failed", "is not running", "stopped"),
    ("unpause", "running"): ("Succeeded", None, "running"),
    ("unpause", "paused"): ("Succeeded", None, "running"),
    ("unpause", "stopped"): ("Failed", "cannot unpause container", "stopped"),
    ("restart", "running"): ("Succeeded", None, "running"),
    ("restart", "paused"): ("Succeeded", None, "running"),
    ("restart", "stopped"): ("Succeeded", None, "running"),
}
MODEL_STATES = frozenset({"running", "paused", "stopped"})


def model_state(docker_state: str | None) -> str | None:
    """Docker's ``State`` text -> the model's state (None for anything else)."""
    if docker_state in STOPPED:
        return "stopped"
    return docker_state if docker_state in MODEL_STATES else None


def model_step(
    states: frozenset[str], action: str, last_action: dict[str, Any]
) -> tuple[frozenset[str], str | None]:
    """Apply one recorded outcome to the set of states the container may be in.

    Returns (states afterwards, problem): a problem when no possible state explains the
    outcome (e.g. ``pause`` Failed while the container can only be running).
    """
    state, error = last_action.get("state"), last_action.get("error") or ""
    after = set()
    for s in states:
        want_state, needle, nxt = MODEL[(action, s)]
        if state == want_state and (needle is None or needle in error):
            after.add(nxt)
    if after:
        return frozenset(after), None
    expected = sorted({MODEL[(action, s)][0] for s in states})
    return states, (
        f"{action}/{state} ({error!r}) impossible from {sorted(states)} (expected {expected})"
    )


def model_maybe(states: frozenset[str], action: str) -> frozenset[str]:
    """States after a request that may or may not have run without a record (overwritten)."""
    return states | {MODEL[(action, s)][2] for s in states}


def _may_answer(requests: list[Request], k: int, rec: OutcomeRecord) -> bool:
    """Whether ``rec`` can be the outcome of request ``k`` by resourceVersion: written
    after it and, unless ``k`` was replaced in the slot (its outcome may land after the
    next write), before the next request was written. A relisted record's ``rv`` is only
    an upper bound, so it is not held to the second bound. ``write_rv`` of an ambiguous
    write is a lower bound above the racer's read, which followed the consumption."""
    req = requests[k]
    if req.write_rv >= rec.rv:
        return False
    if req.replaced or rec.relisted or k + 1 == len(requests):
        return True
    return rec.rv < requests[k + 1].write_rv


def _in_gap(lo: int, hi: float, gaps: list[tuple[int, int]]) -> bool:
    return any(after < hi and upto > lo for after, upto in gaps)


def match_outcomes(
    requests: list[Request],
    records: list[OutcomeRecord],
    *,
    gaps: list[tuple[int, int]] = (),
    initial_state: str | None = None,
    final_docker_state: str | None = None,
    strict: bool,
) -> Matching:
    """Attribute every ``lastAction`` record of one container to the request it answers.

    ``requests`` in write order, ``records`` in resourceVersion order (every distinct
    ``lastAction`` the watch saw). A record can only answer a request with its action
    written before it (``write_rv < rv``) and, unless that request was replaced in the
    slot, before the next request was written (the racer writes the next request only
    after it saw this one consumed, and the service writes ``lastAction`` before it
    consumes). A record carrying a known request marker (:class:`OutcomeRecord`)
    answers that request when the actions agree, else the latest candidate before it.
    Without a marker it answers the first unanswered candidate; requests skipped on the
    way must have been replaced in the slot. A record with the action of the request
    answered last is a replay of it (a crash between the outcome write and the
    annotation removal repeats the write with new times). ``gaps`` are resourceVersion
    ranges ``(after, upto]`` the watch may have missed (a relist after 410 Gone).

    After a gap the first-candidate rule alone would shift records onto older requests
    of the same action whose own records fell into the gap, and report the newest
    request as lost (engine campaign, apiserver restart); the marker and the upper
    bound pin each record to its own request.

    Classes: *completed* (own record seen), *overwritten* (replaced in the slot, no
    record), *unverified* (no record, but its window overlaps a gap), *lost* (none of
    these). Each record is checked with :func:`outcome_problem`; in ``strict`` campaigns
    each outcome must also follow from the states the container can be in
    (:data:`MODEL`, starting at ``initial_state``; an overwritten request may or may not
    have run, before or just after the next answered request), and the final
    ``final_docker_state`` must be one of the predicted states.
    """
    m = Matching()
    answered: dict[int, list[OutcomeRecord]] = {}
    by_marker = {r.request_id: k for k, r in enumerate(requests) if r.request_id}
    nxt, last = 0, None
    for rec in records:
        action = rec.last_action.get("action")
        slot = by_marker.get(rec.marker) if rec.marker else None
        hi = len(requests)
        if slot is not None:
            hi = slot + 1 if requests[slot].value == action else slot
        cands = [
            k
            for k in range(nxt, hi)
            if requests[k].value == action and _may_answer(requests, k, rec)
        ]
        clean = [k for k in cands if all(requests[j].replaced for j in range(nxt, k))]
        if slot is not None and cands:
            k = cands[-1]  # the marker bounds it: the latest candidate, never an older one
        elif slot is None and clean:
            k = clean[0]
        elif last is not None and requests[last].value == action:
            answered[last].append(rec)
            m.replays += 1
            m.replay_records.add(len(m.owners))
            m.owners.append(last)
            continue
        elif cands:
            k = cands[0]  # the requests skipped on the way end up lost
        else:
            m.problems.append(
                f"lastAction {_brief(rec.last_action)} at rv {rec.rv} answers no request"
            )
            m.owners.append(None)
            continue
        m.owners.append(k)
        answered[k] = [rec]
        nxt, last = k + 1, k
    for k, req in enumerate(requests):
        if k in answered:
            m.completed.append(k)
            for rec in answered[k]:
                why = outcome_problem(req, rec.last_action, None, strict=False)
                if why:
                    m.problems.append(f"request {k + 1} ({req.value}): {why}")
            first = answered[k][0].last_action
            if req.value == "restart":
                m.restarts_answered += 1
                m.restarts_succeeded += first.get("state") == "Succeeded"
            continue
        end = requests[k + 1].write_rv if k + 1 < len(requests) else math.inf
        if req.value == "restart" and (req.replaced or _in_gap(req.write_rv, end, list(gaps))):
            m.restarts_unanswered += 1
        if req.replaced:
            m.overwritten.append(k)
        elif _in_gap(req.write_rv, end, list(gaps)):
            m.unverified.append(k)
        else:
            m.lost.append(k)
            m.problems.append(
                f"request {k + 1} ({req.value!r}, written {_hms(req.written_at)}) has no outcome "
                "of its own and was not replaced in the slot: lost"
            )
    if strict and not m.unverified:
        states = frozenset([initial_state]) if initial_state in MODEL_STATES else MODEL_STATES
        late: str | None = None
        for k, req in enumerate(requests):
            if k in answered:
                states, why = model_step(states, req.value, answered[k][0].last_action)
                if why:
                    m.problems.append(f"request {k + 1}: {why}")
                if late is not None:
                    # A SIGKILLed service leaves its Docker call running in the daemon
                    # (a 1 s stop), so a replaced request may also land after this one.
                    states, late = model_maybe(states, late), None
            elif req.replaced:
                states = model_maybe(states, req.value)
                late = req.value
        final = model_state(final_docker_state)
        if final_docker_state is not None and final not in states:
            m.problems.append(
                f"Docker ends {final_docker_state!r}, the outcomes predict {sorted(states)}"
            )
    return m


def harness_view(
    container_id: str,
    requests: list[Request],
    records: list[OutcomeRecord],
    gaps: list[tuple[int, int]],
    matching: Matching,
    restart_events: list[dict[str, Any]],
    *,
    restarts_succeeded: int = 0,
    restarts_bound: int = 0,
    problems: list[str] = (),
) -> dict[str, Any]:
    """What the harness saw and concluded for one container, as JSON-able data: the
    diagnosis of a failed campaign must not need a rerun (``settle_and_check`` writes it
    next to the service's journal for every failing container)."""
    return {
        "container": container_id,
        "problems": list(problems),
        "requests": [
            {
                "n": k + 1,
                "value": r.value,
                "marker": r.request_id,
                "write_rv": r.write_rv,
                "sent_at": _hms(r.not_before),
                "written_at": _hms(r.written_at),
                "replaced": r.replaced,
                "class": matching.request_class(k),
            }
            for k, r in enumerate(requests)
        ],
        "records": [
            {
                "rv": rec.rv,
                "last_action": rec.last_action,
                "marker": rec.marker,
                "pending": rec.pending,
                "relisted": rec.relisted,
                "answers": (
                    None
                    if i >= len(matching.owners) or matching.owners[i] is None
                    else matching.owners[i] + 1
                ),
                "replay": i in matching.replay_records,
            }
            for i, rec in enumerate(records)
        ],
        "gaps": [list(g) for g in gaps],
        "restarts": {
            "succeeded_requests": restarts_succeeded,
            "may_have_run": restarts_bound,
            "docker_events": restart_events,
        },
    }


def _brief(la: dict[str, Any]) -> str:
    return f"{la.get('action')}/{la.get('state')}@{la.get('observedAt')}"


def _hms(t: float) -> str:
    return time.strftime("%H:%M:%SZ", time.gmtime(t))


# --- mirrors compared with Docker on more than status (invariant 3) --------------------
def _split_name(raw: Any) -> tuple[str, str]:
    text = raw if isinstance(raw, str) else ""
    text = text[1:] if text.startswith("/") else text
    namespace, sep, rest = text.partition("/")
    return (namespace, rest) if sep else ("moby", text)


def docker_view_from_inspect(inspect: dict[str, Any]) -> dict[str, Any]:
    """The fields the mirror must carry, derived from ``docker inspect`` (independently of
    ``actors/domain/mirror_status.py``, so a bug there cannot agree with itself)."""
    state = inspect.get("State") or {}
    namespace, name = _split_name(inspect.get("Name"))
    return {
        "status": state.get("Status"),
        "pid": state.get("Pid", 0),
        "exitCode": state.get("ExitCode", 0),
        "name": name,
        "namespace": namespace,
        "labels": (inspect.get("Config") or {}).get("Labels") or {},
    }


def docker_view_from_list(item: dict[str, Any]) -> dict[str, Any]:
    """Fields checkable from ``GET /containers/json`` (other people's containers)."""
    return {"status": item.get("State"), "labels": item.get("Labels") or {}}


def mirror_view(obj: dict[str, Any]) -> dict[str, Any]:
    status = obj.get("status") or {}
    return {
        "status": status.get("status"),
        "pid": status.get("pid"),
        "exitCode": status.get("exitCode"),
        "name": status.get("name"),
        "namespace": status.get("namespace"),
        "labels": status.get("labels") or {},
    }


def _view(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {"status": value}


def _show(value: Any) -> str:
    return value.get("status") if isinstance(value, dict) else value


# --- stuck, minimum counts, exits, racer errors ----------------------------------------
def stuck_problems(
    mirrors: dict[str, dict[str, Any]] | None,
    expected: set[str],
    *,
    exclude: set[str] = frozenset(),
    list_error: str = "",
) -> list[str]:
    """Invariant 1 with its evidence checked: a listing that failed, or that lacks the
    mirrors of containers that exist, is a failure, never "nothing stuck"."""
    if mirrors is None:
        return [f"could not list the mirrors until the deadline ({list_error or 'no answer'})"]
    problems = [
        f"{cid[:12]}: no mirror listed for an existing container (annotation unknown)"
        for cid in sorted(expected - set(mirrors) - set(exclude))
    ]
    return problems + stuck_annotations(mirrors, exclude=set(exclude))


def minimum_problems(figures: dict[str, Any], minimums: dict[str, int]) -> list[str]:
    """A campaign that did too little proves nothing: each figure must reach its minimum."""
    return [
        f"{key}={figures.get(key, 0)} below the campaign's minimum {want}"
        for key, want in sorted(minimums.items())
        if (figures.get(key) or 0) < want
    ]


def identity_problems(
    requested: int, completed: int, overwritten: int, unverified: int
) -> list[str]:
    """``completed == requested - overwritten`` (``unverified`` only after a watch gap)."""
    if completed + unverified == requested - overwritten:
        return []
    return [
        f"completed={completed} != requested={requested} - overwritten={overwritten}"
        + (f" - unverified={unverified}" if unverified else "")
        + f": {requested - overwritten - completed - unverified} request(s) unaccounted for"
    ]


def exit_problem(
    code: int | None, *, killed: bool, stopped: bool, kill_fault_armed: bool
) -> str | None:
    """Whether one service process ended in a way the harness did not cause.

    ``killed``: the harness SIGKILLed it (any code). ``stopped``: the harness sent
    SIGTERM (must exit 0). Otherwise it ended on its own: only a SIGKILL (-9) while a
    ``kill`` fault point was armed is expected; any other code, 0 included, is a failure
    (the restart budget's exit 3, a crash, an abort).
    """
    if code is None or killed:
        return None
    if stopped:
        return None if code == 0 else f"exit code {code} after SIGTERM"
    if code == -9 and kill_fault_armed:
        return None
    return f"exited on its own with code {code}"


@dataclass(frozen=True)
class RacerError:
    """An exception in one of the harness's client threads."""

    thread: str
    error: str
    expected: bool  # a legal race (e.g. the process the racer signals already exited)


def racer_problems(errors: list[RacerError]) -> list[str]:
    return [f"{e.thread}: {e.error}" for e in errors if not e.expected]


# --- self-test --------------------------------------------------------------------------
# Which invariant must catch which planted bug (actors/infra/faults.py BUGS).
BUG_INVARIANT = {
    "double_restart": "restart count",
    "drop_last_action": "request outcome",
    "leave_annotation": "stuck annotation",
    "wrong_status": "status",
}


def self_test_problems(bug: str | None, failed_invariants: set[str], fired: bool) -> list[str]:
    """The self-test's verdict for one run: the control run (``bug`` None) must pass; a
    run with a planted bug must have fired it and failed the invariant meant for it."""
    if bug is None:
        return [f"control run failed: {sorted(failed_invariants)}"] if failed_invariants else []
    if not fired:
        return [f"{bug}: the planted bug never fired (hook not wired in the service?)"]
    want = BUG_INVARIANT[bug]
    if want not in failed_invariants:
        return [f"{bug}: not caught by {want!r} (failed: {sorted(failed_invariants) or 'none'})"]
    return []


@dataclass
class Result:
    """One campaign's figures and failures; ``ok`` when no invariant failed."""

    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    failed_invariants: set[str] = field(default_factory=set)
    # figure -> the least value that makes the campaign meaningful (minimum_problems)
    minimums: dict[str, int] = field(default_factory=dict)
    # what the harness had to do that is not a verdict (an engine restarted in teardown)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def note(self, text: str) -> None:
        self.notes.append(text)

    def fail(self, invariant: str, problems: list[str], limit: int = 20) -> None:
        if problems:
            self.failed_invariants.add(invariant)
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
            "lost",
            "unverified",
            "stuck",
            "outcome_errors",
            "mismatches",
            "restarts_requested",
            "double_restarts",
            "missing_restarts",
            "racer_errors",
            "unexpected_exits",
            "flaky_faults",
            "hangs",
            "cases",
            "rss_start_mb",
            "rss_end_mb",
            "rss_growth_pct",
        )
        parts = [f"{k}={self.figures[k]}" for k in keys if k in self.figures]
        # Shown only when it happened: an engine restart is the harness's, not a verdict.
        if self.figures.get("engine_restarts_in_teardown"):
            parts.append(
                f"engine_restarts_in_teardown={self.figures['engine_restarts_in_teardown']}"
            )
        verdict = "PASS" if self.ok else f"FAIL ({len(self.failures)})"
        return f"chaos {self.name:<11} {verdict:<9} {self.seconds:6.1f}s  " + " ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "campaign": self.name,
            "ok": self.ok,
            "seconds": round(self.seconds, 1),
            "figures": self.figures,
            "failures": self.failures,
            "notes": self.notes,
        }
