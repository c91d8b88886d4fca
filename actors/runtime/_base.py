"""The journaled actor base: every received message and every effect becomes a trace line.

Subclasses declare handlers by message type in ``handlers()`` and call
:meth:`JournaledActor.effect` around every Docker or Kubernetes call, so each effect
line names the message that caused it (``causation_id``).

Failure semantics (pykka 4): a handler that raises kills the
actor; pykka then calls ``on_failure`` in the actor's thread, which tells the owner
(``on_death`` callback) so it can restart the actor. ``on_start`` failures are not
reported by pykka at all; owners also sweep ``is_alive()``. ``BaseException`` is never
let through a handler because pykka would stop every actor in the process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import pykka

from actors.infra.journal import Journal
from actors.ports.docker_port import DockerError, DockerNotFound, DockerUnavailable
from actors.ports.kube_port import KubeConflict, KubeError, KubeNotFound, KubeUnavailable
from actors.runtime import fence
from messages.base import Message
from messages.inbound import Tick
from messages.journal import Effect, Note, Received

T = TypeVar("T")


def outcome_of(exc: BaseException | None) -> str:
    """The journal's word for how a call ended."""
    if exc is None:
        return "ok"
    if isinstance(exc, DockerNotFound | KubeNotFound):
        return "not_found"
    if isinstance(exc, KubeConflict):
        return "conflict"
    if isinstance(exc, DockerUnavailable | KubeUnavailable):
        return "unavailable"
    if isinstance(exc, DockerError | KubeError):
        return "error"
    return "exception"


class JournaledActor(pykka.ThreadingActor):
    """A pykka actor whose inbox and effects are journaled.

    Runs each handler in the actor's own thread. ``on_death(name, error)`` is called
    from ``on_failure`` (actor thread) when a handler raised.
    """

    actor_kind = "actor"
    # Daemon threads: a shutdown must not wait for a container actor stuck in a 10 s
    # ``docker stop``; whatever it was doing is replayed at the next start (docs/contract.md §4.7).
    use_daemon_thread = True

    def __init__(
        self,
        *,
        journal: Journal,
        name: str,
        container_id: str = "",
        on_death: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__()
        self.journal = journal
        self.name = name
        self.container_id = container_id
        self._on_death = on_death
        self._current_msg_id = ""
        self.log = logging.getLogger(f"dockmirror.{self.actor_kind}")
        self._handlers: dict[type, Callable[[Any], None]] = self.handlers()

    def handlers(self) -> dict[type, Callable[[Any], None]]:
        """Map message types to bound handler methods."""
        return {}

    # --- pykka hooks (actor thread) ----------------------------------------------
    def on_receive(self, message: Any) -> Any:
        if not isinstance(message, Message):
            self.note("ignored a non-message", detail={"type": type(message).__name__})
            return None
        if not isinstance(message, Tick):
            self.journal.record(
                Received(
                    actor=self.name,
                    container_id=self.container_id,
                    causation_id=message.cause,
                    msg_id=message.msg_id,
                    msg_kind=str(type(message).__struct_config__.tag or ""),
                    msg=_summarize(message),
                )
            )
        handler = self._handlers.get(type(message))
        if handler is None:
            self.note("no handler", detail={"kind": type(message).__name__})
            return None
        self._current_msg_id = message.msg_id
        try:
            return handler(message)
        finally:
            self._current_msg_id = ""

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        error = f"{exception_type.__name__}: {exception_value}"
        self.journal.record(
            Note(
                actor=self.name,
                container_id=self.container_id,
                text="actor died",
                detail={"error": error},
            )
        )
        if self._on_death is not None:
            try:
                self._on_death(self.name, error)
            except Exception:  # the owner may be stopping; never mask the original failure
                self.log.exception("on_death callback failed for %s", self.name)

    # --- journaling helpers --------------------------------------------------------
    def effect(
        self,
        target: str,
        op: str,
        fn: Callable[..., T],
        *args: Any,
        detail: dict[str, Any] | None = None,
        caused_by: str | None = None,
        **kwargs: Any,
    ) -> T:
        """Run one Docker/Kubernetes call and journal it with its outcome and duration.

        The call's exception (if any) is journaled and re-raised unchanged. Once this
        process lost its leadership, the call is not made: :class:`actors.runtime.fence.Fenced`.
        ``caused_by`` names the causing message when the call runs outside the handler
        (a worker thread of the actor); by default it is the message being handled.
        """
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            fence.check()
            return fn(*args, **kwargs)
        except Exception as exc:
            error = exc
            raise
        finally:
            self.journal.record(
                Effect(
                    actor=self.name,
                    container_id=self.container_id,
                    causation_id=self._current_msg_id if caused_by is None else caused_by,
                    target=target,
                    op=op,
                    outcome=outcome_of(error),
                    error=str(error)[:500] if error is not None else "",
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                    detail=detail or {},
                )
            )

    def note(self, text: str, *, detail: dict[str, Any] | None = None) -> None:
        self.journal.record(
            Note(
                actor=self.name,
                container_id=self.container_id,
                causation_id=self._current_msg_id,
                text=text,
                detail=detail or {},
            )
        )


def _summarize(message: Message) -> dict[str, Any]:
    """The message's fields for the journal; whole Kubernetes objects are cut down."""
    data = msgspec.to_builtins(message)
    obj = data.get("obj")
    if isinstance(obj, dict) and obj:
        meta = obj.get("metadata") or {}
        data["obj"] = {
            "resourceVersion": meta.get("resourceVersion"),
            "annotations": meta.get("annotations"),
            "deletionTimestamp": meta.get("deletionTimestamp"),
            "finalizers": meta.get("finalizers"),
        }
    return data
