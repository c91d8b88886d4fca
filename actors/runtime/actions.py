"""Action dispatch (docs/contract.md §4.4) and the rules around it, as plain functions.

Called only from a container actor's thread, which serializes everything for one
container. Nothing here writes to Kubernetes; the actor does that.

* :func:`dispatch` runs one action against Docker with the contract's pre-checks and
  returns the error text for ``lastAction.error`` (None on success). Docker being
  unreachable is *not* an outcome: :class:`DockerUnavailable` propagates and the
  annotation stays for after the reconnect.
* :func:`last_action` builds the whole ``status.lastAction`` record.
* :class:`DispatchRecord`, :func:`annotation_write_time` and
  :func:`judge_restart_replay` implement the exactly-once restart rule
  (docs/actions.md, "Replays and exactly-once restart").
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from enum import Enum
from typing import Any

import msgspec

from actors.domain.names import ACTION_ANNOTATION, ACTIONS, DISPATCH_ANNOTATION
from actors.ports.docker_port import DockerError, DockerPort, DockerUnavailable

CONTAINER_ID = re.compile(r"^[0-9a-f]{64}$")


def is_valid_action(value: str | None) -> bool:
    return value in ACTIONS


def not_a_container_error(name: str) -> str:
    """``lastAction.error`` for a Container whose name is not a Docker container ID."""
    return (
        f'Container "{name}" is not a mirror of a Docker container: '
        "metadata.name must be the full 64-hex container ID"
    )


def no_such_container_error(container_id: str) -> str:
    """Docker's own text for an unknown container (what ``docker stop <id>`` prints)."""
    return f"Error response from daemon: No such container: {container_id}"


def is_same_container(inspect: dict[str, Any], container_id: str) -> bool:
    """True when Docker's answer is about ``container_id`` itself.

    Docker resolves a reference as an exact ID first, then as an exact *name*: a
    hand-made Container whose 64-hex name equals another container's name would
    otherwise start, stop or remove that other container (issue 10, point 5).
    """
    return inspect.get("Id") == container_id


def stop_timeout_of(inspect: dict[str, Any]) -> int | None:
    """The container's own ``StopTimeout`` (None: Docker's default applies)."""
    value = (inspect.get("Config") or {}).get("StopTimeout")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def dispatch(
    docker: DockerPort,
    action: str,
    container_id: str,
    *,
    inspect: dict[str, Any] | None = None,
) -> str | None:
    """Run ``action`` on ``container_id``; return None on success or the error text.

    Every action starts from an inspect (``inspect`` when the caller has a fresh one):
    it proves the ID names this very container (see :func:`is_same_container`), gives
    pause/unpause their pre-checks and stop/restart the container's stop timeout, which
    bounds the HTTP call. Raises DockerUnavailable when the engine cannot be reached
    (no outcome yet: the caller retries).
    """
    try:
        info = inspect if inspect is not None else docker.inspect(container_id)
        if not is_same_container(info, container_id):
            return no_such_container_error(container_id)
        state = info.get("State") or {}
        if action == "start":
            docker.start(container_id)
        elif action == "stop":
            docker.stop(container_id, stop_timeout_s=stop_timeout_of(info))
        elif action == "restart":
            docker.restart(container_id, stop_timeout_s=stop_timeout_of(info))
        elif action == "pause":
            if state.get("Paused"):
                return None  # already paused: success without a Docker call (docs/contract.md §4.4)
            docker.pause(container_id)
        elif action == "unpause":
            if not state.get("Running"):
                return f"cannot unpause container {container_id}: not running"
            if not state.get("Paused"):
                return None  # running and not paused: success, no Docker call
            docker.unpause(container_id)
        else:  # callers validate first; keep the table total anyway
            return f"unknown action {action!r}"
    except DockerUnavailable:
        raise
    except DockerError as exc:
        return str(exc)
    return None


def last_action(action: str, error: str | None, observed_at: str, completed_at: str) -> dict:
    """The whole ``status.lastAction``; ``error`` only when Failed (docs/contract.md §1.4)."""
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


class DispatchRecord(msgspec.Struct, kw_only=True, frozen=True):
    """A ``restart`` sent to Docker whose request is not finished yet.

    Stored as JSON in the Container's :data:`~actors.domain.names.DISPATCH_ANNOTATION`
    annotation, written (with the object's resourceVersion as precondition) *before*
    the Docker call and removed in the same merge patch that removes the action
    annotation. It lives in the cluster, so every instance of the service sees it: a
    new leader taking over after a SIGKILL judges the replay exactly as the same
    process would after a restart.
    """

    #: Docker's ``State.StartedAt`` before the call.
    started_at: str = msgspec.field(default="", name="startedAt")
    #: The action annotation's write stamp (``managedFields`` time) of the request.
    annotation_time: str = msgspec.field(default="", name="annotationTime")


_record_decoder = msgspec.json.Decoder(DispatchRecord)


def encode_dispatch_record(record: DispatchRecord) -> str:
    return msgspec.json.encode(record).decode()


def dispatch_record_of(obj: dict[str, Any]) -> DispatchRecord | None:
    """The object's dispatch record; None when absent or unreadable.

    An unreadable value can only come from a hand edit (the service writes valid JSON,
    and clients have no reason to touch it); it is treated as absent, so a pending
    ``restart`` runs, rather than swallowing the request.
    """
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(DISPATCH_ANNOTATION) if isinstance(annotations, dict) else None
    if not isinstance(value, str):
        return None
    try:
        return _record_decoder.decode(value)
    except msgspec.DecodeError:
        return None


def has_dispatch_record(obj: dict[str, Any]) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return isinstance(annotations, dict) and DISPATCH_ANNOTATION in annotations


class ReplayVerdict(Enum):
    NEW_REQUEST = "new_request"  # the open record is stale: a client asked again
    ALREADY_DONE = "already_done"  # Docker restarted the container after the dispatch
    RUN_AGAIN = "run_again"  # the earlier restart was abandoned half-way


def judge_restart_replay(
    record: DispatchRecord,
    obj: dict[str, Any],
    inspect: Callable[[], dict[str, Any]],
    *,
    settle_s: float,
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[float], None] = time.sleep,
) -> ReplayVerdict:
    """Decide what a pending ``restart`` that carries a dispatch record means.

    1. If the annotation's write stamp (the apiserver's ``managedFields`` time) differs
       from the stamp recorded at dispatch, a client wrote it again: a new request; the
       record outlived its request (the client rewrote the annotation while the
       restart was in flight, so our removal kept both). Only apiserver
       stamps are compared with each other, never with this host's clock, so clock skew
       between the two machines or a wall-clock jump cannot change the verdict.
    2. Otherwise it is a replay. If Docker's ``State.StartedAt`` changed since the
       dispatch, the restart ran: report it without calling Docker again.
    3. If not, the daemon may still be stopping the container (its grace period) or
       may have abandoned the restart when our connection died. Wait up to
       ``settle_s`` for ``StartedAt`` to change; if it does not, run it again.

    A record without a stamp (the object had no ``managedFields`` entry for the
    annotation) cannot tell a rewrite apart and is judged a replay: a lost duplicate
    request is the lesser harm than a second restart.
    """
    if record.annotation_time and annotation_write_time(obj) != record.annotation_time:
        return ReplayVerdict.NEW_REQUEST
    deadline = clock() + settle_s
    while True:
        state = inspect().get("State") or {}
        if (state.get("StartedAt") or "") != record.started_at:
            return ReplayVerdict.ALREADY_DONE
        if clock() >= deadline:
            return ReplayVerdict.RUN_AGAIN
        wait(0.2)
