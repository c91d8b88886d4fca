"""The state directory's layout, checked and opened at start.

``<state dir>`` (``--state-dir``) holds, all ours:

* ``actions-<namespace>.jsonl`` -- the restart ledger of versions before the dispatch
  record moved into the cluster (docs/actions.md); no longer read, only checked;
* ``trace.jsonl`` and ``trace.jsonl.N`` -- the journal, unless ``--trace-file`` puts it
  elsewhere;
* ``webhook-tls/`` -- the webhook's CA and serving certificate with their keys;
* ``lock`` -- held (``flock``) by the one process using this directory, with its pid;
* ``identity`` -- this instance's Lease ``holderIdentity`` (hostname and a random
  suffix), kept across restarts.

Why one process per state directory, and a kept identity: a restarted instance (same
state directory) then recognises the Lease it held before a crash as its own and leads
again at once, instead of waiting out the lease duration as a stranger would. That is
safe only because the lock proves the earlier holder is dead (the kernel releases a
``flock`` when its process ends); two live instances always have two state directories,
hence two identities.

:func:`open_state` runs once in the supervisor's main thread, before anything talks
to Kubernetes or Docker: it creates the directory (0700), checks what already exists
(:func:`secure_state_dir`: too-open modes of ours are tightened with a log line, a
foreign owner or a wrong file type is refused), then opens the journal. Every failure
is a :class:`StateError` whose text is one line, which the supervisor prints before
exiting with code 2: nothing here may end in a traceback.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from actors.infra.certs import TLS_DIR_NAME
from actors.infra.durable import (
    CERT_MODE,
    FILE_MODE,
    StateFileError,
    check_private,
    make_private_dir,
    open_private,
    replace_durably,
)
from actors.infra.journal import Journal

log = logging.getLogger("dockmirror.files")


class StateError(Exception):
    """The state directory cannot be used; ``str()`` is one line for the user."""


def _is_journal_file(candidate: Path, journal: Path) -> bool:
    if candidate.name == journal.name:
        return True
    prefix = journal.name + "."
    return candidate.name.startswith(prefix) and candidate.name[len(prefix) :].isdigit()


def secure_state_dir(state_dir: Path, *, journal: Path | None = None) -> list[str]:
    """Create the state dir (0700) and check everything of ours that already exists.

    Ours: old restart ledgers ``actions-*.jsonl`` (and a compaction's ``.tmp``), the
    journal and its rotated files (also when ``--trace-file`` puts them elsewhere; a
    missing directory for them is created 0700, an existing one is the user's and is
    left alone), the ``webhook-tls`` directory (0700) with its keys (0600) and
    certificates (at most 0644). Other files in the state dir are not ours and are left
    alone. Returns the fix-up sentences for the caller to log; raises
    :class:`StateFileError` (one line) when something cannot be used.
    """
    fixes: list[str] = []

    def check(path: Path, *, is_dir: bool = False, max_mode: int | None = None) -> None:
        fix = check_private(path, is_dir=is_dir, max_mode=max_mode)
        if fix:
            fixes.append(fix)

    try:
        make_private_dir(state_dir)
        check(state_dir, is_dir=True)
        for path in sorted(state_dir.iterdir()):
            old_ledger = path.name.startswith("actions-") and path.name.endswith((".jsonl", ".tmp"))
            if old_ledger or path.name in (LOCK_FILE, IDENTITY_FILE):
                check(path)
        tls = state_dir / TLS_DIR_NAME
        if tls.exists() or tls.is_symlink():
            check(tls, is_dir=True)
            for path in sorted(tls.iterdir()):
                check(path, max_mode=CERT_MODE if path.suffix == ".crt" else FILE_MODE)
        if journal is not None:
            make_private_dir(journal.parent)
            for path in sorted(journal.parent.iterdir()):
                if _is_journal_file(path, journal):
                    check(path)
    except OSError as exc:
        where = exc.filename or state_dir
        raise StateFileError(f"cannot prepare {where}: {exc.strerror or exc}") from exc
    return fixes


LOCK_FILE = "lock"
IDENTITY_FILE = "identity"


@dataclass
class State:
    journal: Journal
    identity: str  # the Lease holderIdentity of this instance (kept across restarts)
    lock_fd: int  # held until the process ends

    def close(self) -> None:
        """Close the journal and release the lock (tests; the service keeps both)."""
        self.journal.close()
        os.close(self.lock_fd)


def lock_state_dir(state_dir: Path) -> int:
    """Take the state directory's lock (``flock``, non-blocking); returns its fd.

    Raises :class:`StateError` naming the other process when it is held. The fd stays
    open for the life of the process; the kernel releases the lock when it ends, even by
    SIGKILL.
    """
    path = state_dir / LOCK_FILE
    try:
        fd = open_private(path, os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        raise StateError(f"cannot open the lock {path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise StateError(
            f"another dockmirror process (pid {holder}) uses the state directory "
            f"{state_dir}; give each instance its own --state-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def instance_identity(state_dir: Path) -> str:
    """This instance's Lease identity: read from the state directory, made once.

    Main thread, under the state directory's lock. A file that cannot be written leaves
    a fresh identity for this run only (election then works as for a stranger).
    """
    path = state_dir / IDENTITY_FILE
    try:
        text = path.read_text("ascii").strip()
        if text:
            return text
    except (OSError, UnicodeDecodeError):
        pass
    identity = f"{socket.gethostname()}_{secrets.token_hex(6)}"
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            os.write(fd, (identity + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        replace_durably(tmp, path)
    except OSError as exc:
        log.warning("cannot keep the instance identity in %s: %s", path, exc)
    return identity


def open_state(
    state_dir: Path,
    *,
    trace_file: Path | None,
    trace_max_bytes: int,
    trace_backups: int,
) -> State:
    """Check the state directory, then open the journal.

    Main thread, at start. Raises :class:`StateError` with one line; a journal that
    cannot be opened at start is refused too (a typo in ``--trace-file`` should be an
    error, not a silent outage), whereas a journal that fails later only has outages.
    """
    try:
        for fix in secure_state_dir(state_dir, journal=trace_file):
            log.warning("state files: %s", fix)
    except StateFileError as exc:
        raise StateError(str(exc)) from exc
    lock_fd = lock_state_dir(state_dir)
    identity = instance_identity(state_dir)
    journal = Journal(trace_file, max_bytes=trace_max_bytes, backups=trace_backups)
    error = journal.outage_error
    if error is not None:
        journal.close()
        os.close(lock_fd)
        raise StateError(f"cannot open the journal {trace_file}: {error}")
    return State(journal=journal, identity=identity, lock_fd=lock_fd)
