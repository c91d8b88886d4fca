"""Start-up checks of the state directory (actors/infra/state_dir.py, actors/infra/durable.py)."""

from __future__ import annotations

import errno
import functools
import logging
import os
import socket
import stat
from pathlib import Path
from typing import BinaryIO

import pytest

import supervisor
from actors.infra import state_dir
from actors.infra.durable import StateFileError, check_private, fsync_dir, make_private_dir
from actors.infra.journal import Journal
from actors.infra.state_dir import (
    State,
    StateError,
    instance_identity,
    lock_state_dir,
    open_state,
    secure_state_dir,
)
from messages.journal import Note

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def open_it(state: Path, trace: Path | None = None) -> State:
    return open_state(
        state,
        trace_file=trace if trace is not None else state / "trace.jsonl",
        trace_max_bytes=1 << 20,
        trace_backups=2,
    )


def test_fresh_state_dir_is_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        opened = open_it(tmp_path / "a" / "b" / "state")
        opened.journal.record(Note(text="x"))
        opened.close()
    finally:
        os.umask(old)
    state = tmp_path / "a" / "b" / "state"
    assert mode(state) == 0o700
    assert mode(state / "trace.jsonl") == 0o600


def test_existing_loose_modes_of_ours_are_tightened_and_logged(tmp_path, caplog):
    state = tmp_path / "state"
    tls = state / "webhook-tls"
    tls.mkdir(parents=True)
    files = {
        state / "actions-ns.jsonl": 0o644,
        state / "actions-other.jsonl": 0o666,
        state / "trace.jsonl": 0o644,
        state / "trace.jsonl.1": 0o640,
        tls / "tls.key": 0o644,
        tls / "ca.key": 0o604,
        tls / "tls.crt": 0o666,
        tls / "ca.crt": 0o644,  # fine as it is
        state / "notes.txt": 0o666,  # not ours: left alone
    }
    for path, wanted in files.items():
        path.write_bytes(b"")
        path.chmod(wanted)
    state.chmod(0o755)
    tls.chmod(0o775)
    with caplog.at_level(logging.WARNING, logger="dockmirror.files"):
        opened = open_it(state)
    opened.close()
    assert mode(state) == 0o700 and mode(tls) == 0o700
    for name in ("actions-ns.jsonl", "actions-other.jsonl", "trace.jsonl", "trace.jsonl.1"):
        assert mode(state / name) == 0o600, name
    assert mode(tls / "tls.key") == 0o600 and mode(tls / "ca.key") == 0o600
    assert mode(tls / "tls.crt") == 0o644 and mode(tls / "ca.crt") == 0o644
    assert mode(state / "notes.txt") == 0o666
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 9  # 2 directories + 7 files, one line each
    assert f"state files: directory {state} had mode 0755; changed to 0700" in messages
    assert f"state files: file {tls / 'tls.key'} had mode 0644; changed to 0600" in messages


def test_a_second_start_changes_and_logs_nothing(tmp_path, caplog):
    open_it(tmp_path / "s").close()
    with caplog.at_level(logging.WARNING, logger="dockmirror.files"):
        open_it(tmp_path / "s").close()
    assert caplog.records == []


@root_only
def test_files_of_another_owner_are_refused_in_one_line(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    ledger = state / "actions-ns.jsonl"
    ledger.write_bytes(b"")
    os.chown(ledger, 65534, 65534)
    with pytest.raises(StateError) as caught:
        open_it(state)
    text = str(caught.value)
    assert "\n" not in text and "owned by uid 65534" in text and "chown" in text
    assert ledger.stat().st_uid == 65534  # not adopted


@root_only
def test_state_dir_of_another_owner_is_refused(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    with pytest.raises(StateError, match="owned by uid 65534"):
        open_it(state)


def test_symlinked_state_file_is_refused(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (tmp_path / "elsewhere").write_bytes(b"")
    (state / "actions-ns.jsonl").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StateError, match="must be a regular file"):
        open_it(state)


def test_state_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "state").write_bytes(b"")
    with pytest.raises(StateError, match="must be a directory"):
        open_it(tmp_path / "state")


def test_journal_elsewhere_gets_a_private_new_directory(tmp_path):
    trace = tmp_path / "logs" / "deep" / "trace.jsonl"
    open_it(tmp_path / "state", trace).close()
    assert mode(trace.parent) == 0o700 and mode(trace) == 0o600


def test_journal_in_an_impossible_place_is_refused(tmp_path):
    (tmp_path / "blocker").write_bytes(b"")
    with pytest.raises(StateError, match="blocker: Not a directory") as caught:
        open_it(tmp_path / "state", tmp_path / "blocker" / "trace.jsonl")
    assert "\n" not in str(caught.value)


def test_journal_that_cannot_be_opened_is_refused(tmp_path, monkeypatch):
    def opener(path: Path) -> BinaryIO:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(state_dir, "Journal", functools.partial(Journal, opener=opener))
    with pytest.raises(StateError) as caught:
        open_it(tmp_path / "state")
    trace = tmp_path / "state" / "trace.jsonl"
    assert str(caught.value) == (f"cannot open the journal {trace}: Permission denied: {trace}")


def test_old_ledger_that_is_not_a_file_is_refused(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "actions-ns.jsonl").mkdir()  # not a file: refused by the checks already
    with pytest.raises(StateError, match="must be a regular file"):
        open_it(state)


def test_supervisor_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(supervisor.signal, "signal", lambda *args: None)
    (tmp_path / "state").write_bytes(b"")
    code = supervisor.main(["--state-dir", str(tmp_path / "state"), "--namespace", "ns"])
    assert code == supervisor.EXIT_STARTUP
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dockmirror: {tmp_path / 'state'} must be a directory, but it is not"]


def test_check_private_on_a_missing_path_is_none(tmp_path):
    assert check_private(tmp_path / "nope", is_dir=False) is None
    assert secure_state_dir(tmp_path / "new") == []


def test_make_private_dir_and_fsync_dir(tmp_path):
    make_private_dir(tmp_path / "x" / "y")
    assert mode(tmp_path / "x") == 0o700 and mode(tmp_path / "x" / "y") == 0o700
    fsync_dir(tmp_path / "x")
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "missing")


def test_state_file_error_is_the_durable_family(tmp_path):
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(StateFileError):
        check_private(tmp_path / "f", is_dir=True)


def test_one_process_per_state_dir(tmp_path):
    first = lock_state_dir(tmp_path)
    try:
        with pytest.raises(StateError) as refused:
            lock_state_dir(tmp_path)  # another open file description: refused like a process
        assert f"(pid {os.getpid()}) uses the state directory {tmp_path}" in str(refused.value)
        assert "--state-dir" in str(refused.value)
    finally:
        os.close(first)
    os.close(lock_state_dir(tmp_path))  # released with its fd (the kernel does it at exit)


def test_instance_identity_is_kept_across_restarts(tmp_path):
    identity = instance_identity(tmp_path)
    assert identity.startswith(socket.gethostname() + "_")
    assert instance_identity(tmp_path) == identity
    assert stat.S_IMODE((tmp_path / "identity").stat().st_mode) == 0o600
    (tmp_path / "other").mkdir()
    assert instance_identity(tmp_path / "other") != identity  # another instance
