"""App mode's part of the composition root (``--app``, docs/contract.md §3.1, §3.5).

The supervisor keeps one :class:`AppMode` when ``--app`` is given and calls it at four
points, all on its main thread:

* :meth:`AppMode.resolve_namespace` in ``build()``: install the App CRD if the
  apiserver has none, wait for the App named ``app`` and return its ``spec.namespace``,
  which then is the namespace of everything namespaced (mirrors, Lease, admission);
* :meth:`AppMode.bind` once the supervisor's start/stop callbacks exist: they make the
  :class:`~actors.runtime.mirroring_switch.MirroringSwitch`, which the main loop applies
  every second (:meth:`AppMode.apply`);
* :meth:`AppMode.start_actor` for its two supervised actors, ``app-watch`` and ``app``;
* :meth:`AppMode.shutdown` at a clean stop.

What the App decides is in :mod:`actors.domain.app_mode`, how it is followed in
:mod:`actors.runtime.app_follower`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import pykka

from actors.domain.app_mode import (
    CONNECT_FAILED,
    SHUTDOWN_MESSAGE,
    Condition,
    Decision,
    Target,
    app_crd,
    read_app,
)
from actors.domain.names import APP_CRD_NAME, APP_NAME
from actors.infra.journal import Journal
from actors.ports.app_port import AppApi, MirrorSweeper
from actors.ports.kube_port import KubeError, KubeHttp, KubeNotFound
from actors.runtime.app_follower import AppFollower, write_engine_condition
from actors.runtime.app_watch import AppWatchReader
from actors.runtime.mirroring_switch import MirroringSwitch
from messages.app import EngineReadiness
from messages.base import Message

log = logging.getLogger("dockmirror.app")

#: The two actors App mode adds to the supervised table.
ACTORS = ("app-watch", "app")
#: While waiting for the App, say so again this often.
WAITING_LOG_INTERVAL_S = 60.0


class AppMode:
    """App mode's objects of one service run. Main thread, except where noted."""

    def __init__(
        self,
        *,
        http: KubeHttp,
        journal: Journal,
        install_crd: bool,
        on_moved: Callable[[str], None],
        api: AppApi | None = None,
    ) -> None:
        self.http = http
        self.journal = journal
        self.install_crd = install_crd
        self.on_moved = on_moved
        self.api = api or AppApi(http)
        self.namespace = ""
        self.switch: MirroringSwitch | None = None
        self.follower: pykka.ActorRef | None = None

    # --- at start -------------------------------------------------------------------------
    def resolve_namespace(
        self,
        stop: threading.Event,
        *,
        timeout: float,
        fatal: Callable[[BaseException], None],
        unreachable: Callable[[BaseException], str],
        clock: Callable[[], float] = time.monotonic,
    ) -> str | None:
        """The App's ``spec.namespace``, once the App exists; None if ``stop`` was set.

        The App CRD is created first when missing (and allowed: not with
        ``--skip-crd-install``). A missing App (or App CRD) is waited for without a time
        limit: the App's owner may create it later; it is logged every minute. Errors
        other than 404 are retried every second for ``timeout`` seconds (``fatal`` ends
        the start at once on 401/403), then the start ends with ``unreachable``'s line.
        """
        crd_done = not self.install_crd
        deadline = clock() + timeout
        said_waiting = -WAITING_LOG_INTERVAL_S
        while not stop.is_set():
            try:
                if not crd_done:
                    self._install_crd()
                    crd_done = True
                obj = self.api.get()
            except KubeNotFound:
                deadline = clock() + timeout  # the apiserver answers: no error to time out
                if clock() - said_waiting >= WAITING_LOG_INTERVAL_S:
                    said_waiting = clock()
                    log.info(
                        "--app: waiting for the App %r (%s) to exist: kubectl get %s %s",
                        APP_NAME,
                        APP_CRD_NAME,
                        APP_CRD_NAME,
                        APP_NAME,
                    )
            except KubeError as exc:
                fatal(exc)
                if clock() >= deadline:
                    raise SystemExit(f"dockmirror: {unreachable(exc)}") from exc
                log.warning("apiserver not ready yet (%s); retrying", exc)
            else:
                self.namespace = read_app(obj).namespace
                return self.namespace
            stop.wait(1.0)
        return None

    def _install_crd(self) -> None:
        """Create the App CRD if there is none; an existing one is never replaced."""
        if self.api.crd_installed():
            return
        self.api.create_crd(app_crd())
        log.info("--app: installed the App CRD %s (none was installed)", APP_CRD_NAME)

    # --- wiring -------------------------------------------------------------------------
    def bind(self, *, start: Callable[[int], None], stop: Callable[[], None]) -> None:
        """Make the switch on the supervisor's callbacks (``start(epoch)``, ``stop()``)."""
        self.switch = MirroringSwitch(start=start, stop=stop, notify=self.tell_follower)

    def apply(self) -> None:
        """Main loop, every second: carry out what the follower asked for."""
        if self.switch is not None:
            self.switch.apply()

    def tell_follower(self, message: Message) -> None:
        """Any thread; dropped while the follower is being restarted (it re-reads the
        App and the switch's state when it starts)."""
        ref = self.follower
        if ref is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(message)

    def readiness_listener(self, epoch: int) -> Callable[[bool, str, str], None]:
        """``EngineStatus``'s listener for mirroring run ``epoch`` (router thread)."""

        def listener(ready: bool, reason: str, message: str) -> None:
            self.tell_follower(
                EngineReadiness(epoch=epoch, ready=ready, reason=reason, message=message)
            )

        return listener

    def start_actor(self, name: str, on_death: Callable[[str, str], None]) -> pykka.ActorRef:
        """Start ``app-watch`` or ``app`` (the supervisor's factories call this)."""
        assert self.switch is not None, "bind() first"
        if name == "app-watch":
            return AppWatchReader.start(
                journal=self.journal, api=self.api, send=self.tell_follower, on_death=on_death
            )
        ref = AppFollower.start(
            journal=self.journal,
            api=self.api,
            sweeper=MirrorSweeper(self.http, self.namespace),
            switch=self.switch,
            namespace=self.namespace,
            on_moved=self.on_moved,
            on_death=on_death,
        )
        self.follower = ref
        return ref

    def mirroring(self) -> bool:
        """Whether mirroring runs now (main thread)."""
        return self.switch is not None and self.switch.state().on

    # --- at the end ---------------------------------------------------------------------
    def shutdown(self) -> None:
        """Clean stop, after the actors stopped: if mirroring ran, say on the App that
        the mirrors no longer follow the engine (they are kept: no cleanup, so not
        ``Stopped``; docs/contract.md §9, D23), then switch off without a cleanup."""
        switch = self.switch
        if switch is None:
            return
        if switch.state().on:
            try:
                write_engine_condition(
                    self.api,
                    Condition("False", CONNECT_FAILED, SHUTDOWN_MESSAGE),
                    namespace=self.namespace,
                    expected=Decision(Target.RUN, self.namespace),
                )
            except KubeError as exc:
                log.warning("ContainerEngineReady not updated at stop: %s", exc)
        switch.reset()

    def step_down(self) -> None:
        """Leadership lost: switch off without a cleanup and without a write (the App
        and the mirrors belong to the new leader now)."""
        if self.switch is not None:
            self.switch.reset()
