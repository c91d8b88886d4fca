"""The journal: an append-only JSON-lines trace of every message and effect.

Why one lock-protected writer instead of a journal actor: an entry must be on disk
before the effect it describes can be followed by the next one (a crash right after a
Docker call must still leave the ``effect`` line), and a tell to a journal actor would
reorder or lose lines on a crash. Appending one short line under a lock costs a few
microseconds, far below any Docker or Kubernetes call.

Any thread may call :meth:`Journal.record`. Lines are flushed to the OS on every write
(no fsync: the journal is a trace, not the source of truth; the restart ledger in
:mod:`actors.ledger` is fsync'd). Rotation is size-based: ``trace.jsonl`` becomes
``trace.jsonl.1`` and older backups shift up to ``backups``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from messages.journal import Entry, encode_entry

log = logging.getLogger("dockmirror.journal")


class Journal:
    """Thread-safe JSON-lines writer with size-based rotation.

    ``path=None`` disables writing (entries are still numbered, so tests can count).
    A failing disk never takes an actor down: the error is logged once and writing
    resumes when the disk recovers.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        backups: int = 3,
        run_id: str = "",
    ) -> None:
        self.path = path
        self.max_bytes = max(4096, max_bytes)
        self.backups = max(0, backups)
        self.run_id = run_id or f"{os.getpid():x}-{time.time_ns() // 1_000_000:x}"
        self._lock = threading.Lock()
        self._seq = 0
        self._file = None
        self._size = 0
        self._failed = False
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._open()

    def _open(self) -> None:
        assert self.path is not None
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open on purpose
        self._size = self._file.tell()

    def record(self, entry: Entry) -> int:
        """Stamp ``entry`` with seq, time and run id, append it; return its seq."""
        with self._lock:
            self._seq += 1
            entry.seq = self._seq
            entry.ts_ns = time.time_ns()
            entry.run = self.run_id
            if self._file is None:
                return entry.seq
            line = encode_entry(entry) + b"\n"
            try:
                if self._size + len(line) > self.max_bytes:
                    self._rotate()
                self._file.write(line)
                self._size += len(line)
                self._failed = False
            except OSError as exc:
                if not self._failed:
                    log.error("journal write to %s failed: %s", self.path, exc)
                self._failed = True
            return entry.seq

    def _rotate(self) -> None:
        assert self.path is not None and self._file is not None
        self._file.close()
        if self.backups:
            for index in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._open()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
