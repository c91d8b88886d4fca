"""One actor per container: the only writer of that container's mirror.

Everything that touches one container runs here, in this actor's thread and in inbox
order, so a container's sync, delete forwarding and actions never overlap, while
different containers proceed in parallel (each actor is a thread).

Handled messages:

* :class:`SyncContainer` - inspect, write the mirror (spec §2.6), conditions (§1.6),
  then run a pending action if the mirror carries one;
* :class:`MirrorObserved` - the watch's newer view of the mirror: forward a delete
  (§3.6) or run the action (§4.3);
* :class:`ContainerGone` - Docker destroyed the container: remove the mirror (§3.4);
* :class:`Recover` - after a restart of this actor: read both sides again and finish
  whatever was pending (annotation replay, §4.7).

Failure semantics: expected failures (NotFound, conflicts, an unreachable engine or
apiserver) are handled here and journaled; the annotation then stays and is replayed
after the reconnect's full sync or relist. Anything unexpected propagates, kills this
actor and the router restarts it with :class:`Recover`.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actors import faults
from actors._base import JournaledActor
from actors.actions import (
    CONTAINER_ID,
    ReplayVerdict,
    annotation_write_time,
    dispatch,
    is_valid_action,
    judge_restart_replay,
    last_action,
    not_a_container_error,
)
from actors.docker_port import (
    DockerError,
    DockerNotFound,
    DockerPort,
    DockerUnavailable,
    removal_in_progress,
)
from actors.journal import Journal
from actors.kube_port import (
    ACTION_ANNOTATION,
    ACTIONS_MANAGER,
    ENGINE_MANAGER,
    FINALIZER,
    KubeConflict,
    KubeForbidden,
    KubeInvalid,
    KubeNotFound,
    KubeUnavailable,
    MirrorStore,
    annotation_of,
    has_finalizer,
    is_terminating,
    resource_version_of,
)
from actors.ledger import RestartLedger, RestartRecord
from actors.mirror_status import comparable_status, compute_conditions, mirror_status
from actors.timefmt import kube_now
from messages.base import Message
from messages.inbound import (
    ChildStopped,
    ContainerGone,
    EmitEvent,
    MirrorObserved,
    Recover,
    SyncContainer,
    SyncDone,
)

# client-go's default conflict retry: 5 attempts (spec §3.4, §4.5).
CONFLICT_ATTEMPTS = 5


class _Write(enum.Enum):
    """How :meth:`ContainerActor._write_retrying_conflicts` ended."""

    DONE = "done"
    UNNEEDED = "unneeded"  # the current object no longer needs the write
    GONE = "gone"  # the mirror does not exist (404)
    CONFLICTED = "conflicted"  # every attempt met a 409


DEFAULT_STOP_TIMEOUT_S = 10
RESTART_SETTLE_MARGIN_S = 5.0


@dataclass
class ContainerDeps:
    """What every container actor shares. Built once by the supervisor."""

    docker: DockerPort
    store: MirrorStore
    journal: Journal
    ledger: RestartLedger
    report: Callable[[Message], None]  # tell the router; never raises
    emit: Callable[[EmitEvent], None]  # tell the event writer; never raises


# The CRD requires these status fields whenever ``status`` exists. A hand-made Container
# (no Docker counterpart, never synced) has no status, so recording its lastAction must
# supply them; ``status: unknown`` says what we know about such an object.
_REQUIRED_STATUS = {"name": "", "namespace": "moby", "path": "", "image": "", "status": "unknown"}


def _required_status_placeholders(obj: dict[str, Any]) -> dict[str, Any]:
    status = obj.get("status") or {}
    return {key: value for key, value in _REQUIRED_STATUS.items() if key not in status}


def _rv_int(obj: dict[str, Any] | None) -> int:
    try:
        return int(resource_version_of(obj or {}) or 0)
    except ValueError:
        return 0


class _JournaledDocker:
    """The Docker port as seen by one actor: every call becomes an effect line."""

    def __init__(self, actor: ContainerActor, port: DockerPort) -> None:
        self._actor = actor
        self._port = port

    def __getattr__(self, op: str) -> Callable[..., Any]:
        fn = getattr(self._port, op)
        return lambda *args: self._actor.effect("docker", op, fn, *args)


class ContainerActor(JournaledActor):
    """Serializes everything for one container ID. Runs in its own pykka thread."""

    actor_kind = "container"

    def __init__(
        self,
        *,
        deps: ContainerDeps,
        container_id: str,
        incarnation: int = 0,
        initial_obj: dict[str, Any] | None = None,
        on_death: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__(
            journal=deps.journal,
            name=f"container/{container_id[:12]}",
            container_id=container_id,
            on_death=on_death,
        )
        self.deps = deps
        self.incarnation = incarnation
        self.docker = _JournaledDocker(self, deps.docker)
        self.store = deps.store
        # Our latest view of the mirror (from the watch or from our own writes).
        self._obj: dict[str, Any] | None = initial_obj or None
        self._rv = _rv_int(initial_obj)

    def handlers(self) -> dict[type, Callable[[Any], None]]:
        return {
            SyncContainer: self._on_sync,
            MirrorObserved: self._on_mirror_observed,
            ContainerGone: self._on_container_gone,
            Recover: self._on_recover,
        }

    def on_receive(self, message: Any) -> Any:
        faults.hit("container.on_receive")
        return super().on_receive(message)

    def on_start(self) -> None:
        # pykka reports an on_start failure to nobody; the router's liveness sweep does.
        faults.hit("container.on_start")

    def on_stop(self) -> None:
        self.deps.report(ChildStopped(container_id=self.container_id, incarnation=self.incarnation))

    # --- message handlers ----------------------------------------------------------
    def _on_sync(self, message: SyncContainer) -> None:
        ok = True
        try:
            self._sync()
        except (DockerUnavailable, KubeUnavailable) as exc:
            ok = False
            self.note("sync postponed: a side is unreachable", detail={"error": str(exc)})
        finally:
            if message.token:
                self.deps.report(
                    SyncDone(
                        container_id=self.container_id,
                        token=message.token,
                        ok=ok,
                        cause=message.msg_id,
                    )
                )

    def _on_mirror_observed(self, message: MirrorObserved) -> None:
        obj = message.obj
        if _rv_int(obj) < self._rv:
            self.note("stale mirror view ignored", detail={"rv": resource_version_of(obj)})
            return
        self._remember(obj)
        try:
            if is_terminating(obj):
                self._forward_delete(obj)
            elif annotation_of(obj) is not None:
                self._act(obj)
            else:
                self.deps.ledger.close(self.container_id)
        except (DockerUnavailable, KubeUnavailable) as exc:
            self.note("postponed: a side is unreachable", detail={"error": str(exc)})

    def _on_container_gone(self, message: ContainerGone) -> None:
        try:
            self._remove_mirror()
        except KubeUnavailable as exc:
            self.note("mirror removal postponed", detail={"error": str(exc)})

    def _on_recover(self, message: Recover) -> None:
        try:
            self._obj = self._get()
            self._rv = max(self._rv, _rv_int(self._obj))
            self._sync()
        except (DockerUnavailable, KubeUnavailable) as exc:
            self.note("recovery postponed: a side is unreachable", detail={"error": str(exc)})

    # --- mirror sync (spec §2.6) ------------------------------------------------------
    def _sync(self) -> None:
        try:
            inspect = self.docker.inspect(self.container_id)
        except DockerNotFound:
            self._remove_mirror()
            return
        obj = self._obj if self._obj is not None else self._get()
        if obj is not None and is_terminating(obj):
            self._forward_delete(obj)
            return
        if obj is None or not has_finalizer(obj):
            obj = self._apply_metadata() or obj
            if obj is None:
                return
        status = mirror_status(inspect)
        stored = obj.get("status") or {}
        # Conditions travel in the same apply as the fields they derive from: one write
        # per change instead of two, and never a state where they disagree. They are
        # computed from the stored ones (transition times kept), so nothing is clobbered;
        # lastAction belongs to another manager and is never sent here.
        conditions, changed = compute_conditions(
            status["status"], stored.get("conditions"), kube_now()
        )
        if comparable_status(stored) != status or changed:
            faults.hit("sync.before_status")
            try:
                obj = self._remember(
                    self.effect(
                        "kube",
                        "apply_status",
                        self.store.apply_status,
                        self.container_id,
                        {**status, "conditions": conditions},
                    )
                )
            except KubeNotFound:
                self._obj = None
                return
            self._emit_condition_changes(changed)
            if not has_finalizer(obj) and not is_terminating(obj):
                # Our cached view still had the finalizer a client has since stripped;
                # the apply's answer is current, so re-assert it now (spec §2.6, §7-47).
                obj = self._apply_metadata() or obj
        if annotation_of(self._obj or obj) is not None:
            self._act(self._obj or obj)
        else:
            self.deps.ledger.close(self.container_id)

    def _apply_metadata(self) -> dict[str, Any] | None:
        try:
            return self._remember(
                self.effect("kube", "apply_metadata", self.store.apply_metadata, self.container_id)
            )
        except (KubeForbidden, KubeInvalid) as exc:
            # E.g. an invalid annotation already stored: the webhook rejects every UPDATE
            # that keeps it. The action pass removes it; the next sync re-asserts.
            self.note("metadata apply rejected", detail={"error": str(exc)})
            return None

    def _emit_condition_changes(self, changed: list[dict[str, Any]]) -> None:
        """One ``ConditionChanged`` Event per changed condition (spec §1.6)."""
        for condition in changed:
            self.deps.emit(
                EmitEvent(
                    container_id=self.container_id,
                    type="Normal",
                    reason="ConditionChanged",
                    action=condition["type"],
                    note=condition["message"],
                    reporting_controller="container-controller",
                    cause=self._current_msg_id,
                )
            )

    # --- deletion (spec §3.4, §3.6) ------------------------------------------------------
    def _remove_mirror(self) -> None:
        """Docker already removed the container: strip the finalizer, delete; no Docker call."""
        self.deps.ledger.close(self.container_id)
        obj = self._get()
        if obj is None:
            return
        if has_finalizer(obj) and not self._strip_finalizer(obj):
            return
        with contextlib.suppress(KubeNotFound):
            self.effect("kube", "delete", self.store.delete, self.container_id)
        self._obj = None

    def _forward_delete(self, obj: dict[str, Any]) -> None:
        """A user deleted the mirror: force-remove the container, then strip the finalizer."""
        if not has_finalizer(obj):
            return
        if CONTAINER_ID.match(self.container_id):
            try:
                self.docker.remove(self.container_id)
            except DockerNotFound:
                pass
            except DockerError as exc:
                if removal_in_progress(exc):
                    # Someone else (``docker rm``) is already removing it: not an error.
                    # Its destroy event arrives as ContainerGone, which strips the finalizer.
                    self.note("docker removal already in progress; destroy event finishes it")
                    return
                # The finalizer stays; the destroy event or the next sync retries.
                self.note("docker remove failed; finalizer kept", detail={"error": str(exc)})
                return
        self._strip_finalizer(obj)

    def _strip_finalizer(self, obj: dict[str, Any]) -> bool:
        """Remove our finalizer with conflict retry. True when done (or object gone)."""

        def strip(current: dict[str, Any], attempt: int) -> dict[str, Any]:
            finalizers = (current.get("metadata") or {}).get("finalizers") or []
            result = self.effect(
                "kube",
                "strip_finalizer",
                self.store.patch_metadata,
                self.container_id,
                {"finalizers": [f for f in finalizers if f != FINALIZER]},
                resource_version=resource_version_of(current),
                field_manager=ENGINE_MANAGER,
            )
            return self._remember(result) if result else result

        outcome, _ = self._write_retrying_conflicts(obj, needed=has_finalizer, write=strip)
        if outcome is _Write.CONFLICTED:
            self.note("finalizer not stripped: conflicts persisted")
            return False
        return True

    # --- actions (spec §4) -----------------------------------------------------------------
    def _act(self, obj: dict[str, Any]) -> None:
        value = annotation_of(obj)
        if value is None:
            self.deps.ledger.close(self.container_id)
            return
        if is_terminating(obj):
            self.note("action skipped: mirror is being deleted", detail={"action": value})
            return
        if not is_valid_action(value):
            self.note("dropping invalid action", detail={"value": value})
            self._remove_annotation_if_still(obj, value)
            return
        observed_at = kube_now()
        if not CONTAINER_ID.match(self.container_id):
            self._finish(value, not_a_container_error(self.container_id), observed_at, obj)
            return
        if value == "restart":
            error = self._restart_exactly_once(obj)
        else:
            faults.hit("action.before_docker")
            self.log.info("%s container %s", value, self.container_id[:12])
            error = dispatch(self.docker, value, self.container_id)  # type: ignore[arg-type]
        faults.hit("action.after_docker")
        self._finish(value, error, observed_at, obj)

    def _restart_exactly_once(self, obj: dict[str, Any]) -> str | None:
        record = self.deps.ledger.open_record(self.container_id)
        if record is not None:
            verdict = self._judge_replay(record, obj)
            self.note("restart replay judged", detail={"verdict": verdict.value})
            if verdict is ReplayVerdict.ALREADY_DONE:
                return None
            if verdict is ReplayVerdict.NEW_REQUEST:
                self.deps.ledger.close(self.container_id)
        try:
            inspect = self.docker.inspect(self.container_id)
        except DockerError as exc:
            return str(exc)
        self.deps.ledger.dispatch(
            RestartRecord(
                container_id=self.container_id,
                started_at_before=(inspect.get("State") or {}).get("StartedAt") or "",
                dispatch_ns=time.time_ns(),
                annotation_time=annotation_write_time(obj),
            )
        )
        faults.hit("action.before_docker")
        self.log.info("restart container %s", self.container_id[:12])
        return dispatch(self.docker, "restart", self.container_id)  # type: ignore[arg-type]

    def _judge_replay(self, record: RestartRecord, obj: dict[str, Any]) -> ReplayVerdict:
        def inspect() -> dict[str, Any]:
            return self.docker.inspect(self.container_id)

        try:
            config = inspect().get("Config") or {}
        except DockerNotFound:
            return ReplayVerdict.RUN_AGAIN  # dispatch reports the daemon's NotFound text
        stop_timeout = config.get("StopTimeout")
        grace = stop_timeout if isinstance(stop_timeout, int) else DEFAULT_STOP_TIMEOUT_S
        elapsed = (time.time_ns() - record.dispatch_ns) / 1e9
        settle = max(0.0, grace + RESTART_SETTLE_MARGIN_S - elapsed)
        try:
            return judge_restart_replay(record, obj, inspect, settle_s=settle)
        except DockerNotFound:
            return ReplayVerdict.RUN_AGAIN

    def _finish(
        self, action: str, error: str | None, observed_at: str, obj: dict[str, Any]
    ) -> None:
        """Record the outcome, remove the annotation (spec §4.3 order), then emit an Event."""
        record = last_action(action, error, observed_at, kube_now())
        try:
            fresh = self._patch_last_action(record, obj)
        except (KubeInvalid, KubeForbidden) as exc:
            # The server refuses the record (e.g. a malformed hand-made object). Never
            # leave the annotation stuck: note it and consume the request anyway.
            self.note("lastAction rejected; consuming the request", detail={"error": str(exc)})
            fresh = self._get()
        faults.hit("action.after_last_action")
        if fresh is not None:
            self._remove_annotation_if_still(fresh, action)
            faults.hit("action.after_annotation_removed")
        self.deps.ledger.close(self.container_id)
        # After the removal: the client waits for the annotation to disappear, so the
        # Event's write must not compete with that one for the apiserver.
        self.deps.emit(
            EmitEvent(
                container_id=self.container_id,
                type="Warning" if error is not None else "Normal",
                reason="ActionFailed" if error is not None else "ActionSucceeded",
                action=action,
                note=f"{action} failed: {error}" if error is not None else f"{action} succeeded",
                cause=self._current_msg_id,
            )
        )

    def _patch_last_action(
        self, record: dict[str, Any], base: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch ``status.lastAction`` with an RV precondition; None if the mirror is gone.

        Raises KubeUnavailable when conflicts persist, so the request is replayed.
        """
        obj: dict[str, Any] | None = self._obj if _rv_int(self._obj) >= _rv_int(base) else base

        def patch(current: dict[str, Any], attempt: int) -> dict[str, Any]:
            return self._remember(
                self.effect(
                    "kube",
                    "patch_last_action",
                    self.store.patch_status,
                    self.container_id,
                    {**_required_status_placeholders(current), "lastAction": record},
                    resource_version=resource_version_of(current),
                    field_manager=ACTIONS_MANAGER,
                    detail={"attempt": attempt},
                )
            )

        outcome, result = self._write_retrying_conflicts(obj, needed=lambda _: True, write=patch)
        if outcome is _Write.CONFLICTED:
            raise KubeUnavailable(None, "lastAction not written: conflicts persisted; will replay")
        return result if outcome is _Write.DONE else None

    def _remove_annotation_if_still(self, base: dict[str, Any], value: str) -> None:
        """Remove the annotation only while it still holds ``value`` (spec §4.5).

        Raises KubeUnavailable when conflicts persist, so the request is replayed.
        """

        def remove(current: dict[str, Any], attempt: int) -> dict[str, Any]:
            return self._remember(
                self.effect(
                    "kube",
                    "remove_annotation",
                    self.store.patch_metadata,
                    self.container_id,
                    {"annotations": {ACTION_ANNOTATION: None}},
                    resource_version=resource_version_of(current),
                    field_manager=ACTIONS_MANAGER,
                    detail={"attempt": attempt, "value": value},
                )
            )

        outcome, _ = self._write_retrying_conflicts(
            base, needed=lambda current: annotation_of(current) == value, write=remove
        )
        if outcome is _Write.CONFLICTED:
            raise KubeUnavailable(None, "annotation not removed: conflicts persisted; will replay")

    def _write_retrying_conflicts(
        self,
        obj: dict[str, Any] | None,
        *,
        needed: Callable[[dict[str, Any]], bool],
        write: Callable[[dict[str, Any], int], dict[str, Any]],
    ) -> tuple[_Write, dict[str, Any] | None]:
        """Run ``write(obj, attempt)`` under ``obj``'s resourceVersion; on 409 re-read and retry.

        Runs on this actor's thread. Before each attempt ``needed(obj)`` is asked again,
        because the fresh object may show the write is no longer wanted (a client
        overwrote the annotation, stripped the finalizer). At most
        :data:`CONFLICT_ATTEMPTS` writes; KubeUnavailable and other errors propagate.
        """
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            if obj is None:
                return _Write.GONE, None
            if not needed(obj):
                return _Write.UNNEEDED, obj
            try:
                return _Write.DONE, write(obj, attempt)
            except KubeNotFound:
                self._obj = None
                return _Write.GONE, None
            except KubeConflict:
                obj = self._get()
        return _Write.CONFLICTED, None

    # --- helpers -----------------------------------------------------------------------------
    def _get(self) -> dict[str, Any] | None:
        try:
            return self._remember(self.effect("kube", "get", self.store.get, self.container_id))
        except KubeNotFound:
            self._obj = None
            return None

    def _remember(self, obj: dict[str, Any]) -> dict[str, Any]:
        if obj and _rv_int(obj) >= self._rv:
            self._obj = obj
            self._rv = _rv_int(obj)
        return obj


__all__ = ["ContainerActor", "ContainerDeps"]
