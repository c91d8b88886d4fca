"""Action dispatch (spec §4.4) and the rules around it, as plain functions.

Called only from a container actor's thread, which serializes everything for one
container. Nothing here writes to Kubernetes; the actor does that.

* :func:`dispatch` runs one action against Docker with the spec's pre-checks and
  returns the error text for ``lastAction.error`` (None on success). Docker being
  unreachable is *not* an outcome: :class:`DockerUnavailable` propagates and the
  annotation stays for after the reconnect.
* :func:`last_action` builds the whole ``status.lastAction`` record.
* :func:`annotation_write_time` and :func:`judge_restart_replay` implement the
  exactly-once restart rule (docs/actions.md).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from enum import Enum
from typing import Any

from actors.docker_port import DockerError, DockerPort
from actors.kube_port import ACTION_ANNOTATION
from actors.ledger import RestartRecord
from actors.timefmt import parse_rfc3339_ns

ACTIONS = ("start", "stop", "pause", "unpause", "restart")
CONTAINER_ID = re.compile(r"^[0-9a-f]{64}$")


def is_valid_action(value: str | None) -> bool:
    return value in ACTIONS


def not_a_container_error(name: str) -> str:
    """``lastAction.error`` for a Container whose name is not a Docker container ID."""
    return (
        f'Container "{name}" is not a mirror of a Docker container: '
        "metadata.name must be the full 64-hex container ID"
    )


def dispatch(docker: DockerPort, action: str, container_id: str) -> str | None:
    """Run ``action`` on ``container_id``; return None on success or the error text.

    Raises DockerUnavailable when the engine cannot be reached (no outcome yet).
    """
    try:
        if action == "start":
            docker.start(container_id)
        elif action == "stop":
            docker.stop(container_id)
        elif action == "restart":
            docker.restart(container_id)
        elif action == "pause":
            state = docker.inspect(container_id).get("State") or {}
            if state.get("Paused"):
                return None  # already paused: success without a Docker call (spec §4.4)
            docker.pause(container_id)
        elif action == "unpause":
            state = docker.inspect(container_id).get("State") or {}
            if not state.get("Running"):
                return f"cannot unpause container {container_id}: not running"
            if not state.get("Paused"):
                return None  # running and not paused: success, no Docker call
            docker.unpause(container_id)
        else:  # callers validate first; keep the table total anyway
            return f"unknown action {action!r}"
    except DockerError as exc:
        return str(exc)
    return None


def last_action(action: str, error: str | None, observed_at: str, completed_at: str) -> dict:
    """The whole ``status.lastAction`` object; ``error`` only when Failed (spec §1.4)."""
    record: dict[str, Any] = {
        "action": action,
        "state": "Failed" if error is not None else "Succeeded",
        "observedAt": observed_at,
        "completedAt": completed_at,
    }
    record["error"] = error  # None nulls a previous error in the merge patch
    return record


def annotation_write_time(obj: dict[str, Any]) -> str:
    """When a client last wrote the action annotation (from ``managedFields``), or "".

    The apiserver stamps each manager's entry with the time of its last change (whole
    seconds), and removes a field from a manager's entry when another manager removes
    it, so a rewritten annotation carries a new time.
    """
    latest = ""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        fields = ((entry.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:annotations")
        if isinstance(fields, dict) and f"f:{ACTION_ANNOTATION}" in fields:
            stamp = entry.get("time") or ""
            latest = max(latest, stamp)
    return latest


class ReplayVerdict(Enum):
    NEW_REQUEST = "new_request"  # the open record is stale: a client asked again
    ALREADY_DONE = "already_done"  # Docker restarted the container after the dispatch
    RUN_AGAIN = "run_again"  # the earlier restart was abandoned half-way


def judge_restart_replay(
    record: RestartRecord,
    obj: dict[str, Any],
    inspect: Callable[[], dict[str, Any]],
    *,
    settle_s: float,
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[float], None] = time.sleep,
) -> ReplayVerdict:
    """Decide what a pending ``restart`` with an open ledger record means.

    1. If the client wrote the annotation again after the dispatch second (or within it,
       with a stamp other than the one recorded at dispatch), it is a new request: the
       record outlived its request (crash after the annotation removal).
    2. Otherwise it is a replay. If Docker's ``State.StartedAt`` changed since the
       dispatch, the restart ran: report it without calling Docker again.
    3. If not, the daemon may still be stopping the container (its grace period) or
       may have abandoned the restart when our connection died. Wait up to
       ``settle_s`` for ``StartedAt`` to change; if it does not, run it again.
    """
    written = annotation_write_time(obj)
    written_ns = parse_rfc3339_ns(written) if written else None
    if written_ns is not None:
        written_s = written_ns // 1_000_000_000
        dispatch_s = record.dispatch_ns // 1_000_000_000
        rewritten = bool(record.annotation_time) and written != record.annotation_time
        # A later second is certainly a new write; the dispatch second itself counts when
        # the stamp differs from the one recorded at dispatch.
        if written_s > dispatch_s or (rewritten and written_s == dispatch_s):
            return ReplayVerdict.NEW_REQUEST
    deadline = clock() + settle_s
    while True:
        state = inspect().get("State") or {}
        if (state.get("StartedAt") or "") != record.started_at_before:
            return ReplayVerdict.ALREADY_DONE
        if clock() >= deadline:
            return ReplayVerdict.RUN_AGAIN
        wait(0.2)
