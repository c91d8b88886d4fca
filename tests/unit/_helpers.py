"""Shared helpers for the actor-level unit tests (fakes, collectors, barriers).

Every wait here has a deadline (``tests.support.wait.wait_for``); nothing sleeps to
synchronise. Tests using actors must stop them afterwards (each module has an autouse
fixture calling ``pykka.ActorRegistry.stop_all()``).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pykka

from actors.domain.names import ACTION_ANNOTATION
from actors.infra.journal import Journal
from actors.runtime.container import ContainerActor, ContainerDeps
from messages.base import Message
from messages.inbound import MirrorObserved, Tick
from messages.journal import Effect, Entry, Note, decode_entry
from tests.fakes.docker import FakeDocker
from tests.fakes.kube import FakeMirrorStore
from tests.support.wait import wait_for

__all__ = [
    "KUBE_TIME",
    "Collector",
    "Env",
    "FakeClock",
    "FakeEngineStatus",
    "barrier",
    "journal_entries",
    "wait_for",
]

KUBE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class Collector:
    """A thread-safe ``list.append``: usable as ``report``, ``emit`` or ``send``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Any] = []

    def __call__(self, item: Any) -> None:
        with self._lock:
            self._items.append(item)

    @property
    def items(self) -> list[Any]:
        with self._lock:
            return list(self._items)

    def of(self, cls: type) -> list[Any]:
        return [i for i in self.items if isinstance(i, cls)]


class FakeClock:
    """An injectable monotonic clock the test advances by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class FakeEngineStatus:
    """Records ``set_ready`` calls and counts ``ensure_moby`` (the router's uses of
    EngineStatus)."""

    def __init__(self) -> None:
        self.calls = Collector()
        self.ensured = 0

    def set_ready(self, ready: bool, reason: str, message: str) -> None:
        self.calls((ready, reason, message))

    def ensure_moby(self) -> bool:
        self.ensured += 1
        return False


def barrier(ref: pykka.ActorRef, timeout: float = 5.0) -> None:
    """Wait until ``ref`` handled everything told before (Tick has no container handler)."""
    ref.ask(Tick(), timeout=timeout)


def journal_entries(path: Path) -> list[Entry]:
    return [decode_entry(line) for line in path.read_bytes().splitlines() if line.strip()]


class Env:
    """FakeDocker + FakeMirrorStore + journal + collectors for one test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.docker = FakeDocker()
        self.store = FakeMirrorStore("rancher-desktop")
        self.journal_path = tmp_path / "trace.jsonl"
        self.journal = Journal(path=self.journal_path)
        self.reports = Collector()
        self.events = Collector()
        self.deaths = Collector()
        self.deps = ContainerDeps(
            docker=self.docker,
            store=self.store,
            journal=self.journal,
            report=self.reports,
            emit=self.events,
        )

    def start_actor(self, container_id: str, **kwargs: Any) -> pykka.ActorRef:
        kwargs.setdefault("on_death", lambda name, error: self.deaths((name, error)))
        return ContainerActor.start(deps=self.deps, container_id=container_id, **kwargs)

    def tell(self, ref: pykka.ActorRef, message: Message) -> None:
        ref.tell(message)

    def observe(self, ref: pykka.ActorRef, name: str) -> dict[str, Any]:
        """Deliver the stored object as the watch would (its newest MODIFIED event)."""
        obj = self.store.get(name)
        ref.tell(
            MirrorObserved(
                name=name,
                resource_version=obj["metadata"]["resourceVersion"],
                event_type="MODIFIED",
                obj=obj,
            )
        )
        return obj

    def mirror(self, name: str) -> dict[str, Any] | None:
        return self.store.objects().get(name)

    def annotation(self, name: str) -> str | None:
        obj = self.mirror(name) or {}
        return ((obj.get("metadata") or {}).get("annotations") or {}).get(ACTION_ANNOTATION)

    def last_action(self, name: str) -> dict[str, Any] | None:
        obj = self.mirror(name) or {}
        return (obj.get("status") or {}).get("lastAction")

    def effects(self, op: str | None = None) -> list[Effect]:
        return [
            e
            for e in journal_entries(self.journal_path)
            if isinstance(e, Effect) and (op is None or e.op == op)
        ]

    def notes(self, text: str | None = None) -> list[Note]:
        return [
            e
            for e in journal_entries(self.journal_path)
            if isinstance(e, Note) and (text is None or e.text == text)
        ]

    def action_calls(self) -> list[tuple[str, str | None]]:
        """Docker calls that change state (everything but reads)."""
        return [
            c
            for c in self.docker.calls
            if c[0] in ("start", "stop", "pause", "unpause", "restart", "remove")
        ]
