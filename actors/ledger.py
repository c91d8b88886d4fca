"""The restart ledger: fsync'd records that make ``restart`` exactly-once.

Docker's restart is not idempotent, and the annotation protocol alone cannot tell a
replay (the process died after the Docker call, before the annotation was removed)
from a new request. Before calling Docker, the container actor writes a *dispatch*
record (container ID, the container's ``State.StartedAt`` before the call, the
dispatch time, and the time the client wrote the annotation) and fsyncs it. When the
request ends (annotation removed, or seen absent) a *closed* record follows. On a
later pass, an open record plus a pending ``restart`` annotation is judged by
:func:`actors.actions.judge_restart_replay` (rule in docs/actions.md).

The file is ``<state dir>/actions-<namespace>.jsonl``; it is compacted at start.
Calls come from container actor threads, so a lock protects the file.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import msgspec

log = logging.getLogger("dockmirror.ledger")


class RestartRecord(msgspec.Struct, kw_only=True):
    container_id: str
    started_at_before: str = ""
    dispatch_ns: int = 0
    annotation_time: str = ""
    op: str = "dispatch"  # "dispatch" or "closed"
    boot_id: str = ""
    dispatch_mono_ns: int = 0


class LedgerWriteError(Exception):
    """The dispatch record could not be persisted; the restart must not be run."""


def current_boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()
    except OSError:
        return ""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(RestartRecord)


class RestartLedger:
    """Open restart dispatches by container ID, persisted with fsync."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._open: dict[str, RestartRecord] = {}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._load_and_compact()

    def _load_and_compact(self) -> None:
        assert self.path is not None
        if self.path.exists():
            for line in self.path.read_bytes().splitlines():
                try:
                    record = _decoder.decode(line)
                except msgspec.DecodeError:
                    continue  # a torn last line after a crash
                if record.op == "dispatch":
                    self._open[record.container_id] = record
                else:
                    self._open.pop(record.container_id, None)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as handle:
            for record in self._open.values():
                handle.write(_encoder.encode(record) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)

    def _append(self, record: RestartRecord) -> None:
        if self.path is None:
            return
        with open(self.path, "ab") as handle:
            handle.write(_encoder.encode(record) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def open_record(self, container_id: str) -> RestartRecord | None:
        with self._lock:
            return self._open.get(container_id)

    def open_ids(self) -> list[str]:
        with self._lock:
            return list(self._open)

    def dispatch(self, record: RestartRecord) -> None:
        """Persist the intent before the Docker call (fsync'd)."""
        with self._lock:
            self._append(record)
            self._open[record.container_id] = record

    def close(self, container_id: str) -> None:
        """The request ended; a no-op when nothing is open."""
        with self._lock:
            if container_id not in self._open:
                return
            self._append(RestartRecord(container_id=container_id, op="closed"))
            del self._open[container_id]
