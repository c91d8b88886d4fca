"""dockmirror: the composition root, the top-level supervisor and the CLI.

``python supervisor.py`` wires the ports, the journal and the actors together, then
supervises them from the main thread (which must stay free to receive signals):

* start order: CRDs, namespace and ``ContainerNamespace/moby`` (EngineReady False/
  Syncing), admission by ``--admission`` (policy applied or webhook registered, then
  probed; docs/admission.md), then the event writer, the
  router and the two readers (Docker events, Kubernetes watch);
* every second the main loop ticks the router (idle retirement, container actor
  restarts, scheduled full syncs), sweeps the liveness of every top-level actor and of
  the webhook server (pykka reports neither ``on_start`` failures nor dead threads), and
  restarts what died with backoff inside a restart budget: more than
  ``--restart-budget`` restarts within ``--restart-window`` seconds ends the process
  with exit code 3 and a message naming the last failure; in webhook mode it also
  re-registers the webhook configuration every ``--webhook-recheck`` seconds and, hourly, renews the
  webhook certificates when due (reload + re-register with the new CA bundle);
* SIGINT/SIGTERM stop everything within a few seconds; mirrors stay, ``EngineReady``
  becomes False/Stopped; in webhook mode the configuration is deleted so that Container
  writes are not blocked while the service is stopped on purpose, in policy mode the
  policy stays and keeps rejecting invalid values.

The router is restarted together with the readers' target (rest-for-one): the readers
keep running and send through :class:`RouterHandle`, which always points at the live
router; the new router starts with a full sync.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

import pykka

from actors.infra.certs import ensure_certificates
from actors.infra.heap_report import HeapGrowthReporter
from actors.infra.state_dir import StateError, open_state
from actors.infra.webhook import WebhookRegistration, WebhookServer
from actors.ports.docker_endpoint import DockerEndpointError, resolve_docker_endpoint
from actors.ports.docker_port import DockerPort
from actors.ports.kube_connect import (
    KubeconfigError,
    fatal_message,
    load_client_configuration,
    unreachable_message,
)
from actors.ports.kube_port import KubeError, MirrorStore, open_http
from actors.runtime import fence
from actors.runtime.container import ContainerActor
from actors.runtime.docker_events import DockerEventsReader
from actors.runtime.engine_status import EngineStatus
from actors.runtime.event_writer import EmitGate, EventWriterActor
from actors.runtime.kube_watch import KubeWatchReader
from actors.runtime.leader import (
    LEADER,
    STANDBY,
    LeaderElector,
    LeaderState,
    LeaseClient,
    LeaseTiming,
)
from actors.runtime.router import CHILD_STOP_WAIT_S, RouterActor, RouterSettings
from actors.service import admission, cli
from actors.service.admission import AdmissionError, PolicyAdmission, WebhookSettings
from actors.service.app_mode import ACTORS as APP_ACTORS
from actors.service.app_mode import AppMode
from actors.service.config import Config
from actors.service.crd_install import install_crds
from actors.service.probe_wiring import Probes
from actors.service.startup_checks import StartupCheckError, check_crds_served
from messages.base import Message
from messages.inbound import EmitEvent, Tick
from messages.journal import Note

log = logging.getLogger("dockmirror")

EXIT_BUDGET = 3
EXIT_STARTUP = 2
#: --app: the App now names another namespace; a restart (a service manager's) follows it.
EXIT_APP_MOVED = 4
#: What mirrors: started at once in standalone mode, by the App's switch with --app.
MIRRORING = ("router", "docker-events", "kube-watch")
#: Seconds between checks that the webhook's TLS material is still valid (renewal is
#: due 30 days before expiry, so hourly is plenty; the check is a few file reads).
CERT_CHECK_INTERVAL = 3600.0


MALLOC_TRIM_INTERVAL_S = 60.0


def release_freed_memory() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``); no-op elsewhere.

    Why: a long-running process whose threads come and go (container actors, webhook
    connections) keeps freed glibc heap pages resident; the soak campaign measured RSS
    creeping up by ~10 % over 10,000 actions without any growth in live Python objects.
    Trimming once a minute costs a few milliseconds.
    """
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL("libc.so.6")
        except OSError:
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


_libc: ctypes.CDLL | bool | None = None


class RouterHandle:
    """Always points at the live router; readers and actors send through it.

    ``send`` is called from reader and actor threads; a message sent while the router
    is being replaced is dropped, which is safe because the new router starts with a
    full sync and the watch replays annotations on its relist.
    """

    def __init__(self) -> None:
        self.ref: pykka.ActorRef | None = None

    def send(self, message: Message) -> None:
        ref = self.ref
        if ref is None:
            return
        with contextlib.suppress(pykka.ActorDeadError):
            ref.tell(message)


class RestartBudget:
    """At most ``limit`` restarts within ``window_s`` seconds (OTP-style intensity)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self.times: deque[float] = deque()

    def spend(self, now: float) -> bool:
        while self.times and now - self.times[0] > self.window_s:
            self.times.popleft()
        self.times.append(now)
        return len(self.times) <= self.limit


class Supervisor:
    """Owns every top-level actor; runs in the main thread."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stop_event = threading.Event()
        self.deaths: queue.Queue[tuple[str, str]] = queue.Queue()
        self.router = RouterHandle()
        self.events_ref: pykka.ActorRef | None = None
        self.refs: dict[str, pykka.ActorRef] = {}
        self.budget = RestartBudget(config.restart_budget, config.restart_window)
        self.exit_code = 0
        self.trimmed = time.monotonic()
        self.certs_checked = time.monotonic()
        self.emit_gate = EmitGate()
        self.dropped_reported = 0
        # Opt-in leak hunting (docs/reliability.md); None unless DOCKMIRROR_TRACEMALLOC is set.
        self.heap_report = HeapGrowthReporter.from_env()
        # /healthz, /readyz, /metrics (actors/service/probe_wiring.py); started by run().
        self.probes = Probes(config)
        # Leader election: "leader" | "standby" | "disabled", read by readiness/metrics.
        self.leader_state = LeaderState()
        self.elector: LeaderElector | None = None
        self.lost_reason: str | None = None  # set by the renewer thread
        self.probes.leader_state = self.leader_state.get
        # --app (actors/service/app_mode.py); None in standalone mode.
        self.app: AppMode | None = None

    # --- composition ---------------------------------------------------------------
    def build(self) -> None:
        """Open the state files, then the ports. Main thread, at start.

        The state directory comes first: its checks are local and fast, and a problem
        there (a file of another owner, a journal that cannot be opened) ends the start
        with one line on stderr and exit code 2 (``main``).
        """
        cfg = self.config
        try:
            state = open_state(
                cfg.state_dir,
                trace_file=cfg.journal_file(),
                trace_max_bytes=cfg.trace_max_mb * 1024 * 1024,
                trace_backups=cfg.trace_backups,
            )
        except StateError as exc:
            raise SystemExit(f"dockmirror: {exc}") from exc
        self.journal = state.journal
        self.identity = state.identity
        # Every container actor may hold a connection (Docker and Kubernetes pools).
        pool_size = cfg.max_active_containers + 16
        try:
            configuration, self.kube_target = load_client_configuration(cfg.kubeconfig)
        except KubeconfigError as exc:
            raise SystemExit(f"dockmirror: {exc}") from None
        self.http = open_http(configuration, pool_maxsize=pool_size)
        if cfg.app:
            self.bind_app()
        self.store = MirrorStore(self.http, cfg.namespace)
        try:
            endpoint = resolve_docker_endpoint(cfg.docker_host, os.environ)
        except DockerEndpointError as exc:
            raise SystemExit(f"dockmirror: {exc}") from None
        log.info("Docker endpoint: %s", endpoint.describe())
        self.docker = DockerPort(endpoint.host, pool_size=pool_size, tls=endpoint.tls)
        self.engine_status = EngineStatus(self.http, cfg.namespace)
        if cfg.leader_elect:
            self.elector = LeaderElector(
                LeaseClient(self.http, cfg.namespace),
                self.identity,
                LeaseTiming(cfg.lease_duration, cfg.renew_deadline, cfg.retry_period),
                state=self.leader_state,
            )
            self.leader_state.set(STANDBY)

    def bind_app(self) -> None:
        """``--app``, main thread, in ``build()``: wait for the App and take its namespace.

        A signal while waiting ends the process (exit 0); apiserver errors end the start
        like :meth:`prepare_kubernetes`'s. From here on ``config.namespace`` is the App's.
        """
        cfg = self.config
        self.app = AppMode(
            http=self.http,
            journal=self.journal,
            install_crd=not cfg.skip_crd_install,
            on_moved=self.app_moved,
        )
        namespace = self.app.resolve_namespace(
            self.stop_event,
            timeout=cfg.startup_timeout,
            fatal=self.exit_if_fatal,
            unreachable=lambda exc: unreachable_message(exc, self.kube_target, cfg.startup_timeout),
        )
        if namespace is None:
            raise SystemExit(0)
        if namespace != cfg.namespace:
            log.info("--app: namespace %s (the App's spec.namespace)", namespace)
        cfg.namespace = namespace
        self.app.bind(start=self.start_mirroring, stop=self.stop_mirroring)

    def start_mirroring(self, epoch: int) -> None:
        """``--app``, main thread (the App's switch): start what standalone mode starts
        at once. A fresh ``EngineStatus`` forgets what an earlier run wrote (the cleanup
        deleted ``ContainerNamespace/moby`` since) and reports to the App follower."""
        assert self.app is not None
        self.engine_status = EngineStatus(
            self.http, self.config.namespace, listener=self.app.readiness_listener(epoch)
        )
        try:
            self.engine_status.apply_moby()
            self.engine_status.set_ready(False, "Syncing", "Initial sync in progress")
        except KubeError as exc:
            log.warning("ContainerNamespace/moby not written yet (%s); the router retries", exc)
        for name in MIRRORING:
            self.start_actor(name)

    def stop_mirroring(self) -> None:
        """``--app``, main thread (the App's switch): stop the readers and the router and
        wait until no container actor runs, so the cleanup that follows meets no writer."""
        for name in ("docker-events", "kube-watch", "router"):
            ref = self.refs.pop(name, None)
            if ref is not None:
                with contextlib.suppress(Exception):
                    ref.stop(block=True, timeout=5)
        self.router.ref = None
        self.wait_container_actors_stopped()

    def app_moved(self, namespace: str) -> None:
        """``--app``, the App follower's thread, after it cleaned up our namespace: the
        App names another one, which needs a new start (everything namespaced, the
        Lease and admission included, is bound at start)."""
        log.error(
            "the App now names namespace %s instead of %s; stopping (exit code %d) so that "
            "a restart follows it",
            namespace,
            self.config.namespace,
            EXIT_APP_MOVED,
        )
        self.exit_code = EXIT_APP_MOVED
        self.stop_event.set()

    def prepare_kubernetes(self) -> None:
        """CRDs, namespace, ContainerNamespace/moby; waits for the apiserver at start.

        Main thread. What waiting cannot fix (401, 403) ends the start at once with one
        line (``SystemExit``, printed by ``main``); anything else is retried every second
        until ``--startup-timeout``, then ends the start the same way.
        A :class:`StartupCheckError` (a CRD not installed under ``--skip-crd-install``, a
        namespace that is missing and may not be created) ends the start at once too.
        """
        deadline = time.monotonic() + self.config.startup_timeout
        while True:
            try:
                if self.config.skip_crd_install:
                    check_crds_served(self.http, self.config.namespace)
                else:
                    install_crds(self.http, namespace=self.config.namespace)
                self.engine_status.ensure_namespace()
                if self.app is None:  # with --app, only once the App wants mirroring
                    self.engine_status.apply_moby()
                    self.engine_status.set_ready(False, "Syncing", "Initial sync in progress")
                return
            except StartupCheckError as exc:
                raise SystemExit(f"dockmirror: {exc}") from exc
            except Exception as exc:
                self.exit_if_fatal(exc)
                if time.monotonic() >= deadline or self.stop_event.is_set():
                    message = unreachable_message(
                        exc, self.kube_target, self.config.startup_timeout
                    )
                    raise SystemExit(f"dockmirror: {message}") from exc
                log.warning("apiserver not ready yet (%s); retrying", exc)
                self.stop_event.wait(1.0)

    def exit_if_fatal(self, exc: BaseException) -> None:
        """End the start with one line if ``exc`` is a 401/403 (see actors/ports/kube_connect)."""
        message = fatal_message(exc, self.kube_target, self.config.namespace)
        if message is not None:
            raise SystemExit(f"dockmirror: {message}") from exc

    def start_webhook(self) -> None:
        """Admission by ``--admission`` (docs/admission.md); main thread, at start.

        Any failure ends the start with one line and exit code 2, leaving no webhook
        configuration behind (``actors/service/admission.py``). ``self.webhook`` and
        ``self.registration`` are set in webhook mode only.
        """
        cfg = self.config
        self.webhook: WebhookServer | None = None
        self.registration: WebhookRegistration | None = None
        self.webhook_checked = time.monotonic()
        try:
            self.admission_mode = admission.choose_mode(cfg.admission, self.http)
            self.probes.set_admission_mode(self.admission_mode)
            if self.admission_mode == "policy":
                if not cfg.skip_admission_install:
                    admission.remove_stale_webhook(self.http, cfg.namespace)
                policy = PolicyAdmission(
                    self.http, cfg.namespace, install=not cfg.skip_admission_install
                )
                policy.ensure(timeout=cfg.admission_timeout)
            elif self.admission_mode == "webhook":
                self.webhook, self.registration = admission.start_webhook(
                    self.http, cfg.namespace, self.webhook_settings(), cfg.admission_timeout
                )
            else:
                log.warning("admission mode none: invalid action annotations are not rejected")
        except AdmissionError as exc:
            raise SystemExit(f"dockmirror: {exc}") from exc

    def webhook_settings(self) -> WebhookSettings:
        cfg = self.config
        return WebhookSettings(cfg.state_dir, cfg.webhook_port, cfg.webhook_host, cfg.webhook_url)

    def _on_death(self, name: str, error: str) -> None:
        """Called from a dying actor's thread; the main loop restarts it."""
        self.deaths.put((name, error))

    def _emit(self, message: EmitEvent) -> None:
        """Called from container-actor threads; drops the Event when the writer is
        backlogged (EmitGate) or being restarted."""
        ref = self.events_ref
        if ref is None:
            return
        with contextlib.suppress(pykka.ActorDeadError):
            self.emit_gate.tell(ref, message)

    def report_dropped_events(self) -> None:
        """Main thread, once a minute: say how many Events the backlog limit dropped."""
        dropped = self.emit_gate.dropped
        if dropped == self.dropped_reported:
            return
        log.warning(
            "event writer backlogged: dropped %d Events in the last minute (%d in total; "
            "limit %d queued)",
            dropped - self.dropped_reported,
            dropped,
            self.emit_gate.limit,
        )
        self.journal.record(
            Note(
                actor="supervisor",
                text="events dropped: writer backlogged",
                detail={"dropped": dropped - self.dropped_reported, "total": dropped},
            )
        )
        self.dropped_reported = dropped

    def start_actor(self, name: str) -> None:
        factories: dict[str, Callable[[], pykka.ActorRef]] = {
            "events": lambda: EventWriterActor.start(
                shutting_down=self.stop_event,
                journal=self.journal,
                http=self.http,
                namespace=self.config.namespace,
                on_death=self._on_death,
            ),
            "router": lambda: RouterActor.start(
                journal=self.journal,
                docker=self.docker,
                store=self.store,
                engine_status=self.engine_status,
                emit=self._emit,
                metrics=self.probes.metrics,
                settings=RouterSettings(
                    max_active=self.config.max_active_containers,
                    idle_timeout_s=self.config.idle_timeout,
                    resync_interval_s=self.config.resync_interval,
                ),
                on_death=self._on_death,
            ),
            "docker-events": lambda: DockerEventsReader.start(
                journal=self.journal,
                docker=self.docker,
                # Engine (dis)connection also feeds the log stream's 503 (probe_wiring).
                send=self.probes.watch_engine(self.router.send),
                on_death=self._on_death,
            ),
            "kube-watch": lambda: KubeWatchReader.start(
                journal=self.journal,
                store=self.store,
                send=self.router.send,
                on_death=self._on_death,
            ),
        }
        if self.app is not None:
            for app_actor in APP_ACTORS:
                factories[app_actor] = functools.partial(
                    self.app.start_actor, app_actor, self._on_death
                )
        ref = factories[name]()
        self.refs[name] = ref
        if name == "router":
            self.router.ref = ref
        elif name == "events":
            self.events_ref = ref

    # --- supervision (main thread) ------------------------------------------------------
    def run(self) -> int:
        """Build, then one leadership term after another until a signal stops us."""
        self.build()
        self.probes.start(self)
        while self.await_leadership():
            if not self.lead():
                return self.exit_code
            self.step_down()
        self.journal.close()
        return self.exit_code

    def lead(self) -> bool:
        """Start everything and supervise it while we lead (or always, without leader
        election). Returns False after a clean stop (shutdown done), True when the
        leadership was lost (the fence is up; :meth:`step_down` follows)."""
        self.prepare_kubernetes()
        try:
            self.start_webhook()
        except Exception as exc:
            self.exit_if_fatal(exc)  # e.g. no permission to register the webhook
            raise
        for name in ("events", *(APP_ACTORS if self.app is not None else MIRRORING)):
            self.start_actor(name)
        log.info(
            "dockmirror running: namespace %s, docker %s, admission %s",
            self.config.namespace,
            self.docker.base_url,
            self.registration.url if self.registration is not None else self.admission_mode,
        )
        if self.elector is not None:
            self.elector.start_renewing(self.on_leadership_lost)
        while not self.stop_event.wait(1.0):
            if self.leadership_lost():
                return True
            if time.monotonic() - self.trimmed >= MALLOC_TRIM_INTERVAL_S:
                self.trimmed = time.monotonic()
                release_freed_memory()
                self.report_dropped_events()
            if self.heap_report is not None:
                self.heap_report.maybe_report()
            if self.app is not None:
                self.app.apply()  # mirroring on or off, as the App follower asked
            tick = Tick(now_ns=time.time_ns())
            self.router.send(tick)
            if self.events_ref is not None:
                with contextlib.suppress(pykka.ActorDeadError):
                    self.events_ref.tell(tick)
            # Drives the Docker events reader's heartbeat (a hung engine:
            # actors/runtime/heartbeat.py).
            if (reader := self.refs.get("docker-events")) is not None:
                with contextlib.suppress(pykka.ActorDeadError):
                    reader.tell(tick)
            self.sweep()
        self.shutdown()
        return False

    # --- leader election (actors/runtime/leader.py) ----------------------------------------------
    def await_leadership(self) -> bool:
        """Main thread, before anything acts: wait as a hot standby until we hold the
        namespace's Lease. False when a signal stopped us while standing by (nothing was
        started, nothing to undo)."""
        if self.elector is None:
            return True
        ok = self.elector.acquire(
            self.stop_event,
            prepare=self.engine_status.ensure_namespace,
            fatal=self.exit_if_fatal,
        )
        if ok:
            self.journal.record(
                Note(
                    actor="supervisor",
                    text="leader",
                    detail={"identity": self.elector.identity},
                )
            )
        return ok

    def on_leadership_lost(self, reason: str) -> None:
        """The renewer thread saw the loss: raise the fence at once (every actor's next
        Docker or Kubernetes call is refused); the main loop stops the actors."""
        fence.raise_fence()
        self.lost_reason = reason

    def leadership_lost(self) -> bool:
        """Main thread, every second; also the watchdog for a renewer stuck in a slow
        request. On a loss: raise the fence and say so (one ERROR line)."""
        if self.elector is None:
            return False
        reason = self.lost_reason or self.elector.lost()
        if reason is None:
            return False
        fence.raise_fence()
        log.error(
            "lost the leadership of namespace %s: %s; stopped acting, standing by",
            self.config.namespace,
            reason,
        )
        self.journal.record(
            Note(actor="supervisor", text="leadership lost", detail={"reason": reason})
        )
        return True

    def step_down(self) -> None:
        """Main thread, after a loss: stop every actor and the webhook server, then be a
        standby like a fresh start. Nothing of the clean stop's writes happens
        (``EngineReady`` Stopped, the webhook configuration's removal): those objects
        belong to the new leader now."""
        for name in (*APP_ACTORS, "docker-events", "kube-watch", "router", "events"):
            ref = self.refs.pop(name, None)
            if ref is not None:
                with contextlib.suppress(Exception):
                    ref.stop(block=True, timeout=5)
        if self.app is not None:
            self.app.step_down()
        self.router.ref = None
        self.events_ref = None
        self.wait_container_actors_stopped()
        if self.webhook is not None:
            self.webhook.stop()
        while not self.deaths.empty():  # deaths of the stopped actors: nothing to restart
            self.deaths.get_nowait()
        assert self.elector is not None
        self.elector.step_down()
        self.lost_reason = None
        fence.lower_fence()

    def sweep(self) -> None:
        dead: dict[str, str] = {}
        while True:
            try:
                name, error = self.deaths.get_nowait()
            except queue.Empty:
                break
            # A late report from an earlier incarnation (a failed router reports only after
            # its children stopped) must not restart the live replacement.
            if name in self.refs and not self.refs[name].is_alive():
                dead[name] = error
        for name, ref in self.refs.items():
            if name not in dead and not ref.is_alive():
                dead[name] = "found dead by liveness sweep (on_start failure or stopped)"
        if self.webhook is not None and not self.webhook.is_alive():
            dead["webhook"] = "webhook server thread died"
        for name, error in dead.items():
            self.restart(name, error)
        self.probes.observe_liveness(self)
        if self.registration is None:
            return  # not webhook mode: no configuration to recheck, no certificates
        if time.monotonic() - self.webhook_checked >= self.config.webhook_recheck:
            self.webhook_checked = time.monotonic()
            try:
                self.registration.register()
            except KubeError as exc:
                log.warning("webhook configuration check failed: %s", exc)
        if time.monotonic() - self.certs_checked >= CERT_CHECK_INTERVAL:
            self.certs_checked = time.monotonic()
            self.check_certificates()

    def check_certificates(self) -> None:
        """Renew the webhook's TLS material when due (``ensure_certificates`` only reads
        the files otherwise). On renewal the server loads the new files for new
        connections and the configuration is re-registered with the new CA bundle; if
        that write fails, the ``--webhook-recheck`` re-registration retries it with the
        already updated ``ca_pem``."""
        try:
            bundle = ensure_certificates(
                self.config.state_dir, hosts=self.webhook_settings().cert_hosts
            )
            if not bundle.renewed:
                return
            log.info("webhook certificates renewed; reloading them and re-registering")
            self.webhook.reload_certificates()
            self.registration.ca_pem = bundle.ca_pem
            self.registration.register()
        except Exception as exc:
            log.warning("webhook certificate check failed: %s", exc)

    def restart(self, name: str, error: str) -> None:
        self.journal.record(
            Note(actor="supervisor", text="restarting", detail={"child": name, "error": error})
        )
        if not self.budget.spend(time.monotonic()):
            log.error(
                "restart budget exhausted: more than %d restarts within %.0f s; last: %s died: %s",
                self.config.restart_budget,
                self.config.restart_window,
                name,
                error,
            )
            self.exit_code = EXIT_BUDGET
            self.stop_event.set()
            return
        log.warning("restarting %s: %s", name, error)
        self.probes.metrics.actor_restarted(name)
        if name == "webhook":
            self.webhook.stop()
            self.webhook = WebhookServer(
                self.webhook._cert_path,
                self.webhook._key_path,
                port=self.webhook.port,
                host=self.config.webhook_host,
            )
            self.webhook.start()
            return
        old = self.refs.get(name)
        if old is not None and old.is_alive():
            with contextlib.suppress(Exception):
                old.stop(block=True, timeout=5)
        if name == "router":
            self.wait_container_actors_stopped()
        self.start_actor(name)

    def wait_container_actors_stopped(self, timeout: float = CHILD_STOP_WAIT_S) -> None:
        """Before a new router starts, every container actor of the old one must be gone.

        pykka marks a failed actor dead *before* its ``on_failure`` runs, so this sweep
        can see the router dead while it is still stopping its children; a container
        actor busy in a 10 s ``docker stop`` would otherwise meet a second actor for the
        same container started by the new router's full sync.
        """
        deadline = time.monotonic() + timeout
        while True:
            alive = pykka.ActorRegistry.get_by_class(ContainerActor)
            if not alive:
                return
            for ref in alive:
                with contextlib.suppress(pykka.ActorDeadError):
                    ref.stop(block=False)
            if time.monotonic() >= deadline or self.stop_event.wait(0.05):
                log.warning(
                    "%d container actors still busy; starting the router anyway", len(alive)
                )
                return

    def shutdown(self) -> None:
        log.info("dockmirror stopping")
        self.probes.stopping()
        for name in (*APP_ACTORS, "docker-events", "kube-watch", "router", "events"):
            ref = self.refs.get(name)
            if ref is None:
                continue
            started = time.monotonic()
            with contextlib.suppress(Exception):
                ref.stop(block=True, timeout=5)
            took = time.monotonic() - started
            if took > 1.0:
                log.info("stopping %s took %.1f s", name, took)
        # With --app only while mirroring: otherwise the cleanup removed the object.
        if self.app is None or self.app.mirroring():
            try:
                self.engine_status.set_ready(False, "Stopped", "Container engine stopped")
            except KubeError as exc:
                log.warning("EngineReady not set to Stopped: %s", exc)
        if self.app is not None:
            self.app.shutdown()
        # Policy mode leaves its manifests: they keep rejecting invalid values meanwhile.
        if self.registration is not None:
            try:
                self.registration.delete()
            except KubeError as exc:
                log.warning("webhook configuration not deleted: %s", exc)
        if self.webhook is not None:
            self.webhook.stop()
        if self.elector is not None and self.leader_state.get() == LEADER:
            self.elector.release()  # last: nothing of ours acts any more
        self.journal.close()
        self.probes.stop()
        log.info("dockmirror stopped")


def main(argv: list[str] | None = None) -> int:
    """``dockmirror`` and ``python supervisor.py``: options and subcommands.

    See actors/service/cli.py.
    """
    return cli.main(argv, run=run_service)


def run_service(config: Config) -> int:
    """Run the service until a signal or a fatal error; returns the exit code."""
    supervisor = Supervisor(config)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        supervisor.stop_event.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        return supervisor.run()
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return EXIT_STARTUP
        raise
    finally:
        supervisor.probes.stop()


if __name__ == "__main__":
    sys.exit(main())
