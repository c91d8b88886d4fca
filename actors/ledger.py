"""The restart ledger: fsync'd records that make ``restart`` exactly-once.

Docker's restart is not idempotent, and the annotation protocol alone cannot tell a
replay (the process died after the Docker call, before the annotation was removed)
from a new request. Before calling Docker, the container actor writes a *dispatch*
record (container ID, the container's ``State.StartedAt`` before the call, the
dispatch time on the wall clock and on the monotonic clock with the boot it belongs
to, and the time the client wrote the annotation) and fsyncs it. When the request ends
(annotation removed, or seen absent) a *closed* record follows. On a later pass, an
open record plus a pending ``restart`` annotation is judged by
:func:`actors.actions.judge_restart_replay` (rule in docs/actions.md).

The file is ``<state dir>/actions-<namespace>.jsonl``, mode 0600; it is compacted at
start (temporary file, fsync, rename, directory fsync). Calls come from container
actor threads, so a lock protects the file and the in-memory state.

Failures (docs/actions.md, "The ledger's files"):

* :meth:`RestartLedger.dispatch` raises :class:`LedgerWriteError` when the record
  cannot be persisted, and then does **not** mark it open: the caller must not call
  Docker (it records a Failed outcome and a Warning Event instead).
* :meth:`RestartLedger.close` never raises. The record is closed in memory at once;
  a closing that could not be written is kept pending and written before the next
  record that is (or dropped by the next compaction, which writes open records only).
* Loading/compacting at start raises :class:`LedgerLoadError` with one clear line.
* A torn last line (a crash mid-write) is skipped on load; after a failed append the
  next one starts on a fresh line so it cannot be glued to the torn one.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import msgspec

from actors.durable import fsync_dir, make_private_dir, open_private, replace_durably

log = logging.getLogger("dockmirror.ledger")

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


class LedgerWriteError(Exception):
    """A ledger record could not be persisted (the underlying OSError is the cause)."""


class LedgerLoadError(Exception):
    """The ledger could not be read or compacted at start; ``str()`` is one clear line."""


class RestartRecord(msgspec.Struct, kw_only=True):
    container_id: str
    started_at_before: str = ""
    dispatch_ns: int = 0
    annotation_time: str = ""
    op: str = "dispatch"  # "dispatch" or "closed"
    #: The kernel's boot id at dispatch ("" when unknown, and in files written before
    #: the field existed): ``dispatch_mono_ns`` is comparable only within one boot.
    boot_id: str = ""
    #: ``time.monotonic_ns()`` at dispatch; immune to wall-clock jumps.
    dispatch_mono_ns: int = 0


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(RestartRecord)


def current_boot_id(path: Path = BOOT_ID_PATH) -> str:
    """This boot's id (``/proc/sys/kernel/random/boot_id``), or "" when unreadable."""
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return ""


class RestartLedger:
    """Open restart dispatches by container ID, persisted with fsync."""

    def __init__(self, path: Path | None) -> None:
        """Load and compact ``path`` (main thread, at start); raises LedgerLoadError."""
        self.path = path
        self._lock = threading.Lock()
        self._open: dict[str, RestartRecord] = {}
        #: Closings that could not be written yet (see close()).
        self._pending_closes: list[str] = []
        #: The last append failed and may have left a partial line.
        self._maybe_torn = False
        self._failing = False
        if path is not None:
            try:
                make_private_dir(path.parent)
                self._load_and_compact()
            except OSError as exc:
                where = exc.filename or path
                raise LedgerLoadError(
                    f"cannot load the restart ledger {where}: {exc.strerror or exc}"
                ) from exc

    def _load_and_compact(self) -> None:
        assert self.path is not None
        if self.path.exists():
            for line in self.path.read_bytes().splitlines():
                try:
                    record = _decoder.decode(line)
                except msgspec.DecodeError:
                    continue  # a torn line after a crash (or the empty line ending one)
                if record.op == "dispatch":
                    self._open[record.container_id] = record
                else:
                    self._open.pop(record.container_id, None)
        self._compact()

    def _compact(self) -> None:
        """Rewrite the file with the open records only. Raises OSError."""
        assert self.path is not None
        tmp = self.path.with_suffix(".tmp")
        fd = open_private(tmp, os.O_WRONLY | os.O_TRUNC)
        with os.fdopen(fd, "wb") as handle:
            for record in self._open.values():
                handle.write(_encoder.encode(record) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        replace_durably(tmp, self.path)
        self._pending_closes.clear()
        self._maybe_torn = False

    def _append(self, records: list[RestartRecord]) -> None:
        """Append ``records`` after any pending closings, fsync'd. Raises OSError."""
        if self.path is None:
            self._pending_closes.clear()
            return
        pending = [RestartRecord(container_id=cid, op="closed") for cid in self._pending_closes]
        data = b"".join(_encoder.encode(r) + b"\n" for r in pending + records)
        if self._maybe_torn:
            data = b"\n" + data  # never glue a record to a torn line: both would be lost
        created = not self.path.exists()
        try:
            if created:  # first record, or the state dir was removed under us
                make_private_dir(self.path.parent)
            fd = open_private(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                fsync_dir(self.path.parent)
        except OSError:
            self._maybe_torn = True
            raise
        self._maybe_torn = False
        self._pending_closes.clear()
        if self._failing:
            self._failing = False
            log.warning("restart ledger %s: writing again", self.path)

    def open_record(self, container_id: str) -> RestartRecord | None:
        with self._lock:
            return self._open.get(container_id)

    def open_ids(self) -> list[str]:
        with self._lock:
            return list(self._open)

    def dispatch(self, record: RestartRecord) -> None:
        """Persist the intent before the Docker call (fsync'd); container actor thread.

        Raises :class:`LedgerWriteError` when it cannot be persisted; the record is then
        not open in memory, and the caller must not call Docker.
        """
        with self._lock:
            try:
                self._append([record])
            except OSError as exc:
                self._failing = True
                # The line may have reached the disk before the failure (e.g. fsync
                # failed): a closing written later makes sure it does not count.
                self._pending_closes.append(record.container_id)
                raise LedgerWriteError(
                    f"restart ledger {self.path} not written: {exc.strerror or exc}"
                ) from exc
            self._open[record.container_id] = record

    def close(self, container_id: str) -> None:
        """The request ended; a no-op when nothing is open. Never raises.

        Container actor thread. The in-memory record is closed at once. If the closing
        cannot be written it stays pending (one log line per outage) and is written
        before the next record that is. Consequence of a crash before that: the record
        is still open on disk after the restart, and a pending ``restart`` annotation
        for the container is then judged by the replay rule (docs/actions.md), which
        is what happens after a crash between the Docker call and the closing anyway.
        """
        with self._lock:
            if container_id not in self._open:
                return
            del self._open[container_id]
            self._pending_closes.append(container_id)
            try:
                self._append([])
            except OSError as exc:
                if not self._failing:
                    log.error(
                        "restart ledger %s: closing of %s not written (%s); kept in "
                        "memory and retried with the next write",
                        self.path,
                        container_id[:12],
                        exc.strerror or exc,
                    )
                self._failing = True
