"""The Kubernetes watch reader: list, then watch from the list's resourceVersion.

One cycle (:meth:`KubeWatchReader.run_once`):

1. list the Container mirrors; tell the router :class:`WatchRelisted` (the live names)
   and one :class:`MirrorObserved` per object, so annotations written while we were
   away are replayed;
2. watch from the list's resourceVersion with bookmarks, forwarding ADDED/MODIFIED as
   :class:`MirrorObserved` and DELETED as :class:`MirrorDeleted`, remembering the RV
   of every event including BOOKMARKs;
3. when the server closes the stream (``timeoutSeconds``), watch again from the last
   RV; on ``410 Gone`` (an ERROR event or status) list again;
4. a dead connection cannot hang the reader: the client read timeout
   (``inactivity_timeout_s``, above the apiserver's ~60 s bookmark interval) acts as
   the inactivity watchdog and leads to a relist.

Connection failures back off exponentially. Runs in the reader thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors.infra.journal import Journal
from actors.ports.kube_port import (
    KubeError,
    KubeGone,
    KubeUnavailable,
    MirrorStore,
    error_from_status,
)
from actors.runtime.reader import ReaderActor
from messages.base import Message
from messages.inbound import MirrorDeleted, MirrorObserved, WatchRelisted

SERVER_TIMEOUT_S = 240
INACTIVITY_TIMEOUT_S = 75.0


class KubeWatchReader(ReaderActor):
    actor_kind = "kube_watch"

    def __init__(
        self,
        *,
        journal: Journal,
        store: MirrorStore,
        send: Callable[[Message], None],
        on_death: Callable[[str, str], None] | None = None,
        server_timeout_s: int = SERVER_TIMEOUT_S,
        inactivity_timeout_s: float = INACTIVITY_TIMEOUT_S,
    ) -> None:
        super().__init__(journal=journal, name="kube-watch", send=send, on_death=on_death)
        self.store = store
        self.server_timeout_s = server_timeout_s
        self.inactivity_timeout_s = inactivity_timeout_s
        self.resource_version: str | None = None
        self.failed_since_list = False
        self._stream: Any = None
        self.last_event_monotonic = 0.0

    def run_once(self) -> None:
        try:
            if self.resource_version is None:
                self._relist()
            self._watch()
        except KubeGone as exc:  # an ERROR event with code 410, or a 410 answer
            if self.resource_version is None:  # the list itself: not a stale watch
                self._failed("list failed", exc)
                return
            self.note("watch expired (410); relisting")
            self.resource_version = None
        except KubeUnavailable as exc:
            self._failed("watch connection failed", exc)
        except KubeError as exc:
            self._failed("watch failed", exc)

    def _failed(self, text: str, exc: KubeError) -> None:
        """Journal, relist next time, and wait: the server's Retry-After or our backoff."""
        self.note(text, detail={"error": str(exc)})
        self.resource_version = None
        self.failed_since_list = True
        delay = self.backoff.next_delay()
        if exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        self.pause(delay)

    def _relist(self) -> None:
        items, resource_version = self.store.list()
        names = tuple((obj.get("metadata") or {}).get("name") or "" for obj in items)
        self.send(
            WatchRelisted(
                names=names,
                resource_version=resource_version,
                after_failure=self.failed_since_list,
            )
        )
        self.failed_since_list = False
        for obj in items:
            self._observed(obj, "LISTED")
        self.resource_version = resource_version
        self.backoff.reset()

    def _watch(self) -> None:
        assert self.resource_version is not None
        stream = self.store.watch(
            self.resource_version,
            server_timeout_s=self.server_timeout_s,
            read_timeout_s=self.inactivity_timeout_s,
        )
        self._stream = stream
        try:
            for event in stream:
                if self.stopping.is_set():
                    return
                self._handle(event)
        finally:
            self._stream = None

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code") if isinstance(obj, dict) else None
            message = str(obj.get("message") if isinstance(obj, dict) else obj)
            reason = str(obj.get("reason") or "") if isinstance(obj, dict) else ""
            raise error_from_status(code if isinstance(code, int) else None, message, reason=reason)
        metadata = obj.get("metadata") or {} if isinstance(obj, dict) else {}
        resource_version = metadata.get("resourceVersion")
        if resource_version:
            self.resource_version = resource_version
        if kind in ("ADDED", "MODIFIED"):
            self._observed(obj, kind)
        elif kind == "DELETED":
            self.send(
                MirrorDeleted(
                    name=metadata.get("name") or "", resource_version=resource_version or ""
                )
            )
        # BOOKMARK: only the resourceVersion matters.

    def _observed(self, obj: dict[str, Any], kind: str) -> None:
        metadata = obj.get("metadata") or {}
        name = metadata.get("name")
        if not isinstance(name, str) or not name:
            return
        self.send(
            MirrorObserved(
                name=name,
                resource_version=metadata.get("resourceVersion") or "",
                event_type=kind,
                obj=obj,
            )
        )

    def interrupt(self) -> None:
        stream = self._stream
        if stream is not None:
            close = getattr(stream, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # a generator mid-read refuses close from another thread
                    pass
