"""The router: owns the container actors and routes every message to the right one.

Why a router and not one actor per container forever: threads must follow *active*
containers, not all containers: each pykka actor is an OS thread, and message
throughput collapses once thousands of threads contend for the GIL. The router starts a container
actor on demand, at most ``max_active`` at once (the rest wait in a backlog), and
retires actors that were idle for ``idle_timeout_s``. Because only the router sends to
container actors, a retiring actor's stop message queues after everything the router
sent it; messages for a container whose actor is stopping are buffered until its
``ChildStopped`` arrives, so two actors never run for one container.

It also runs the full sync (list Docker, list mirrors, sync every container, remove
stale mirrors without touching Docker) on start and after every Docker reconnect, and
writes ``EngineReady`` when every container of that sync reported back.

Supervision of container actors lives here too: a child that raised (``ActorFailed``)
or is found dead by the tick's liveness sweep (an ``on_start`` failure) is restarted
with exponential backoff and a :class:`Recover` message, which rebuilds its state from
Kubernetes and Docker.

Retries: a container actor whose step failed reports :class:`StepFailed`; the router
keeps a per-container :class:`~actors.domain.retry_queue.RetryQueue` (exponential backoff,
reset by :class:`StepSucceeded`) and sends that container a :class:`Recover` when it is
due, until it succeeds or the object is gone. A failed full sync or ``EngineReady``
write is retried the same way under its own key, never by resyncing in a loop. Every
``resync_interval_s`` (0: off) the mirrors are listed and those with a pending
annotation or a deletion in progress get a :class:`Recover`: a safety net for anything
a lost message left behind; the same pass puts back a deleted ``ContainerNamespace/moby``.

Runs in its own pykka thread; its blocking calls are the two list calls of a full sync
and the ``EngineReady`` writes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pykka

from actors.domain.retry_queue import RetryQueue
from actors.domain.sync_progress import SyncProgress
from actors.infra import faults
from actors.infra.journal import Journal
from actors.infra.metrics import NO_METRICS, NoMetrics, RouterDepths
from actors.ports.docker_port import DockerError, DockerPort, DockerUnavailable
from actors.ports.kube_port import KubeError, MirrorStore, annotation_of, is_terminating
from actors.ports.port_errors import retry_after_of
from actors.runtime._base import JournaledActor
from actors.runtime.container import RETRY_REASON, ContainerActor, ContainerDeps
from actors.runtime.engine_status import EngineStatus
from messages.base import Message
from messages.inbound import (
    ActorFailed,
    ChildStopped,
    ContainerGone,
    DockerEvent,
    DockerLost,
    EmitEvent,
    EngineReachable,
    FullSync,
    MirrorDeleted,
    MirrorObserved,
    Recover,
    RetryDue,
    StepFailed,
    StepSucceeded,
    SyncContainer,
    SyncDone,
    Tick,
    WatchRelisted,
)

# Docker container events that change what the mirror shows (docs/contract.md §3.3).
SYNC_ACTIONS = frozenset(
    {"create", "start", "stop", "die", "pause", "unpause", "restart", "rename", "kill", "oom"}
)


@dataclass
class RouterSettings:
    max_active: int = 128
    idle_timeout_s: float = 10.0
    # At the cap with a backlog, actors quiet this long are retired at once (LRU first).
    evict_quiet_s: float = 0.5
    restart_backoff_s: float = 0.2
    restart_backoff_max_s: float = 30.0
    # Safety net: re-check pending annotations and terminating mirrors this often.
    resync_interval_s: float = 600.0


@dataclass
class _Child:
    ref: pykka.ActorRef
    incarnation: int
    last_sent: float


FAILURE_MEMORY_S = 60.0
# Retry-queue keys of the router's own steps (container IDs are 64-hex or user names,
# never bracketed).
FULL_SYNC = "<full-sync>"
ENGINE_READY = "<engine-ready>"
RESYNC = "<resync>"
# A failed router waits this long for its container actors to finish in-flight work.
CHILD_STOP_WAIT_S = 120.0


@dataclass
class _Failure:
    restart_at: float = 0.0
    buffered: list[Message] = field(default_factory=list)


class RouterActor(JournaledActor):
    """Routes readers' messages to on-demand container actors. Own pykka thread."""

    actor_kind = "router"

    def __init__(
        self,
        *,
        journal: Journal,
        docker: DockerPort,
        store: MirrorStore,
        engine_status: EngineStatus,
        emit: Callable[[EmitEvent], None],
        settings: RouterSettings | None = None,
        on_death: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wake_at: Callable[[float, Callable[[], None]], None] | None = None,
        metrics: NoMetrics = NO_METRICS,
    ) -> None:
        super().__init__(journal=journal, name="router", on_death=on_death)
        self.docker = docker
        self.store = store
        self.engine_status = engine_status
        self.emit = emit
        self.settings = settings or RouterSettings()
        self.clock = clock
        self.children: dict[str, _Child] = {}
        self.stopping: dict[str, list[Message]] = {}
        self.retiring: dict[str, pykka.ActorRef] = {}  # asked to stop, ChildStopped pending
        self.failed: dict[str, _Failure] = {}
        self.backlog: OrderedDict[str, list[Message]] = OrderedDict()
        self.mirrors: dict[str, dict[str, Any]] = {}
        self.failure_history: dict[str, tuple[int, float]] = {}
        self.incarnations = 0
        self.sync_token = 0
        self.outstanding: set[str] = set()
        self.engine_up = False
        self.lost_reason: str | None = None  # why the engine was last lost (ConnectFailed)
        self.ready = False
        self.retries = RetryQueue()
        self.progress = SyncProgress()
        self.next_resync: float | None = None
        self._wake_at = wake_at or _TimerWakeup(clock).wake_at
        self._deps: ContainerDeps | None = None
        self.metrics = metrics

    def handlers(self) -> dict[type, Callable[[Any], None]]:
        return {
            DockerEvent: self._on_docker_event,
            DockerLost: self._on_docker_lost,
            EngineReachable: self._on_engine_reachable,
            FullSync: self._on_full_sync,
            SyncDone: self._on_sync_done,
            MirrorObserved: self._on_mirror_observed,
            MirrorDeleted: self._on_mirror_deleted,
            WatchRelisted: self._on_watch_relisted,
            ChildStopped: self._on_child_stopped,
            ActorFailed: self._on_actor_failed,
            StepFailed: self._on_step_failed,
            StepSucceeded: self._on_step_succeeded,
            RetryDue: self._on_retry_due,
            Tick: self._on_tick,
        }

    def on_receive(self, message: Any) -> Any:
        if not isinstance(message, Tick):
            faults.hit("router.on_receive")
        return super().on_receive(message)

    # --- lifecycle (router thread) ---------------------------------------------------
    def on_start(self) -> None:
        faults.hit("router.on_start")
        self._deps = ContainerDeps(
            docker=self.docker,
            store=self.store,
            journal=self.journal,
            report=self._tell_self,
            emit=self.emit,
            metrics=self.metrics,
        )
        self.metrics.bind_router(self.queue_depths)
        self.retries.schedule(FULL_SYNC, self.clock())
        if self.settings.resync_interval_s > 0:
            self.next_resync = self.clock() + self.settings.resync_interval_s

    def on_stop(self) -> None:
        self._wake_at(-1.0, _noop)  # cancel a pending wake-up
        self._stop_children()

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        # A restarted router must not find our children alive: it would start a second
        # actor for the same container. A stop is queued behind the child's current
        # message (a 10 s docker stop, a restart replay), so asking is not enough: wait
        # until every container actor has really stopped, retiring ones included, before
        # on_death lets the supervisor start the replacement (found by scripts/chaos
        # actor-crash: two actors dispatched the same stop and the stale one's lastAction
        # overwrote the newer request's outcome).
        self._stop_children(wait_s=CHILD_STOP_WAIT_S)
        super().on_failure(exception_type, exception_value, traceback)

    def _stop_children(self, wait_s: float | None = None) -> None:
        children = list(self.children.values())
        for child in children:
            with contextlib.suppress(pykka.ActorDeadError):
                child.ref.stop(block=False)
        self.children.clear()
        if wait_s is None:
            return
        refs, self.retiring = [*self.retiring.values()], {}
        deadline = time.monotonic() + wait_s
        for ref in [*(child.ref for child in children), *refs]:
            try:
                ref.stop(block=True, timeout=max(0.0, deadline - time.monotonic()))
            except pykka.ActorDeadError:
                pass
            except pykka.Timeout:
                self.log.warning("container actors still busy %.0f s after router failure", wait_s)
                return

    def queue_depths(self) -> RouterDepths:
        """For the metrics scrape, which calls it from its HTTP thread: only sizes are
        read (``len`` of a dict is atomic under the GIL; a gauge may be a moment old)."""
        return RouterDepths(len(self.backlog), len(self.retries), self._threads())

    def _tell_self(self, message: Message) -> None:
        try:
            self.actor_ref.tell(message)
        except pykka.ActorDeadError:
            pass  # we are stopping; the replacement router resyncs everything

    # --- Docker side -------------------------------------------------------------------
    def _on_docker_event(self, message: DockerEvent) -> None:
        if message.action == "destroy":
            self._deliver(message.container_id, ContainerGone(cause=message.msg_id))
        elif message.action in SYNC_ACTIONS or message.action.startswith("health_status"):
            self._deliver(
                message.container_id, SyncContainer(reason=message.action, cause=message.msg_id)
            )

    def _on_docker_lost(self, message: DockerLost) -> None:
        self.engine_up = False
        self.lost_reason = message.reason
        self.ready = False
        self.metrics.engine_ready(False)
        self.retries.succeeded(FULL_SYNC)  # the reconnect's EngineReachable resyncs
        self.outstanding.clear()
        self.progress.abandoned()
        self._write_ready(False, "ConnectFailed", message.reason)

    def _on_engine_reachable(self, message: EngineReachable) -> None:
        self.engine_up = True
        self._full_sync(message.msg_id, "engine reachable")

    def _on_full_sync(self, message: FullSync) -> None:
        self._full_sync(message.msg_id, message.reason)

    def _full_sync(self, cause: str, reason: str) -> None:
        """List both sides, sync every container, remove stale mirrors (docs/contract.md §3.2)."""
        try:
            ids = self.effect("docker", "list", self.docker.list_ids)
            mirrors, _ = self.effect("kube", "list_mirrors", self.store.list)
        except DockerUnavailable as exc:
            self._on_docker_lost(DockerLost(reason=f"failed to ping Docker: {exc}"))
            return
        except (KubeError, DockerError) as exc:
            self._retry_later(FULL_SYNC, "full sync postponed", exc)
            return
        self.retries.succeeded(FULL_SYNC)
        self.engine_up = True
        self.sync_token += 1
        self.metrics.full_sync_started()
        live = set(ids)
        self.outstanding = set(ids)
        self.progress.started(len(ids), self.clock())
        for obj in mirrors:
            name = (obj.get("metadata") or {}).get("name") or ""
            if name:
                self.mirrors[name] = obj
        for container_id in ids:
            self._deliver(
                container_id, SyncContainer(reason="full sync", token=self.sync_token, cause=cause)
            )
        stale = [name for name in self.mirrors if name not in live]
        for name in stale:
            self._deliver(name, ContainerGone(cause=cause))
        self.note(
            "full sync started",
            detail={"reason": reason, "containers": len(ids), "stale": len(stale)},
        )
        if not self.outstanding:
            self._mark_ready()

    def _on_sync_done(self, message: SyncDone) -> None:
        if message.token != self.sync_token:
            return
        # A failed container sync counts as reported: that container retries on its own
        # (StepFailed), and one failing object must not hold EngineReady back forever.
        self.outstanding.discard(message.container_id)
        if not self.outstanding and self.engine_up and not self.ready:
            self._mark_ready()

    def _mark_ready(self) -> None:
        self.ready = True
        if (line := self.progress.done(self.clock())) is not None:
            self.log.info("%s", line)
        self._write_ready(True, "Connected", "Container engine synced")

    def _write_ready(self, ready: bool, reason: str, text: str) -> None:
        try:
            self.effect(
                "kube",
                "engine_ready",
                self.engine_status.set_ready,
                ready,
                reason,
                text,
                detail={"ready": ready, "reason": reason},
            )
        except KubeError as exc:
            if ready:
                self.ready = False
            # False is retried as well: one transient failure must not leave EngineReady
            # True for a lost engine (scripts/chaos flaky: a 429 on this write kept it True
            # through a 20 s hang). The retry writes the state current when it is due.
            self._retry_later(ENGINE_READY, "EngineReady not written", exc)
            return
        self.metrics.engine_ready(ready)
        self.retries.succeeded(ENGINE_READY)

    # --- Kubernetes side ---------------------------------------------------------------
    def _on_mirror_observed(self, message: MirrorObserved) -> None:
        self.mirrors[message.name] = message.obj
        obj = message.obj
        needs_actor = is_terminating(obj) or annotation_of(obj) is not None
        if needs_actor or message.name in self.children or message.name in self.failed:
            self._deliver(message.name, message)

    def _on_mirror_deleted(self, message: MirrorDeleted) -> None:
        self.mirrors.pop(message.name, None)

    def _on_watch_relisted(self, message: WatchRelisted) -> None:
        names = set(message.names)
        for name in [n for n in self.mirrors if n not in names]:
            del self.mirrors[name]
        if message.after_failure and self.engine_up:
            # Mirror writes may have failed while the apiserver was away; Docker changes
            # of that time are repaired by a full sync (no Docker event will repeat them).
            self._full_sync(message.msg_id, "apiserver reconnected")

    # --- children ------------------------------------------------------------------------
    def _deliver(self, container_id: str, message: Message) -> None:
        if container_id in self.stopping:
            self.stopping[container_id].append(message)
            return
        failure = self.failed.get(container_id)
        if failure is not None:
            failure.buffered.append(message)
            return
        child = self.children.get(container_id)
        if child is not None:
            child.last_sent = self.clock()
            try:
                child.ref.tell(message)
                return
            except pykka.ActorDeadError:
                del self.children[container_id]
                self._schedule_restart(container_id, "found dead on delivery", [message])
                return
        if container_id in self.backlog or self._threads() >= self.settings.max_active:
            self.backlog.setdefault(container_id, []).append(message)
            self._make_room()
            return
        self._start_child(container_id, [message])

    def _start_child(self, container_id: str, messages: list[Message]) -> None:
        assert self._deps is not None
        self.incarnations += 1
        incarnation = self.incarnations
        router = self.actor_ref

        def on_death(_name: str, error: str) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                router.tell(ActorFailed(actor=container_id, error=error))

        ref = ContainerActor.start(
            deps=self._deps,
            container_id=container_id,
            incarnation=incarnation,
            initial_obj=self.mirrors.get(container_id),
            on_death=on_death,
        )
        self.children[container_id] = _Child(ref, incarnation, self.clock())
        for index, message in enumerate(messages):
            try:
                ref.tell(message)
            except pykka.ActorDeadError:
                # on_start failed (pykka tells nobody): restart it with what it missed.
                del self.children[container_id]
                self._schedule_restart(container_id, "died in on_start", messages[index:])
                return

    def _on_child_stopped(self, message: ChildStopped) -> None:
        child = self.children.get(message.container_id)
        if child is not None and child.incarnation == message.incarnation:
            del self.children[message.container_id]
        self.retiring.pop(message.container_id, None)
        buffered = self.stopping.pop(message.container_id, None)
        if buffered:
            for item in buffered:
                self._deliver(message.container_id, item)
        self._drain_backlog()

    def _on_actor_failed(self, message: ActorFailed) -> None:
        container_id = message.actor
        self.children.pop(container_id, None)
        self.retiring.pop(container_id, None)
        buffered = self.stopping.pop(container_id, [])
        self._schedule_restart(container_id, message.error, buffered)

    def _schedule_restart(self, container_id: str, error: str, buffered: list[Message]) -> None:
        now = self.clock()
        # Backoff grows with failures of the same container within the last minute, so
        # a crash loop slows down while a one-off crash restarts at once.
        count, last = self.failure_history.get(container_id, (0, now))
        count = count + 1 if now - last < FAILURE_MEMORY_S else 1
        self.failure_history[container_id] = (count, now)
        failure = self.failed.setdefault(container_id, _Failure())
        failure.buffered.extend(buffered)
        if container_id in self.outstanding and not any(
            isinstance(m, SyncContainer) and m.token == self.sync_token for m in failure.buffered
        ):
            # The full sync's SyncContainer died with the actor and Recover reports no
            # SyncDone: resend it, or EngineReady would never be written for this sync.
            failure.buffered.append(
                SyncContainer(reason="full sync (after restart)", token=self.sync_token)
            )
        delay = min(
            self.settings.restart_backoff_max_s,
            self.settings.restart_backoff_s * (2 ** (count - 1)),
        )
        failure.restart_at = now + delay
        self.metrics.actor_restarted("container")
        self.note(
            "container actor died; restart scheduled",
            detail={"container": container_id, "error": error, "in_s": delay},
        )

    def _on_tick(self, message: Tick) -> None:
        now = self.clock()
        if not self.ready and (line := self.progress.report(len(self.outstanding), now)):
            self.log.info("%s", line)
        # Liveness sweep: pykka reports neither on_start failures nor anything else.
        for container_id, child in list(self.children.items()):
            if not child.ref.is_alive():
                del self.children[container_id]
                self._schedule_restart(container_id, "found dead by liveness sweep", [])
        for container_id, failure in list(self.failed.items()):
            if failure.restart_at <= now and self._threads() < self.settings.max_active:
                del self.failed[container_id]
                self._start_child(container_id, [Recover(reason="restart"), *failure.buffered])
        # Idle retirement.
        for container_id, child in list(self.children.items()):
            if now - child.last_sent >= self.settings.idle_timeout_s and (
                container_id not in self.outstanding
            ):
                self._retire(container_id)
        self._make_room()
        self._drain_backlog()
        self._run_due_retries(message.msg_id)
        if self.next_resync is not None and now >= self.next_resync:
            self.next_resync = now + self.settings.resync_interval_s
            self._resync(message.msg_id)

    def _retire(self, container_id: str) -> None:
        """Stop a child; its stop is queued behind what it was sent (never lost)."""
        child = self.children.pop(container_id)
        self.stopping[container_id] = []
        self.retiring[container_id] = child.ref
        try:
            child.ref.stop(block=False)
        except pykka.ActorDeadError:
            self.stopping.pop(container_id, None)
            self.retiring.pop(container_id, None)

    def _make_room(self) -> None:
        """At the cap with work waiting, retire the least recently used quiet actors now.

        Without this a request for a container without an actor would wait up to
        ``idle_timeout_s`` for some idle actor to retire (measured: 13-16 s of delay
        with a full cap). "Quiet" means nothing was sent to it for ``evict_quiet_s``.
        """
        wanted = len(self.backlog) - len(self.stopping)
        if wanted <= 0:
            return
        now = self.clock()
        quiet = sorted(
            (child.last_sent, container_id)
            for container_id, child in self.children.items()
            if now - child.last_sent >= self.settings.evict_quiet_s
            and container_id not in self.outstanding
        )
        for _, container_id in quiet[:wanted]:
            self._retire(container_id)

    def _threads(self) -> int:
        """Container actor threads alive: running children plus retiring ones not yet
        stopped (their ``ChildStopped`` is pending), so the cap bounds real threads."""
        return len(self.children) + len(self.stopping)

    def _drain_backlog(self) -> None:
        while self.backlog and self._threads() < self.settings.max_active:
            container_id, messages = self.backlog.popitem(last=False)
            if container_id in self.children or container_id in self.stopping:
                for message in messages:
                    self._deliver(container_id, message)
            else:
                self._start_child(container_id, messages)

    # --- retries (router thread) -----------------------------------------------------
    def _on_step_failed(self, message: StepFailed) -> None:
        delay = self.retries.failed(
            message.container_id, self.clock(), not_before_s=message.retry_after_s
        )
        self.metrics.retry_scheduled(message.container_id)
        self.note(
            "retry scheduled",
            detail={
                "container": message.container_id,
                "in_s": round(delay, 3),
                "failures": self.retries.backoff.failures(message.container_id),
                "error": message.error,
            },
        )
        self._arm_wakeup()

    def _on_step_succeeded(self, message: StepSucceeded) -> None:
        self.retries.succeeded(message.container_id)

    def _on_retry_due(self, message: RetryDue) -> None:
        self._run_due_retries(message.msg_id)

    def _retry_later(self, key: str, text: str, exc: Exception) -> None:
        """One of the router's own steps failed: retry it with its backoff."""
        delay = self.retries.failed(key, self.clock(), not_before_s=retry_after_of(exc) or 0.0)
        self.metrics.retry_scheduled(key)
        self.note(text, detail={"error": str(exc)[:500], "retry_in_s": round(delay, 3)})
        self._arm_wakeup()

    def _run_due_retries(self, cause: str) -> None:
        for key in self.retries.pop_due(self.clock()):
            if key == FULL_SYNC:
                self._full_sync(cause, "scheduled")
            elif key == ENGINE_READY:
                if not self.engine_up and self.lost_reason is not None:
                    self._write_ready(False, "ConnectFailed", self.lost_reason)
                elif self.engine_up and not self.outstanding and not self.ready:
                    self._mark_ready()
            elif key == RESYNC:
                self._resync(cause)
            else:
                self._deliver(str(key), Recover(reason=RETRY_REASON, cause=cause))
        self._arm_wakeup()

    def _arm_wakeup(self) -> None:
        due = self.retries.next_due()
        if due is not None:
            ref = self.actor_ref
            self._wake_at(due, lambda: _tell(ref, RetryDue()))

    def _resync(self, cause: str) -> None:
        """Safety net: every mirror with a pending annotation or a deletion gets a Recover."""
        try:
            mirrors, _ = self.effect("kube", "list_mirrors", self.store.list)
        except KubeError as exc:
            self._retry_later(RESYNC, "resync postponed", exc)
            return
        self.retries.succeeded(RESYNC)
        try:  # a deleted ContainerNamespace/moby comes back (docs/contract.md §6.1)
            self.effect("kube", "ensure_moby", self.engine_status.ensure_moby)
        except KubeError:
            pass  # journaled by effect(); the next resync or EngineReady write repairs it
        pending = 0
        for obj in mirrors:
            name = (obj.get("metadata") or {}).get("name") or ""
            if name and (is_terminating(obj) or annotation_of(obj) is not None):
                self.mirrors[name] = obj
                pending += 1
                self._deliver(name, Recover(reason="resync", cause=cause))
        self.note("resync", detail={"mirrors": len(mirrors), "pending": pending})


def _noop() -> None:
    pass


def _tell(ref: pykka.ActorRef, message: Message) -> None:
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(message)


class _TimerWakeup:
    """Calls ``fn`` once at the earliest requested time; one timer thread at most.

    Why: the supervisor's 1 s Tick is too coarse for a retry due in 5 ms. Called from
    the router thread; the timer thread only runs ``fn`` (a tell). ``due < 0`` cancels.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._timer: threading.Timer | None = None
        self._due: float | None = None

    def wake_at(self, due: float, fn: Callable[[], None]) -> None:
        timer = self._timer
        if due < 0:
            if timer is not None:
                timer.cancel()
            self._timer, self._due = None, None
            return
        if timer is not None and timer.is_alive() and self._due is not None and self._due <= due:
            return  # an earlier wake-up is armed; it re-arms for the rest
        if timer is not None:
            timer.cancel()
        self._due = due
        self._timer = threading.Timer(max(0.0, due - self._clock()), fn)
        self._timer.daemon = True
        self._timer.start()
