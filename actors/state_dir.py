"""The state directory's layout, checked and opened at start.

``<state dir>`` (``--state-dir``) holds, all ours:

* ``actions-<namespace>.jsonl`` -- the restart ledger of versions before the dispatch
  record moved into the cluster (docs/actions.md); no longer read, only checked;
* ``trace.jsonl`` and ``trace.jsonl.N`` -- the journal, unless ``--trace-file`` puts it
  elsewhere;
* ``webhook-tls/`` -- the webhook's CA and serving certificate with their keys.

:func:`open_state` runs once in the supervisor's main thread, before anything talks
to Kubernetes or Docker: it creates the directory (0700), checks what already exists
(:func:`secure_state_dir`: too-open modes of ours are tightened with a log line, a
foreign owner or a wrong file type is refused), then opens the journal. Every failure
is a :class:`StateError` whose text is one line, which the supervisor prints before
exiting with code 2: nothing here may end in a traceback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from actors.certs import TLS_DIR_NAME
from actors.durable import (
    CERT_MODE,
    FILE_MODE,
    StateFileError,
    check_private,
    make_private_dir,
)
from actors.journal import Journal

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
            if path.name.startswith("actions-") and path.name.endswith((".jsonl", ".tmp")):
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


@dataclass
class State:
    journal: Journal


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
    journal = Journal(trace_file, max_bytes=trace_max_bytes, backups=trace_backups)
    error = journal.outage_error
    if error is not None:
        journal.close()
        raise StateError(f"cannot open the journal {trace_file}: {error}")
    return State(journal=journal)
