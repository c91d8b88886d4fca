"""Leader election: one active dockmirror per namespace (a ``coordination.k8s.io/v1`` Lease).

The rules are client-go's ``tools/leaderelection`` (docs/architecture.md, "One active
instance per namespace"):

* the Lease ``dockmirror`` in the service's namespace names its holder
  (``holderIdentity``: hostname, pid and a random suffix, new for every process);
* a candidate takes the Lease when it is free (no holder: a clean stop released it) or
  when its content has not changed for ``leaseDurationSeconds`` **as measured by the
  candidate's own monotonic clock since it observed that content**. The times written in
  the Lease are informational only: they come from another machine's clock and are never
  compared with ours;
* the leader renews every ``retry_period``; if no renewal succeeded for
  ``renew_deadline`` seconds (or the Lease shows another holder), it has lost the
  leadership and must stop acting at once: the supervisor raises the fence
  (:mod:`actors.runtime.fence`), stops every actor and stands by again;
* every write is conditional on the resourceVersion that was read (optimistic
  concurrency): of two candidates writing the same observation, one gets 409;
* a clean stop releases the Lease (empty holder, 1 s duration: client-go's
  ``ReleaseOnCancel``) so a standby takes over at its next retry.

Since ``renew_deadline < lease_duration``, a leader whose renewals fail has stopped acting
before any standby may consider the Lease expired (assuming both clocks *run* at a similar
rate; they need not agree on the time).

Parts: :class:`LeaseDecider` is the pure, clock-injected decision (no I/O, no threads);
:class:`LeaseClient` is the thin I/O through :class:`actors.ports.kube_port.KubeHttp`;
:class:`LeaderElector` runs them (the main thread while waiting as a standby, a renewer
thread while leading); :class:`LeaderState` is the thread-safe state that readiness and
metrics read.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from actors.domain.timefmt import micro_time_from_ns
from actors.ports.kube_port import KubeConflict, KubeError, KubeHttp, KubeNotFound

log = logging.getLogger("dockmirror.leader")

LEASE_NAME = "dockmirror"
LEASES_API = "/apis/coordination.k8s.io/v1"

LEADER = "leader"
STANDBY = "standby"
DISABLED = "disabled"


@dataclass(frozen=True)
class LeaseTiming:
    """client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry period."""

    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0

    def problem(self) -> str | None:
        """Why these values are unusable (client-go's checks), or None."""
        if self.retry_period_s <= 0:
            return "--retry-period must be greater than 0"
        if self.lease_duration_s <= self.renew_deadline_s:
            return "--lease-duration must be greater than --renew-deadline"
        if self.renew_deadline_s <= 1.2 * self.retry_period_s:
            return "--renew-deadline must be greater than 1.2 x --retry-period"
        if self.lease_duration_s < 1:
            return "--lease-duration must be at least 1 second"
        return None


@dataclass(frozen=True)
class LeaseSpec:
    """The Lease's ``spec`` (what client-go calls the LeaderElectionRecord)."""

    holder: str = ""
    duration_s: int = 0
    acquire_time: str = ""
    renew_time: str = ""
    transitions: int = 0

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> LeaseSpec:
        spec = obj.get("spec") or {}

        def integer(key: str) -> int:
            value = spec.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        def text(key: str) -> str:
            value = spec.get(key)
            return value if isinstance(value, str) else ""

        return cls(
            holder=text("holderIdentity"),
            duration_s=integer("leaseDurationSeconds"),
            acquire_time=text("acquireTime"),
            renew_time=text("renewTime"),
            transitions=integer("leaseTransitions"),
        )

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.duration_s,
            "leaseTransitions": self.transitions,
        }
        if self.acquire_time:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time:
            spec["renewTime"] = self.renew_time
        return spec


class Step(enum.Enum):
    CREATE = "create"  # no Lease yet: create it with us as holder
    TAKE = "take"  # free or expired by our observation: write us as holder
    RENEW = "renew"  # ours: write a new renewTime
    WAIT = "wait"  # held by another, still valid: stay a standby
    LOST = "lost"  # we lead, but the Lease names another holder: fence


@dataclass(frozen=True)
class Plan:
    step: Step
    spec: LeaseSpec | None = None  # what to write for CREATE/TAKE/RENEW
    holder: str = ""  # the current holder for WAIT/LOST


class LeaseDecider:
    """The pure lease decision. Not thread-safe: one caller at a time (the elector's lock).

    ``now`` is always this process's monotonic clock in seconds; ``wall`` is the text
    written into ``acquireTime``/``renewTime`` (informational, never read back for a
    decision).
    """

    def __init__(self, identity: str, timing: LeaseTiming) -> None:
        self.identity = identity
        self.timing = timing
        self.observed: LeaseSpec | None = None
        self.observed_rv: str | None = None
        #: Our monotonic time when the observed spec last *changed* (client-go's observedTime).
        self.observed_at: float | None = None
        #: Our monotonic time of the last successful write as holder (None: not leading).
        self.renewed_at: float | None = None

    @property
    def leading(self) -> bool:
        return self.renewed_at is not None

    def observe(self, spec: LeaseSpec | None, rv: str | None, now: float) -> None:
        """Record what a read returned; restart the expiry clock only when it changed."""
        if spec != self.observed or self.observed_at is None:
            self.observed = spec
            self.observed_at = now
        self.observed_rv = rv

    def _expired(self, now: float) -> bool:
        assert self.observed is not None and self.observed_at is not None
        duration = self.observed.duration_s or self.timing.lease_duration_s
        return now - self.observed_at >= duration

    def plan(self, now: float, wall: str) -> Plan:
        """What to do after the latest :meth:`observe`."""
        duration = max(1, round(self.timing.lease_duration_s))
        current = self.observed
        if current is None:
            return Plan(Step.CREATE, LeaseSpec(self.identity, duration, wall, wall, 0))
        if current.holder == self.identity:
            return Plan(Step.RENEW, replace(current, duration_s=duration, renew_time=wall))
        if self.leading:
            # Someone else holds what we believed ours: we were deposed (our renewals did
            # not land in time). Never take it back: fence first.
            return Plan(Step.LOST, holder=current.holder)
        if current.holder and not self._expired(now):
            return Plan(Step.WAIT, holder=current.holder)
        return Plan(
            Step.TAKE,
            LeaseSpec(self.identity, duration, wall, wall, current.transitions + 1),
            holder=current.holder,
        )

    def written(self, spec: LeaseSpec, rv: str | None, now: float, *, started: float) -> None:
        """Our CREATE/TAKE/RENEW write succeeded.

        ``started`` is when the write was sent: the lease counts from then, because a
        standby observes its change no earlier than that.
        """
        self.observed = spec
        self.observed_rv = rv
        self.observed_at = now
        self.renewed_at = started

    def lost(self, now: float) -> str | None:
        """Why we no longer lead (renew deadline passed, or another holder seen), or None."""
        if not self.leading:
            return None
        if self.observed is not None and self.observed.holder != self.identity:
            return f"the Lease is held by {self.observed.holder or 'nobody'}"
        assert self.renewed_at is not None
        late = now - self.renewed_at
        if late > self.timing.renew_deadline_s:
            deadline = self.timing.renew_deadline_s
            return f"the Lease was not renewed for {late:.1f} s (renew deadline {deadline:g} s)"
        return None

    def release_spec(self, wall: str) -> LeaseSpec | None:
        """What a clean stop writes (client-go ``ReleaseOnCancel``), None when not leading."""
        if not self.leading or self.observed is None or self.observed.holder != self.identity:
            return None
        return LeaseSpec("", 1, wall, wall, self.observed.transitions)


class LeaseClient:
    """The Lease through the Kubernetes port. Blocking; raises the KubeError families."""

    def __init__(
        self,
        http: KubeHttp,
        namespace: str,
        name: str = LEASE_NAME,
        *,
        timeout: tuple[float, float] = (2.0, 5.0),
    ) -> None:
        self.http = http
        self.namespace = namespace
        self.name = name
        self.timeout = timeout

    def _collection(self) -> str:
        return f"{LEASES_API}/namespaces/{self.namespace}/leases"

    def get(self) -> tuple[LeaseSpec | None, str | None]:
        """The Lease's spec and resourceVersion; ``(None, None)`` when it does not exist."""
        try:
            obj = self.http.request(
                "GET", f"{self._collection()}/{self.name}", timeout=self.timeout
            )
        except KubeNotFound:
            return None, None
        return LeaseSpec.from_object(obj), (obj.get("metadata") or {}).get("resourceVersion")

    def create(self, spec: LeaseSpec) -> str | None:
        """Create the Lease; KubeConflict (409) when another candidate was first."""
        obj = self.http.request(
            "POST",
            self._collection(),
            body=self._body(spec, None),
            timeout=self.timeout,
        )
        return (obj.get("metadata") or {}).get("resourceVersion")

    def update(self, spec: LeaseSpec, rv: str | None) -> str | None:
        """Replace the spec under ``rv`` (409 when anyone wrote since the read)."""
        obj = self.http.request(
            "PUT",
            f"{self._collection()}/{self.name}",
            body=self._body(spec, rv),
            timeout=self.timeout,
        )
        return (obj.get("metadata") or {}).get("resourceVersion")

    def _body(self, spec: LeaseSpec, rv: str | None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if rv is not None:
            metadata["resourceVersion"] = rv
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec.to_spec(),
        }


class LeaderState:
    """``leader``, ``standby`` or ``disabled`` (plus the holder we wait for); thread-safe.

    Written by the elector (main thread or renewer thread), read by anyone (``/readyz``,
    metrics).
    """

    def __init__(self, value: str = DISABLED) -> None:
        self._lock = threading.Lock()
        self._value = value
        self._holder = ""

    def __call__(self) -> str:
        return self.get()

    def get(self) -> str:
        with self._lock:
            return self._value

    def holder(self) -> str:
        with self._lock:
            return self._holder

    def set(self, value: str, holder: str = "") -> None:
        with self._lock:
            self._value = value
            self._holder = holder


def _wall() -> str:
    return micro_time_from_ns(time.time_ns())


class LeaderElector:
    """Runs the decider against the Lease.

    :meth:`acquire` runs on the main thread until this process leads (or stop is
    requested); :meth:`start_renewing` then starts a daemon thread that renews every
    retry period and calls ``on_lost`` (once) when the leadership is lost. Errors of the
    port are not fatal: they are retried every retry period, and while leading the renew
    deadline decides. A lock makes each round atomic (the main thread's :meth:`lost`
    check and :meth:`release` may run concurrently with the renewer).
    """

    def __init__(
        self,
        client: LeaseClient,
        identity: str,
        timing: LeaseTiming,
        *,
        state: LeaderState | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], str] = _wall,
    ) -> None:
        self.client = client
        self.identity = identity
        self.timing = timing
        self.decider = LeaseDecider(identity, timing)
        self.state = state or LeaderState(STANDBY)
        self.clock = clock
        self.wall = wall
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._waiting_for: str | None = None  # the holder our standby line named
        self._last_error = ""
        self.last_exception: KubeError | None = None  # of the latest round, for acquire()

    # --- one round --------------------------------------------------------------------
    def try_once(self) -> Plan:
        """Read the Lease, decide, write if needed. Returns the plan carried out.

        A failed read or write (any KubeError, 409 included) leaves the decider as it
        was and returns a WAIT plan (or the RENEW plan while leading): the next round
        retries, and the renew deadline decides whether leading continues.
        """
        with self._lock:
            try:
                spec, rv = self.client.get()
                self.decider.observe(spec, rv, self.clock())
                plan = self.decider.plan(self.clock(), self.wall())
                if plan.spec is not None:
                    started = self.clock()
                    if plan.step is Step.CREATE:
                        new_rv = self.client.create(plan.spec)
                    else:
                        new_rv = self.client.update(plan.spec, rv)
                    self.decider.written(plan.spec, new_rv, self.clock(), started=started)
                if self._last_error:
                    log.info("lease %s: the apiserver answers again", self.client.name)
                    self._last_error = ""
                self.last_exception = None
                return plan
            except KubeError as exc:
                self.last_exception = exc
                text = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, KubeConflict):
                    # Another candidate wrote first: expected, not worth a log line.
                    pass
                elif text != self._last_error:
                    log.warning("lease %s: %s (retrying)", self.client.name, text)
                self._last_error = "" if isinstance(exc, KubeConflict) else text
                observed = self.decider.observed
                return Plan(Step.WAIT, holder=observed.holder if observed else "")

    # --- standby (main thread) --------------------------------------------------------
    def acquire(
        self,
        stop: threading.Event,
        prepare: Callable[[], None] | None = None,
        fatal: Callable[[BaseException], None] | None = None,
    ) -> bool:
        """Wait as a standby until this process holds the Lease; False when ``stop`` is set.

        ``prepare`` (creating the namespace) runs before each round until it succeeds.
        ``fatal`` sees every error of ``prepare`` and of the Lease calls first and may end
        the wait by raising (the supervisor's one-line exit for a 401 or 403: waiting
        cannot fix missing credentials or permissions). Logs one line when it becomes a
        standby and one per change of holder.
        """
        prepared = prepare is None
        while not stop.is_set():
            if not prepared:
                try:
                    prepare()  # type: ignore[misc]
                    prepared = True
                except KubeError as exc:
                    if fatal is not None:
                        fatal(exc)
                    text = f"{type(exc).__name__}: {exc}"
                    if text != self._last_error:
                        log.warning("namespace not ready for the lease: %s (retrying)", text)
                        self._last_error = text
            if prepared:
                plan = self.try_once()
                if fatal is not None and self.last_exception is not None:
                    fatal(self.last_exception)
                if self.decider.leading:
                    self.state.set(LEADER)
                    log.info(
                        "leader of namespace %s (lease %s, identity %s)",
                        self.client.namespace,
                        self.client.name,
                        self.identity,
                    )
                    return True
                if plan.step is Step.WAIT and plan.holder and plan.holder != self._waiting_for:
                    self._waiting_for = plan.holder
                    self.state.set(STANDBY, plan.holder)
                    log.info(
                        "standby: lease %s of namespace %s is held by %s; mirroring and "
                        "acting on nothing until it expires or is released",
                        self.client.name,
                        self.client.namespace,
                        plan.holder,
                    )
            stop.wait(self.timing.retry_period_s)
        return False

    # --- leading (renewer thread) -----------------------------------------------------
    def start_renewing(self, on_lost: Callable[[str], None]) -> None:
        """Start the renewer thread; ``on_lost(reason)`` is called once from it."""

        def run() -> None:
            while not self._stop.wait(self.timing.retry_period_s):
                plan = self.try_once()
                reason = self.lost()
                if plan.step is Step.LOST or reason is not None:
                    on_lost(reason or f"the Lease is held by {plan.holder}")
                    return

        self._thread = threading.Thread(target=run, name="lease-renewer", daemon=True)
        self._thread.start()

    def step_down(self) -> None:
        """After a loss, once everything stopped acting: stop renewing, be a standby.

        Main thread. The Lease is not written: either another holder has it, or our
        renewals do not reach the apiserver; if it still names us when the apiserver
        answers again, the next :meth:`acquire` renews it at once (client-go does the
        same), otherwise a standby's rules apply.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timing.renew_deadline_s)
        with self._lock:
            self.decider.renewed_at = None
            self._thread = None
            self._stop = threading.Event()
            self._waiting_for = None
            self.state.set(STANDBY)

    def lost(self) -> str | None:
        """Why the leadership is lost, or None; any thread (the main loop's watchdog).

        Does not take the round's lock: a renewal stuck in a slow request must not delay
        the fence. Reading two attributes of the decider unlocked is safe here (each is
        replaced atomically; the worst case is one check late).
        """
        return self.decider.lost(self.clock())

    def release(self) -> None:
        """Clean stop: stop renewing and free the Lease so a standby takes over at once.

        Main thread, at the very end of the shutdown (after everything stopped acting).
        A failure is logged: the Lease then expires after its duration.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timing.renew_deadline_s)
        with self._lock:
            spec = self.decider.release_spec(self.wall())
            if spec is None:
                return
            try:
                self.client.update(spec, self.decider.observed_rv)
            except KubeError as exc:
                log.warning(
                    "lease %s not released (%s); a standby takes over when it expires",
                    self.client.name,
                    exc,
                )
                return
            self.decider.renewed_at = None
            self.state.set(STANDBY)
            log.info("lease %s released", self.client.name)
