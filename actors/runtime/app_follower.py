"""The App follower: App mode's actor (``--app``, docs/contract.md §3.1, §3.5).

It owns App mode's lifecycle, one message at a time in its own pykka thread:

1. every App the app-watch reader observes goes through the pure decision
   (:func:`actors.domain.app_mode.decide`): mirror (``RUN``), clean up and report
   ``Stopped``/``NotApplicable`` (``CLEAN``), or clean up and hand over because the App now
   names another namespace (``MOVED``);
2. mirroring is switched on and off through the :class:`MirroringSwitch` (the supervisor
   starts and stops the router and the readers on its main thread and confirms with
   :class:`MirroringChanged`); the cleanup starts only after that confirmation, so no
   mirror is written while it runs;
3. the cleanup lists every object of the four kinds in the namespace, strips the mirror
   finalizer and deletes each (no Docker call; a kind whose CRD is not installed counts
   as clean; per-item errors are collected, one bad object does not block the rest),
   then checks every 0.2 s until all four lists are empty, for at most 30 s. Only then
   is the terminal condition written. A failed pass or a timeout is retried with
   backoff (0.2 s doubling to 60 s), and the condition stays as it was meanwhile;
4. while mirroring, ``ContainerEngineReady`` follows what the router reports through
   ``EngineStatus``'s listener (:class:`EngineReadiness`): ``Connected`` after the full
   sync, ``ConnectFailed`` while Docker is unreachable. A start that failed is
   ``ConnectFailed`` too, and retried with backoff.

Every condition write reads the App afresh and writes only if the fresh App still asks
for what was decided (an App that changed meanwhile is decided again when its watch
event arrives), stamping ``observedGeneration`` (5 attempts on 409).

Failure owners: Kubernetes errors of the cleanup and of condition writes are retried
with backoff here and logged; the follower dying is the supervisor's (restart with
backoff inside the restart budget); a restarted follower learns from the switch whether
mirroring runs and whether mirrors may be left.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from actors.domain.app_mode import (
    CLEANUP_KINDS,
    CONNECT_FAILED,
    KIND_NAMES,
    AppView,
    Condition,
    Decision,
    Target,
    already_written,
    cleanup_error,
    conditions_of,
    decide,
    needs_cleanup,
    read_app,
    readiness_condition,
    set_condition,
    strip_patch,
)
from actors.domain.names import CONTAINER_ENGINE_READY
from actors.domain.retry_queue import ItemBackoff, RetryQueue
from actors.domain.timefmt import kube_now
from actors.infra.journal import Journal
from actors.ports.app_port import AppApi, MirrorSweeper
from actors.ports.kube_port import KubeConflict, KubeError, KubeNotFound
from actors.runtime._base import JournaledActor
from actors.runtime.mirroring_switch import MirroringSwitch
from actors.runtime.router import _TimerWakeup
from messages.app import AppDeleted, AppObserved, AppRetryDue, EngineReadiness, MirroringChanged
from messages.base import Message

log = logging.getLogger("dockmirror.app")

#: The cleanup's wait for the four lists to be empty (upstream's numbers).
POLL_INTERVAL_S = 0.2
CLEANUP_TIMEOUT_S = 30.0
#: Attempts of one condition write or finalizer strip on 409 (client-go's DefaultRetry).
CONFLICT_ATTEMPTS = 5
#: Retry-queue keys.
CLEANUP = "cleanup"
POLL = "poll"
CONDITION = "condition"
START = "start"
REFRESH = "refresh"
#: Outcomes of :func:`write_engine_condition`.
WRITTEN, UNCHANGED, SUPERSEDED, ABSENT = "written", "unchanged", "superseded", "absent"


def write_engine_condition(
    api: AppApi,
    wanted: Condition,
    *,
    namespace: str,
    expected: Decision,
    now: Callable[[], str] = kube_now,
    attempts: int = CONFLICT_ATTEMPTS,
) -> str:
    """Set ``ContainerEngineReady`` to ``wanted`` on the App, read afresh each attempt.

    Written only while the fresh App still decides to ``expected``; returns
    ``written``, ``unchanged`` (already so), ``superseded`` (the App asks for something
    else now) or ``absent`` (no App). Raises the last :class:`KubeConflict` after
    ``attempts`` conflicts, and any other KubeError at once. Blocking; caller's thread.
    """
    for attempt in range(attempts):
        try:
            obj = api.get()
        except KubeNotFound:
            return ABSENT
        view = read_app(obj)
        if decide(view, namespace) != expected:
            return SUPERSEDED
        conditions = set_condition(
            conditions_of(obj),
            CONTAINER_ENGINE_READY,
            wanted,
            generation=view.generation,
            now=now(),
        )
        if conditions is None:
            return UNCHANGED
        resource_version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        try:
            api.patch_conditions(conditions, resource_version=resource_version)
        except KubeNotFound:
            return ABSENT
        except KubeConflict:
            if attempt + 1 >= attempts:
                raise
            continue
        return WRITTEN
    raise AssertionError("unreachable")  # pragma: no cover


class AppFollower(JournaledActor):
    """Follows the App: switches mirroring, cleans up, writes ContainerEngineReady."""

    actor_kind = "app"

    def __init__(
        self,
        *,
        journal: Journal,
        api: AppApi,
        sweeper: MirrorSweeper,
        switch: MirroringSwitch,
        namespace: str,
        on_moved: Callable[[str], None],
        on_death: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        now_text: Callable[[], str] = kube_now,
        wake_at: Callable[[float, Callable[[], None]], None] | None = None,
        poll_interval_s: float = POLL_INTERVAL_S,
        cleanup_timeout_s: float = CLEANUP_TIMEOUT_S,
        backoff: ItemBackoff | None = None,
    ) -> None:
        super().__init__(journal=journal, name="app", on_death=on_death)
        self.api = api
        self.sweeper = sweeper
        self.switch = switch
        self.namespace = namespace
        self.on_moved = on_moved
        self.clock = clock
        self.now_text = now_text
        self._wake_at = wake_at or _TimerWakeup(clock).wake_at
        self.poll_interval_s = poll_interval_s
        self.cleanup_timeout_s = cleanup_timeout_s
        self.retries = RetryQueue(backoff or ItemBackoff(base_s=0.2, cap_s=60.0))
        self.view: AppView | None = None
        self.mirroring = False
        self.epoch = 0
        #: The switch request not confirmed yet (None: none pending).
        self.requested: bool | None = None
        #: ContainerEngineReady as the router's latest report of this run says.
        self.readiness: Condition | None = None
        #: A report of a run whose start is not confirmed yet: (epoch, condition).
        self.early_readiness: tuple[int, Condition] | None = None
        #: The cleanup's wait: when it gives up (None: no wait in progress).
        self.poll_deadline: float | None = None
        self.cleaned_generation: int | None = None
        self.moved_reported = False
        self.last_target: Decision | None = None

    def handlers(self) -> dict[type, Callable[[Any], None]]:
        return {
            AppObserved: self._on_app_observed,
            AppDeleted: self._on_app_deleted,
            MirroringChanged: self._on_mirroring_changed,
            EngineReadiness: self._on_engine_readiness,
            AppRetryDue: self._on_retry_due,
        }

    # --- lifecycle (follower thread) ----------------------------------------------------
    def on_start(self) -> None:
        state = self.switch.state()
        self.mirroring = state.on
        self.epoch = state.epoch
        # A restarted follower has no App yet, and the watch may not send one until the
        # App changes: read it (as a retry due now, so a failure backs off).
        self.retries.schedule(REFRESH, self.clock())
        self._arm_wakeup()

    def on_stop(self) -> None:
        self._wake_at(-1.0, _noop)

    def _tell_self(self, message: Message) -> None:
        try:
            self.actor_ref.tell(message)
        except Exception:  # stopping: the next follower starts from the switch's state
            pass

    # --- inputs ----------------------------------------------------------------------------
    def _on_app_observed(self, message: AppObserved) -> None:
        self.view = read_app(message.obj)
        self._reconcile()

    def _on_app_deleted(self, _message: AppDeleted) -> None:
        # Upstream does nothing without an App: whatever runs keeps running, and the
        # mirrors stay, until an App says otherwise.
        if self.view is not None:
            log.warning("App deleted; mirroring stays as it is until an App exists")
            self.note("app deleted")
        self.view = None

    def _on_mirroring_changed(self, message: MirroringChanged) -> None:
        was_on = self.mirroring
        self.mirroring = message.on
        self.epoch = message.epoch
        if self.requested == message.on or message.error:
            self.requested = None
        if message.on and not was_on:
            self.readiness = None
            self.cleaned_generation = None
            early, self.early_readiness = self.early_readiness, None
            if early is not None and early[0] == message.epoch:
                self.readiness = early[1]
        if message.error:
            log.error("mirroring could not start: %s", message.error)
            self.readiness = Condition("False", CONNECT_FAILED, message.error)
            delay = self.retries.failed(START, self.clock())
            self.note("mirroring start failed", detail={"error": message.error, "retry_s": delay})
            self._write_readiness()
            self._arm_wakeup()
            return
        self.retries.succeeded(START)
        self._reconcile()

    def _on_engine_readiness(self, message: EngineReadiness) -> None:
        condition = readiness_condition(message.ready, message.reason, message.message)
        if condition is None:
            return
        if message.epoch > self.epoch:
            # The run's router may report before the switch's confirmation arrives.
            self.early_readiness = (message.epoch, condition)
            return
        if message.epoch != self.epoch or not self.mirroring:
            return  # a report of an earlier run
        self.readiness = condition
        self._reconcile()

    def _on_retry_due(self, _message: AppRetryDue) -> None:
        due = self.retries.pop_due(self.clock())
        if REFRESH in due:
            self._refresh()
        if POLL in due and self.poll_deadline is not None:
            self._poll()
        if any(key not in (POLL, REFRESH) for key in due):
            self._reconcile()
        self._arm_wakeup()

    def _refresh(self) -> None:
        """Read the App (at start); a failure is retried with backoff."""
        try:
            obj = self.effect("kube", "get_app", self.api.get)
        except KubeNotFound:
            self.retries.succeeded(REFRESH)
            return  # no App: the watch tells when one appears
        except KubeError as exc:
            self.retries.failed(REFRESH, self.clock(), not_before_s=exc.retry_after or 0)
            return
        self.retries.succeeded(REFRESH)
        self.view = read_app(obj)
        self._reconcile()

    # --- the decision ------------------------------------------------------------------
    def _reconcile(self) -> None:
        view = self.view
        if view is None:
            return
        decision = decide(view, self.namespace)
        if decision != self.last_target:
            self._announce(view, decision)
            self.last_target = decision
        want_on = decision.target is Target.RUN
        if want_on:  # a cleanup in progress has nothing left to do
            self._abandon_poll()
            self.retries.succeeded(CLEANUP)
        if want_on != self.mirroring or self.requested is not None:
            if want_on and self.retries.pending(START):
                return  # a failed start waits for its backoff
            self._request(want_on)
            return  # continued by MirroringChanged
        if want_on:
            self._write_readiness()
            return
        if self.poll_deadline is not None or self.retries.pending(CLEANUP):
            return  # a cleanup is waiting for its objects to go, or for its retry
        if needs_cleanup(
            view,
            decision,
            mirrored_since_cleanup=self.switch.state().dirty,
            cleaned_generation=self.cleaned_generation,
        ):
            self._cleanup_pass()
            return
        if decision.target is Target.MOVED:
            if not self.moved_reported:
                self.moved_reported = True
                self.on_moved(decision.namespace)
            return
        assert decision.terminal is not None
        self._write(decision.terminal, decision)

    def _announce(self, view: AppView, decision: Decision) -> None:
        detail = {
            "target": decision.target.value,
            "namespace": view.namespace,
            "running": view.running,
            "engine": view.engine,
            "generation": view.generation,
        }
        self.note("app decision", detail=detail)
        if decision.target is Target.RUN:
            log.info("App: running on %s; mirroring into namespace %s", view.engine, view.namespace)
        elif decision.target is Target.MOVED:
            log.error(
                "App: spec.namespace is now %s, this instance serves %s; cleaning up %s, then "
                "stopping so that a restart follows the App",
                view.namespace,
                self.namespace,
                self.namespace,
            )
        else:
            assert decision.terminal is not None
            log.info(
                "App: %s (engine %s); stopping the mirroring and cleaning up namespace %s",
                "running" if view.running else "not running",
                view.engine,
                self.namespace,
            )

    def _request(self, on: bool) -> None:
        if self.requested == on:
            return
        self.requested = on
        self.switch.request(on)
        self.note("mirroring requested", detail={"on": on})

    # --- ContainerEngineReady ----------------------------------------------------------
    def _write_readiness(self) -> None:
        if self.readiness is not None:
            self._write(self.readiness, Decision(Target.RUN, self.namespace))

    def _write(self, wanted: Condition, expected: Decision) -> None:
        view = self.view
        if view is not None and already_written(view, wanted):
            self.retries.succeeded(CONDITION)
            return
        try:
            outcome = self.effect(
                "kube",
                "app_condition",
                write_engine_condition,
                self.api,
                wanted,
                namespace=self.namespace,
                expected=expected,
                now=self.now_text,
                detail={"status": wanted.status, "reason": wanted.reason},
            )
        except KubeError as exc:
            delay = self.retries.failed(CONDITION, self.clock(), not_before_s=exc.retry_after or 0)
            log.warning(
                "ContainerEngineReady=%s/%s not written (%s); retrying in %.1f s",
                wanted.status,
                wanted.reason,
                exc,
                delay,
            )
            self._arm_wakeup()
            return
        self.retries.succeeded(CONDITION)
        if outcome == WRITTEN:
            log.info("App: ContainerEngineReady=%s/%s", wanted.status, wanted.reason)

    # --- the cleanup -------------------------------------------------------------------
    def _cleanup_pass(self) -> None:
        """Strip and delete every object of the four kinds; then wait for them to go."""
        started = self.clock()
        errors: list[str] = []
        deleted = 0
        for plural in CLEANUP_KINDS:
            kind = KIND_NAMES[plural]
            try:
                items = self.effect("kube", f"list_{plural}", self.sweeper.list, plural)
            except KubeNotFound:
                continue  # the kind is not installed: nothing of it to clean
            except KubeError as exc:
                errors.append(f"failed to list {kind}s: {exc}")
                continue
            for obj in items:
                error = self._remove(plural, obj)
                if error is None:
                    deleted += 1
                else:
                    errors.append(error)
        if errors:
            self._cleanup_failed(cleanup_error(errors), len(errors))
            return
        self.note("cleanup pass done", detail={"deleted": deleted})
        log.info(
            "cleanup: %d objects deleted in namespace %s in %.1f s; waiting until they are gone",
            deleted,
            self.namespace,
            self.clock() - started,
        )
        self.poll_deadline = self.clock() + self.cleanup_timeout_s
        self._poll()

    def _remove(self, plural: str, obj: dict[str, Any]) -> str | None:
        """Strip the mirror finalizer (409: read again, up to 5 times), then delete.

        Returns None when done (or already gone), else the error line.
        """
        kind = KIND_NAMES[plural]
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        if not name:
            return None
        latest = obj
        for attempt in range(CONFLICT_ATTEMPTS):
            patch = strip_patch(plural, latest)
            if patch is None:
                break
            resource_version = str((latest.get("metadata") or {}).get("resourceVersion") or "")
            try:
                self.effect(
                    "kube",
                    "strip_finalizer",
                    self.sweeper.patch_metadata,
                    plural,
                    name,
                    patch,
                    resource_version=resource_version,
                    detail={"kind": kind, "name": name},
                )
                break
            except KubeNotFound:
                return None
            except KubeConflict as exc:
                if attempt + 1 >= CONFLICT_ATTEMPTS:
                    return f"failed to remove finalizer from {kind} {name}: {exc}"
            except KubeError as exc:
                return f"failed to remove finalizer from {kind} {name}: {exc}"
            try:
                latest = self.effect("kube", "get", self.sweeper.get, plural, name)
            except KubeNotFound:
                return None
            except KubeError as exc:
                return f"failed to remove finalizer from {kind} {name}: {exc}"
        try:
            self.effect(
                "kube",
                "delete",
                self.sweeper.delete,
                plural,
                name,
                detail={"kind": kind, "name": name},
            )
        except KubeNotFound:
            pass
        except KubeError as exc:
            return f"failed to delete {kind} {name}: {exc}"
        return None

    def _poll(self) -> None:
        """One check that the four kinds are empty; done, due again, or timed out."""
        deadline = self.poll_deadline
        if deadline is None:
            return
        left: list[str] = []
        try:
            for plural in CLEANUP_KINDS:
                try:
                    items = self.effect("kube", f"list_{plural}", self.sweeper.list, plural)
                except KubeNotFound:
                    continue
                left += [_describe(plural, obj) for obj in items]
        except KubeError as exc:
            self.poll_deadline = None
            self._cleanup_failed(f"error verifying mirror resources gone: {exc}", 1)
            return
        if not left:
            self.poll_deadline = None
            self.retries.succeeded(CLEANUP)
            self.switch.mark_clean()
            self.cleaned_generation = self.view.generation if self.view is not None else None
            self.note("cleanup done")
            log.info("cleanup: namespace %s holds no mirrors", self.namespace)
            self._reconcile()
            return
        if self.clock() >= deadline:
            self.poll_deadline = None
            self._cleanup_failed(
                f"timed out waiting for {len(left)} mirror resources to be deleted: "
                + cleanup_error(left, limit=3),
                len(left),
            )
            return
        self.retries.schedule(POLL, self.clock() + self.poll_interval_s)
        self._arm_wakeup()

    def _cleanup_failed(self, text: str, count: int) -> None:
        delay = self.retries.failed(CLEANUP, self.clock())
        self.note("cleanup failed", detail={"error": text[:500], "errors": count, "retry_s": delay})
        log.warning(
            "cleanup of namespace %s failed (%s); retrying in %.1f s", self.namespace, text, delay
        )
        self._arm_wakeup()

    def _abandon_poll(self) -> None:
        if self.poll_deadline is not None:
            self.note("cleanup abandoned: the App wants mirroring again")
        self.poll_deadline = None
        self.retries.succeeded(POLL)

    # --- timer ---------------------------------------------------------------------------
    def _arm_wakeup(self) -> None:
        due = self.retries.next_due()
        if due is not None:
            self._wake_at(due, lambda: self._tell_self(AppRetryDue()))


def _describe(plural: str, obj: dict[str, Any]) -> str:
    """``Container abc (finalizers: x)`` for the cleanup's timeout message."""
    meta = obj.get("metadata") or {}
    text = f"{KIND_NAMES[plural]} {meta.get('name') or '?'}"
    finalizers = meta.get("finalizers") or []
    if finalizers:
        text += f" (finalizers: {', '.join(str(f) for f in finalizers)})"
    return text


def _noop() -> None:
    pass
