"""The journal: an append-only JSON-lines trace of every message and effect.

Why one lock-protected writer instead of a journal actor: an entry must be on disk
before the effect it describes can be followed by the next one (a crash right after a
Docker call must still leave the ``effect`` line), and a tell to a journal actor would
reorder or lose lines on a crash. Appending one short line under a lock costs a few
microseconds, far below any Docker or Kubernetes call.

Any thread may call :meth:`Journal.record`. Lines are flushed to the OS on every write
(no fsync: the journal is a trace, not the source of truth; the restart dispatch
record lives in the cluster, docs/actions.md). Rotation is size-based: ``trace.jsonl`` becomes
``trace.jsonl.1`` and older backups shift up to ``backups``; the directory is fsync'd
after the renames. Files are created 0600 (:mod:`actors.infra.durable`).

Failures (docs/architecture.md, "Files"): the journal must never take the service
down, so :meth:`Journal.record` never raises. When a write, a rotation or an open
fails (full disk, directory removed, permissions), the journal enters an *outage*:
one ERROR log line, then entries are counted and dropped; the open/write is retried on
later records, at most once per back-off interval (0.5 s doubling to 10 s), so a dead
disk costs a few syscalls, not one per record. On the first successful write a WARNING
log line and a ``journal entries lost`` Note (with the count, the first error and the
outage's length) are written before the entry, so a trace reader sees the gap.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from actors.infra.durable import fsync_dir, make_private_dir, open_private_append
from messages.journal import Entry, Note, encode_entry

log = logging.getLogger("dockmirror.journal")

#: Opens the journal file for appending (unbuffered); raises OSError.
Opener = Callable[[Path], BinaryIO]

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
LOST_NOTE = "journal entries lost"


def open_journal_file(path: Path) -> BinaryIO:
    """The default opener: recreates a vanished directory (0700), creates the file 0600."""
    make_private_dir(path.parent)
    return open_private_append(path)


@dataclass
class _Outage:
    """An ongoing failure to write: when it began, why, and what it cost so far."""

    started: float
    error: str
    retry_at: float
    delay: float
    lost: int = 0


class Journal:
    """Thread-safe JSON-lines writer with size-based rotation that survives bad disks.

    ``path=None`` disables writing (entries are still numbered, so tests can count).
    ``opener`` and ``clock`` (monotonic seconds) are injectable for tests.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        backups: int = 3,
        run_id: str = "",
        opener: Opener = open_journal_file,
        clock: Callable[[], float] = time.monotonic,
        retry_first_s: float = RETRY_FIRST_S,
        retry_max_s: float = RETRY_MAX_S,
    ) -> None:
        self.path = path
        self.max_bytes = max(4096, max_bytes)
        self.backups = max(0, backups)
        self.run_id = run_id or f"{os.getpid():x}-{time.time_ns() // 1_000_000:x}"
        self._opener = opener
        self._clock = clock
        self._retry_first = retry_first_s
        self._retry_max = max(retry_first_s, retry_max_s)
        self._lock = threading.Lock()
        self._seq = 0
        self._file: BinaryIO | None = None
        self._size = 0
        #: The last write stopped inside a line: the next one starts on a fresh line.
        self._torn = False
        self._outage: _Outage | None = None
        self._closed = False
        self.lost_total = 0
        self.unencodable = 0
        #: Called with every recorded entry, outside the lock, by the recording thread
        #: (the metrics' ``on_entry``); must be quick and never raise.
        self.listener: Callable[[Entry], None] | None = None
        if path is not None:
            with self._lock:
                self._open_or_fail()

    # --- state for callers ---------------------------------------------------------------
    @property
    def outage_error(self) -> str | None:
        """The error that started the ongoing outage, or None while writing works."""
        with self._lock:
            return self._outage.error if self._outage else None

    # --- writing (all under self._lock) ---------------------------------------------------
    def record(self, entry: Entry) -> int:
        """Stamp ``entry`` with seq, time and run id, append it; return its seq.

        Called from any thread; never raises (a failure is an outage, see module doc).
        """
        with self._lock:
            try:
                seq = self._record(entry)
            except Exception:  # a bug here must not kill the calling actor
                log.exception("journal: unexpected failure; entry dropped")
                seq = entry.seq
        if self.listener is not None:
            self.listener(entry)
        return seq

    def _stamp(self, entry: Entry) -> int:
        self._seq += 1
        entry.seq = self._seq
        entry.ts_ns = time.time_ns()
        entry.run = self.run_id
        return entry.seq

    def _record(self, entry: Entry) -> int:
        if self.path is None or self._closed:
            return self._stamp(entry)
        outage = self._outage
        due = outage is not None and self._clock() >= outage.retry_at
        if outage is not None and not (due and self._resume(outage)):
            outage.lost += 1
            self.lost_total += 1
            return self._stamp(entry)
        seq = self._stamp(entry)
        if not self._write(entry):
            assert self._outage is not None
            self._outage.lost += 1
            self.lost_total += 1
        return seq

    def _resume(self, outage: _Outage) -> bool:
        """Retry after an outage: reopen if needed, then write the gap Note first."""
        if self._file is None and not self._open_or_fail():
            return False
        took = self._clock() - outage.started
        note = Note(
            actor="journal",
            text=LOST_NOTE,
            detail={"lost": outage.lost, "error": outage.error, "outage_s": round(took, 3)},
        )
        self._stamp(note)
        self._outage = None  # _write starts a new one (with the old count) if it fails
        if not self._write(note, carry=outage):
            return False
        log.warning(
            "journal %s: writing again after %.1f s; %d entries lost (%s)",
            self.path,
            took,
            outage.lost,
            outage.error,
        )
        return True

    def _open_or_fail(self) -> bool:
        assert self.path is not None
        try:
            self._file = self._opener(self.path)
            self._size = os.fstat(self._file.fileno()).st_size
        except OSError as exc:
            self._close_file()
            self._fail(exc)
            return False
        if self._size == 0:
            self._torn = False
        return True

    def _write(self, entry: Entry, carry: _Outage | None = None) -> bool:
        """Append one entry (rotating first when due). False (outage) on OSError."""
        try:
            line = encode_entry(entry) + b"\n"
        except Exception as exc:  # e.g. an unencodable detail value: a caller's bug
            self.unencodable += 1
            if self.unencodable == 1:
                log.error(
                    "journal: %s entry not encodable (%s); dropped", type(entry).__name__, exc
                )
            return True
        try:
            if self._size + len(line) > self.max_bytes and self._size > 0:
                self._rotate()
            self._append(line)
        except OSError as exc:
            self._close_file()
            self._fail(exc, carry)
            return False
        return True

    def _append(self, line: bytes) -> None:
        assert self._file is not None
        data = b"\n" + line if self._torn else line
        written = 0
        try:
            while written < len(data):
                count = self._file.write(data[written:])
                if not count:
                    raise OSError(errno.EIO, "journal write made no progress")
                written += count
        finally:
            self._size += written
            if written:
                self._torn = written < len(data)
            # written == 0 leaves _torn as it was: nothing new reached the file.

    def _rotate(self) -> None:
        """Shift the backups, start a new file, fsync the directory. Raises OSError.

        Missing files are skipped, so a removed file or directory does not block the
        rotation: the opener recreates them.
        """
        assert self.path is not None
        self._close_file()
        if self.backups:
            for index in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
            if self.path.exists():
                self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._file = self._opener(self.path)
        self._size = os.fstat(self._file.fileno()).st_size
        self._torn = False if self._size == 0 else self._torn
        fsync_dir(self.path.parent)

    def _fail(self, exc: OSError, carry: _Outage | None = None) -> None:
        """Start an outage (log once) or push its next retry back (no log)."""
        now = self._clock()
        outage = self._outage or carry
        if outage is None:
            error = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
            outage = _Outage(started=now, error=error, retry_at=now, delay=0.0)
            log.error(
                "journal %s: cannot write (%s); dropping entries until it works again "
                "(retrying at most every %.0f s)",
                self.path,
                error,
                self._retry_max,
            )
        outage.delay = min(self._retry_max, max(self._retry_first, outage.delay * 2))
        outage.retry_at = now + outage.delay
        self._outage = outage

    def _close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        self._file = None

    def close(self) -> None:
        """Close the file (called once by the supervisor at shutdown)."""
        with self._lock:
            self._closed = True
            self._close_file()
            if self._outage is not None and self._outage.lost:
                log.warning(
                    "journal %s: closed during an outage; %d entries lost (%s)",
                    self.path,
                    self._outage.lost,
                    self._outage.error,
                )
