"""One actor per container: the only writer of that container's mirror.

Everything that touches one container runs here, in this actor's thread and in inbox
order, so a container's sync, delete forwarding and actions never overlap, while
different containers proceed in parallel (each actor is a thread).

Handled messages:

* :class:`SyncContainer` - inspect, write the mirror (docs/contract.md §2.6), conditions (§1.6),
  then run a pending action if the mirror carries one;
* :class:`MirrorObserved` - the watch's newer view of the mirror: forward a delete
  (§3.6) or run the action (§4.3);
* :class:`ContainerGone` - Docker destroyed the container: remove the mirror (§3.4);
* :class:`Recover` - after a restart of this actor: read both sides again and finish
  whatever was pending (annotation replay, §4.7).

Failure semantics: NotFound and conflicts are handled where they occur. Any other
error answer of either port ends the message's handling with :class:`StepFailed` to
the router, which retries this container with per-item exponential backoff (a
:class:`Recover` that re-reads both sides and finishes whatever is pending) until a
retry succeeds (:class:`StepSucceeded`) or the object is gone; the annotation stays
meanwhile, so no request is consumed without an outcome. A non-retryable rejection
also leaves a Warning Event when a failure streak begins. Anything unexpected
propagates, kills this actor and the router restarts it with :class:`Recover`.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actors.domain.mirror_status import comparable_status, compute_conditions, mirror_status
from actors.domain.names import (
    ACTION_ANNOTATION,
    ACTIONS_MANAGER,
    DISPATCH_ANNOTATION,
    ENGINE_MANAGER,
    FINALIZER,
)
from actors.domain.timefmt import kube_now
from actors.infra import faults
from actors.infra.journal import Journal
from actors.infra.metrics import NO_METRICS, NoMetrics
from actors.ports.docker_port import (
    DockerError,
    DockerNotFound,
    DockerPort,
    DockerUnavailable,
    removal_in_progress,
)
from actors.ports.kube_port import (
    KubeConflict,
    KubeError,
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
from actors.ports.port_errors import PortError, is_retryable, retry_after_of
from actors.runtime._base import JournaledActor
from actors.runtime.actions import (
    CONTAINER_ID,
    DispatchRecord,
    ReplayVerdict,
    annotation_write_time,
    dispatch,
    dispatch_record_of,
    encode_dispatch_record,
    has_dispatch_record,
    is_same_container,
    is_valid_action,
    judge_restart_replay,
    last_action,
    no_such_container_error,
    not_a_container_error,
    stop_timeout_of,
)
from actors.runtime.fence import Fenced
from messages.base import Message
from messages.inbound import (
    ChildStopped,
    ContainerGone,
    EmitEvent,
    MirrorObserved,
    Recover,
    StepFailed,
    StepSucceeded,
    SyncContainer,
    SyncDone,
)

#: Why a retry was sent; a success of such a message resets the container's backoff.
RETRY_REASON = "retry"


class RetryLater(PortError):
    """Not an error: the step waits for something under way elsewhere; retry soon."""

    retryable = True
    retry_after = 0.5


# client-go's default conflict retry: 5 attempts (docs/contract.md §3.4, §4.5).
CONFLICT_ATTEMPTS = 5


class _Write(enum.Enum):
    """How :meth:`ContainerActor._write_retrying_conflicts` ended."""

    DONE = "done"
    UNNEEDED = "unneeded"  # the current object no longer needs the write
    GONE = "gone"  # the mirror does not exist (404)
    CONFLICTED = "conflicted"  # every attempt met a 409


DEFAULT_STOP_TIMEOUT_S = 10
RESTART_SETTLE_MARGIN_S = 5.0
#: A refused ``lastAction`` is tried once more with its error text cut to this length.
SHORT_ERROR_CHARS = 256


@dataclass(frozen=True)
class _Outcome:
    """A dispatched request's result, kept until its annotation is removed."""

    action: str
    stamp: str  # the annotation's write stamp (``managedFields`` time) when dispatched
    error: str | None
    observed_at: str


def _outcome_text(action: str, error: str | None) -> str:
    return f"{action} failed: {error}" if error is not None else f"{action} succeeded"


@dataclass
class ContainerDeps:
    """What every container actor shares. Built once by the supervisor."""

    docker: DockerPort
    store: MirrorStore
    journal: Journal
    report: Callable[[Message], None]  # tell the router; never raises
    emit: Callable[[EmitEvent], None]  # tell the event writer; never raises
    metrics: NoMetrics = NO_METRICS  # action outcomes and latency (actors/infra/metrics.py)
    #: Added to the container's stop grace before a replayed restart runs again.
    restart_settle_margin_s: float = RESTART_SETTLE_MARGIN_S


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
        return lambda *args, **kwargs: self._actor.effect("docker", op, fn, *args, **kwargs)


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
        # True after a reported StepFailed until a message is handled without error.
        self._failing = False
        self._outcome: _Outcome | None = None

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
        ok = self._step(message, self._sync)
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

        def handle() -> None:
            if is_terminating(obj):
                self._forward_delete(obj)
            elif annotation_of(obj) is not None:
                self._act(obj)
            else:
                self._outcome = None
                self._drop_stale_dispatch_record(obj)

        self._step(message, handle)

    def _on_container_gone(self, message: ContainerGone) -> None:
        self._step(message, self._remove_mirror)

    def _on_recover(self, message: Recover) -> None:
        def recover() -> None:
            self._obj = self._get()
            self._rv = max(self._rv, _rv_int(self._obj))
            self._sync()

        self._step(message, recover)

    def _step(self, message: Message, body: Callable[[], None]) -> bool:
        """Run one message's work; report a failure to the router for a retry.

        Runs on this actor's thread. Every error answer of either port ends here as
        :class:`StepFailed`; the router schedules a :class:`Recover` with this
        container's backoff. The success of that retry resets the backoff. Returns True
        on success. Other exceptions propagate and kill the actor (the router restarts
        it).
        """
        try:
            body()
        except (DockerError, DockerUnavailable, KubeError, RetryLater, Fenced) as exc:
            self._report_failure(exc)
            return False
        if isinstance(message, Recover) and message.reason == RETRY_REASON:
            # Only a retry redoes everything that may have failed (it re-reads both sides
            # and finishes what is pending); another message's success proves nothing
            # about the failed step, so it must not cancel the pending retry.
            self._failing = False
            self.deps.report(StepSucceeded(container_id=self.container_id))
        return True

    def _report_failure(self, exc: Exception) -> None:
        retryable = is_retryable(exc)
        error = f"{type(exc).__name__}: {exc}"
        self.note("step failed; retry scheduled", detail={"error": error[:500]})
        if not retryable and not self._failing:
            # A rejection that will not pass unchanged: say so where users look, once
            # per failure streak (the retries continue at the backoff's pace).
            self.log.warning("container %s: %s", self.container_id[:12], error)
            self._emit_warning("SyncFailed", "Sync", f"mirror update rejected: {exc}")
        self._failing = True
        self.deps.report(
            StepFailed(
                container_id=self.container_id,
                error=error[:500],
                retryable=retryable,
                retry_after_s=retry_after_of(exc) or 0.0,
                cause=self._current_msg_id,
            )
        )

    def _emit_warning(self, reason: str, action: str, note: str) -> None:
        self.deps.emit(
            EmitEvent(
                container_id=self.container_id,
                type="Warning",
                reason=reason,
                action=action,
                note=note[:1024],
                **self._regarding(),
                cause=self._current_msg_id,
            )
        )

    # --- mirror sync (docs/contract.md §2.6) ------------------------------------------------------
    def _sync(self) -> None:
        inspect = self._inspect_own()
        if inspect is None:
            self._remove_mirror()
            return
        obj = self._obj if self._obj is not None else self._get()
        if obj is not None and is_terminating(obj):
            self._forward_delete(obj)
            return
        if obj is None:
            # Creating the mirror: a rejection fails the step and is retried.
            obj = self._remember(
                self.effect("kube", "apply_metadata", self.store.apply_metadata, self.container_id)
            )
        elif not has_finalizer(obj):
            obj = self._apply_metadata() or obj
        status = mirror_status(inspect)
        if faults.bug("wrong_status"):
            status["exitCode"] = int(status.get("exitCode") or 0) + 1
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
                # the apply's answer is current, so re-assert it now (docs/contract.md §2.6,
                # §7 scenario 47).
                obj = self._apply_metadata() or obj
        if annotation_of(self._obj or obj) is not None:
            self._act(self._obj or obj)
        else:
            self._drop_stale_dispatch_record(self._obj or obj)

    def _inspect_own(self) -> dict[str, Any] | None:
        """Inspect this container; None when Docker has no container with this very ID.

        An answer about another container (Docker matched our name against a
        container's *name*) counts as "no such container": it must never be mirrored
        into this object (issue 10, point 5).
        """
        try:
            inspect = self.docker.inspect(self.container_id)
        except DockerNotFound:
            return None
        if not is_same_container(inspect, self.container_id):
            self.note("docker answered for another container", detail={"id": inspect.get("Id")})
            return None
        return inspect

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

    def _regarding(self) -> dict[str, str]:
        """The uid and resourceVersion of the mirror as last seen, for an Event about
        it (``kubectl describe`` finds Events by uid; the version keeps transitions apart)."""
        meta = (self._obj or {}).get("metadata") or {}
        return {
            "uid": str(meta.get("uid") or ""),
            "resource_version": str(meta.get("resourceVersion") or ""),
        }

    def _emit_condition_changes(self, changed: list[dict[str, Any]]) -> None:
        """One ``ConditionChanged`` Event per changed condition (docs/contract.md §1.6)."""
        for condition in changed:
            self.deps.emit(
                EmitEvent(
                    container_id=self.container_id,
                    type="Normal",
                    reason="ConditionChanged",
                    action=condition["type"],
                    note=condition["message"],
                    **self._regarding(),
                    cause=self._current_msg_id,
                )
            )

    # --- deletion (docs/contract.md §3.4, §3.6) -------------------------------------
    def _remove_mirror(self) -> None:
        """Docker already removed the container: strip the finalizer, delete; no Docker call.

        A write that fails raises (the step is retried); a mirror already gone is done.
        """
        self._outcome = None
        obj = self._get()
        if obj is None:
            return
        if has_finalizer(obj):
            self._strip_finalizer(obj)
        with contextlib.suppress(KubeNotFound):
            self.effect("kube", "delete", self.store.delete, self.container_id)
        self._obj = None

    def _forward_delete(self, obj: dict[str, Any]) -> None:
        """A user deleted the mirror: force-remove the container, then strip the finalizer.

        Only a container whose inspect answers with this very ID is removed (never one
        Docker matched by name). A failed removal raises, so the step is retried; the
        finalizer stays until the container is really gone.
        """
        if not has_finalizer(obj):
            return
        if CONTAINER_ID.match(self.container_id) and self._inspect_own() is not None:
            try:
                self.docker.remove(self.container_id)
            except DockerNotFound:
                pass
            except DockerError as exc:
                if not removal_in_progress(exc):
                    raise
                # Someone else (``docker rm``) is already removing it: not an error. Its
                # destroy event usually finishes the job; the retry makes sure of it.
                self.note("docker removal already in progress; checking again shortly")
                raise RetryLater("docker removal in progress") from exc
        self._strip_finalizer(obj)

    def _strip_finalizer(self, obj: dict[str, Any]) -> None:
        """Remove our finalizer with conflict retry; raises when conflicts persist."""

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
            raise KubeConflict(409, "finalizer not stripped: conflicts persisted")

    # --- actions (docs/contract.md §4) ---------------------------------------------------
    def _act(self, obj: dict[str, Any]) -> None:
        """Carry out the pending request on ``obj`` and record its outcome.

        The outcome of a dispatched request is kept until the annotation is removed, so
        a retry after a failed ``lastAction`` write or annotation removal records the
        same outcome instead of calling Docker again. A rewritten annotation (another
        write stamp) is a new request.
        """
        value = annotation_of(obj)
        if value is None:
            self._outcome = None
            self._drop_stale_dispatch_record(obj)
            return
        if is_terminating(obj):
            self.note("action skipped: mirror is being deleted", detail={"action": value})
            return
        if not is_valid_action(value):
            self.note("dropping invalid action", detail={"value": value})
            self._remove_annotation_if_still(obj, value)
            return
        stamp = annotation_write_time(obj)
        self.deps.metrics.action_seen(self.container_id, value, stamp)
        outcome = self._outcome
        if outcome is None or (outcome.action, outcome.stamp) != (value, stamp):
            outcome = self._outcome = self._run_action(value, stamp, obj)
        else:
            self.note("recording the outcome already known", detail={"action": value})
        self._finish(outcome, obj)
        self.deps.metrics.action_done(self.container_id, value, stamp, outcome.error)
        self._outcome = None

    def _run_action(self, action: str, stamp: str, obj: dict[str, Any]) -> _Outcome:
        """Call Docker for ``action``; DockerUnavailable propagates (no outcome yet)."""
        observed_at = kube_now()
        if not CONTAINER_ID.match(self.container_id):
            return _Outcome(action, stamp, not_a_container_error(self.container_id), observed_at)
        if action == "restart":
            error = self._restart_exactly_once(obj)
        else:
            faults.hit("action.before_docker")
            self.log.info("%s container %s", action, self.container_id[:12])
            error = dispatch(self.docker, action, self.container_id)  # type: ignore[arg-type]
        faults.hit("action.after_docker")
        return _Outcome(action, stamp, error, observed_at)

    def _restart_exactly_once(self, obj: dict[str, Any]) -> str | None:
        """Run a requested restart once, whatever crashed or changed leader before.

        The dispatch record goes into the Container itself (a merge patch under the
        object's resourceVersion) *before* the Docker call, and leaves it with the
        action annotation, in one patch (:meth:`_remove_annotation_if_still`). So a
        pending ``restart`` that carries a record was sent to Docker by some instance
        and is judged a replay; one without a record was not sent. A failing record
        write raises (the step is retried, the annotation stays): no restart without
        its record.
        """
        record = dispatch_record_of(obj)
        if record is not None:
            verdict = self._judge_replay(record, obj)
            self.note("restart replay judged", detail={"verdict": verdict.value})
            if verdict is ReplayVerdict.ALREADY_DONE:
                return None
        try:
            inspect = self._inspect_own()
        except DockerError as exc:
            return str(exc)
        if inspect is None:
            return no_such_container_error(self.container_id)
        self._write_dispatch_record(
            obj,
            DispatchRecord(
                started_at=(inspect.get("State") or {}).get("StartedAt") or "",
                annotation_time=annotation_write_time(obj),
            ),
        )
        faults.hit("action.before_docker")
        self.log.info("restart container %s", self.container_id[:12])
        error = dispatch(self.docker, "restart", self.container_id, inspect=inspect)  # type: ignore[arg-type]
        if faults.bug("double_restart"):
            dispatch(self.docker, "restart", self.container_id)  # type: ignore[arg-type]
        return error

    def _write_dispatch_record(self, obj: dict[str, Any], record: DispatchRecord) -> None:
        """Store ``record`` on the mirror under ``obj``'s resourceVersion.

        A 409 means someone wrote the object since ``obj`` (perhaps a new value of the
        annotation): it propagates, so the step is retried from a fresh read rather than
        restarting on a stale view. Every other error propagates too.
        """
        self._remember(
            self.effect(
                "kube",
                "write_dispatch_record",
                self.store.patch_metadata,
                self.container_id,
                {"annotations": {DISPATCH_ANNOTATION: encode_dispatch_record(record)}},
                resource_version=resource_version_of(obj),
                field_manager=ACTIONS_MANAGER,
            )
        )

    def _drop_stale_dispatch_record(self, obj: dict[str, Any] | None) -> None:
        """Remove a dispatch record left without its request (a client removed the
        action annotation itself while a restart was in flight). A no-op without one."""
        if obj is None or not has_dispatch_record(obj) or annotation_of(obj) is not None:
            return

        def drop(current: dict[str, Any], attempt: int) -> dict[str, Any]:
            return self._remember(
                self.effect(
                    "kube",
                    "drop_dispatch_record",
                    self.store.patch_metadata,
                    self.container_id,
                    {"annotations": {DISPATCH_ANNOTATION: None}},
                    resource_version=resource_version_of(current),
                    field_manager=ACTIONS_MANAGER,
                    detail={"attempt": attempt},
                )
            )

        outcome, _ = self._write_retrying_conflicts(
            obj,
            needed=lambda cur: has_dispatch_record(cur) and annotation_of(cur) is None,
            write=drop,
        )
        if outcome is _Write.CONFLICTED:
            raise KubeConflict(409, "dispatch record not removed: conflicts persisted")

    def _judge_replay(self, record: DispatchRecord, obj: dict[str, Any]) -> ReplayVerdict:
        """Judge with Docker's StartedAt; if it has not moved, wait the container's grace
        period plus a margin *from now* (the dispatch may have come from another
        instance, whose clocks we never compare with ours) before running it again."""

        def inspect() -> dict[str, Any]:
            return self.docker.inspect(self.container_id)

        info = self._inspect_own()
        if info is None:
            return ReplayVerdict.RUN_AGAIN  # dispatch reports Docker's NotFound text
        stop_timeout = stop_timeout_of(info)
        grace = DEFAULT_STOP_TIMEOUT_S if stop_timeout is None else max(0, stop_timeout)
        settle = grace + self.deps.restart_settle_margin_s
        try:
            return judge_restart_replay(record, obj, inspect, settle_s=settle)
        except DockerNotFound:
            return ReplayVerdict.RUN_AGAIN

    def _finish(self, outcome: _Outcome, obj: dict[str, Any]) -> None:
        """Record the outcome, remove the annotation, then emit an Event (docs/contract.md §4.3).

        A failing write raises (the step is retried with the same outcome); see
        :meth:`_record_outcome` for a record the server refuses for good.
        """
        action, error = outcome.action, outcome.error
        record = last_action(action, error, outcome.observed_at, kube_now())
        # The self-test's planted bug skips the record (scripts/chaos --self-test).
        dropped = faults.bug("drop_last_action")
        fresh = self._get() if dropped else self._record_outcome(record, obj)
        faults.hit("action.after_last_action")
        if fresh is not None and not faults.bug("leave_annotation"):
            self._remove_annotation_if_still(fresh, action)
            faults.hit("action.after_annotation_removed")
        # After the removal: the client waits for the annotation to disappear, so the
        # Event's write must not compete with that one for the apiserver.
        self.deps.emit(
            EmitEvent(
                container_id=self.container_id,
                type="Warning" if error is not None else "Normal",
                reason="ActionFailed" if error is not None else "ActionSucceeded",
                action=action,
                note=_outcome_text(action, error),
                **self._regarding(),
                cause=self._current_msg_id,
            )
        )

    def _record_outcome(self, record: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any] | None:
        """Write ``lastAction``; return the fresh object (None when the mirror is gone).

        Transient failures and 403 raise, so the step is retried and the annotation
        stays. When the server refuses the record itself (400/413/422, e.g. an error
        text too long for it or a hand-made object whose status fails validation), the
        record is tried once more with the error text shortened; if that is refused
        too, the outcome can never be recorded: the request is consumed anyway (the
        annotation removed, so it cannot block the object forever) and the outcome
        goes into a Warning Event ``ActionNotRecorded`` and the journal instead.
        """
        try:
            return self._patch_last_action(record, obj)
        except KubeInvalid as exc:
            refused: KubeError = exc
        error = record.get("error")
        if isinstance(error, str) and len(error) > SHORT_ERROR_CHARS:
            shortened = {**record, "error": error[: SHORT_ERROR_CHARS - 3] + "..."}
            try:
                return self._patch_last_action(shortened, obj)
            except KubeInvalid as exc:
                refused = exc
        action = str(record.get("action"))
        text = _outcome_text(action, error if isinstance(error, str) else None)
        self.note(
            "lastAction refused; request consumed, outcome in a Warning Event",
            detail={"error": str(refused)[:500], "outcome": text[:500]},
        )
        self.log.warning(
            "container %s: %s; status.lastAction refused: %s", self.container_id[:12], text, refused
        )
        self._emit_warning(
            "ActionNotRecorded",
            action,
            f"{text}; the outcome could not be written to status.lastAction: {refused}",
        )
        return self._get()

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
        """Remove the annotation only while it still holds ``value`` (docs/contract.md §4.5).

        The restart dispatch record leaves in the same merge patch: the request and its
        record end atomically, so no crash can leave one without the other.

        Raises KubeUnavailable when conflicts persist, so the request is replayed.
        """

        def remove(current: dict[str, Any], attempt: int) -> dict[str, Any]:
            return self._remember(
                self.effect(
                    "kube",
                    "remove_annotation",
                    self.store.patch_metadata,
                    self.container_id,
                    {"annotations": {ACTION_ANNOTATION: None, DISPATCH_ANNOTATION: None}},
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
