"""Reader actors: a pykka actor that owns one blocking stream-reading thread.

Why a thread inside an actor: a blocking read (``GET /events``, a watch) cannot share
a thread with an inbox, yet the reader must be supervised like any actor. The actor's
``on_start`` starts the thread; ``on_stop`` sets the stop flag and closes the stream
so the blocked read returns. When the reading thread dies of an unexpected exception
it stops its actor, so the supervisor's liveness sweep sees a dead actor and restarts
it (a plain thread would die silently).

Subclasses implement :meth:`ReaderActor.run_once` (one connect-read cycle) and
:meth:`ReaderActor.interrupt` (close the current stream from another thread).
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable
from typing import Any

import pykka

from actors.infra import faults
from actors.infra.journal import Journal
from actors.runtime._base import JournaledActor
from messages.base import Message


class Backoff:
    """Exponential backoff with jitter: 0.1 s doubling to ``cap`` seconds."""

    def __init__(self, base: float = 0.1, cap: float = 5.0) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * (2**self.attempt))
        self.attempt += 1
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.attempt = 0


class ReaderActor(JournaledActor):
    """Base for the Docker events and Kubernetes watch readers."""

    def __init__(
        self,
        *,
        journal: Journal,
        name: str,
        send: Callable[[Message], None],
        on_death: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__(journal=journal, name=name, on_death=on_death)
        self.send = send
        self.stopping = threading.Event()
        self.backoff = Backoff()
        self._thread: threading.Thread | None = None

    def on_start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-reader", daemon=True)
        self._thread.start()

    def on_stop(self) -> None:
        self.stopping.set()
        self.interrupt()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        try:
            while not self.stopping.is_set():
                faults.hit("reader.run_once")
                self.run_once()
        except Exception as exc:  # unexpected: make the actor visibly dead
            self.log.exception("%s reader crashed", self.name)
            self.note("reader crashed", detail={"error": f"{type(exc).__name__}: {exc}"})
            if self._on_death is not None:
                self._on_death(self.name, f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(pykka.ActorDeadError):
                self.actor_ref.stop(block=False)

    def pause(self, seconds: float) -> None:
        """Wait before reconnecting; returns early when the actor stops."""
        self.stopping.wait(seconds)

    def run_once(self) -> None:
        raise NotImplementedError

    def interrupt(self) -> None:
        """Close the current stream so a blocked read returns (called from on_stop)."""

    def handlers(self) -> dict[type, Callable[[Any], None]]:
        return {}
