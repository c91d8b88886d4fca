"""Mirroring on or off: asked for by the App follower, carried out by the supervisor.

In App mode (``--app``) the router and the two readers run only while the App wants
them (docs/contract.md §3.1). Starting and stopping top-level actors is the supervisor's
job and happens on its main thread (its liveness sweep walks the same table), while the
decision is made in the App follower's thread. This object is the hand-over, and the
only thing the supervisor needs to know about App mode's lifecycle:

* the follower calls :meth:`MirroringSwitch.request` (any thread; never blocks);
* the main loop calls :meth:`MirroringSwitch.apply` every second: when the request
  differs from the current state it runs the ``start`` or ``stop`` callback, then tells
  the follower :class:`~messages.app.MirroringChanged` through ``notify``, so the follower
  starts its cleanup only once nothing mirrors any more;
* :meth:`MirroringSwitch.reset` (main thread, on a leadership loss or at shutdown)
  forgets a pending request and runs ``stop`` if mirroring is on, telling nobody.

``epoch`` counts the starts; readiness reports of an older run are ignored by the
follower. A ``start`` callback that raises is stopped again and reported as
``MirroringChanged(on=False, error=...)``; the follower retries with backoff.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from messages.app import MirroringChanged
from messages.base import Message

log = logging.getLogger("dockmirror.app")


@dataclass(frozen=True)
class SwitchState:
    on: bool
    epoch: int
    #: Mirroring ran (or a start was tried) since the follower last reported a finished
    #: cleanup: mirrors may exist. Kept here, not in the follower, so a restarted
    #: follower still knows it must clean up.
    dirty: bool = False


class MirroringSwitch:
    """Thread-safe hand-over between the App follower and the supervisor's main thread."""

    def __init__(
        self,
        *,
        start: Callable[[int], None],
        stop: Callable[[], None],
        notify: Callable[[Message], None],
    ) -> None:
        self._start = start
        self._stop = stop
        self._notify = notify
        self._lock = threading.Lock()
        self._wanted: bool | None = None
        self._on = False
        self._epoch = 0
        self._dirty = False

    def request(self, on: bool) -> None:
        """Ask for mirroring on or off (follower thread). The latest request wins."""
        with self._lock:
            self._wanted = on

    def state(self) -> SwitchState:
        """Whether mirroring runs, the epoch of the current or last run, and whether
        mirrors may be left from it."""
        with self._lock:
            return SwitchState(self._on, self._epoch, self._dirty)

    def mark_clean(self) -> None:
        """Follower thread: a cleanup finished while mirroring was off."""
        with self._lock:
            if not self._on:
                self._dirty = False

    def apply(self) -> None:
        """Main thread: carry out a pending request, then tell the follower.

        The callbacks run outside the lock (a stop waits for busy container actors), so
        a follower's :meth:`request` never waits for them; only the main thread calls
        :meth:`apply` and :meth:`reset`, so they never overlap each other.
        """
        with self._lock:
            wanted, self._wanted = self._wanted, None
            on, epoch = self._on, self._epoch
        if wanted is None:
            return
        if wanted == on:
            # Already there (a repeated request): confirm, so a follower that asked
            # again after a restart is not left waiting.
            message = MirroringChanged(on=on, epoch=epoch)
        elif wanted:
            with self._lock:
                self._dirty = True  # before the start: a failed start may leave objects
            message = self._switch_on(epoch + 1)
        else:
            self._stop()
            message = MirroringChanged(on=False, epoch=epoch)
        with self._lock:
            self._on, self._epoch = message.on, message.epoch
        self._notify(message)

    def _switch_on(self, epoch: int) -> MirroringChanged:
        try:
            self._start(epoch)
        except Exception as exc:  # a start that half happened must not stay half on
            log.exception("starting the mirroring failed")
            try:
                self._stop()
            except Exception:
                log.exception("stopping a failed start of the mirroring failed too")
            return MirroringChanged(on=False, epoch=epoch, error=f"{type(exc).__name__}: {exc}")
        return MirroringChanged(on=True, epoch=epoch)

    def reset(self) -> None:
        """Main thread: mirroring off without a cleanup and without telling anyone."""
        with self._lock:
            self._wanted = None
            on, self._on = self._on, False
        if on:
            self._stop()
