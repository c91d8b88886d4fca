"""The journal under failing disks: outages are survived, counted, reported once.

No threads and no sleeps: the opener, the file and the clock are injected, and the
real-filesystem cases use a directory made unwritable or removed.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from actors.infra.journal import LOST_NOTE, Journal, open_journal_file
from messages.journal import Note, decode_entry


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FlakyFile:
    """A raw binary file that can refuse writes (ENOSPC) or write only part of a line,
    like ``FileIO.write`` on a filling disk: a short count first, then an error."""

    def __init__(self, path: Path) -> None:
        self.handle = open(path, "ab", buffering=0)  # noqa: SIM115 - closed by close()
        self.full = False
        self.partial: int | None = None  # write only this many bytes once, then be full
        self.writes = 0

    def write(self, data: bytes) -> int:
        self.writes += 1
        if self.partial is not None:
            count, self.partial, self.full = self.partial, None, True
            return self.handle.write(data[:count])
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.handle.write(data)

    def fileno(self) -> int:
        return self.handle.fileno()

    def close(self) -> None:
        self.handle.close()


class Opener:
    """Opens FlakyFiles; can be told to fail; counts calls."""

    def __init__(self) -> None:
        self.fail: OSError | None = None
        self.calls = 0
        self.files: list[FlakyFile] = []
        self.disk_full = False  # new files start full

    def __call__(self, path: Path) -> Any:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        handle = FlakyFile(path)
        handle.full = self.disk_full
        self.files.append(handle)
        return handle


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_flaky_file_fails_like_a_full_disk(tmp_path):
    """The fake's ENOSPC is what the kernel gives for a full device (/dev/full)."""
    with open("/dev/full", "ab", buffering=0) as real, pytest.raises(OSError) as real_error:
        real.write(b"x\n")
    fake = FlakyFile(tmp_path / "f")
    assert fake.write(b"ok\n") == 3
    fake.partial = 1
    assert fake.write(b"ab\n") == 1  # a short count first, as FileIO.write reports it
    with pytest.raises(OSError) as fake_error:
        fake.write(b"b\n")
    fake.close()
    assert fake_error.value.errno == real_error.value.errno == errno.ENOSPC
    assert (tmp_path / "f").read_bytes() == b"ok\na"


def entries(path: Path) -> list[Any]:
    out = []
    for line in path.read_bytes().splitlines():
        if line.strip():
            out.append(decode_entry(line))
    return out


def note(i: int) -> Note:
    return Note(actor="t", text=f"line {i}", detail={"i": i})


def make(tmp_path: Path, **kw: Any) -> tuple[Journal, Opener, Clock, Path]:
    opener, clock = Opener(), Clock()
    path = tmp_path / "trace.jsonl"
    journal = Journal(path, opener=opener, clock=clock, run_id="r", **kw)
    return journal, opener, clock, path


def test_full_disk_is_one_outage_with_a_counted_gap(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="dockmirror.journal")
    journal, opener, clock, path = make(tmp_path)
    journal.record(note(1))
    opener.files[-1].full = True
    for i in range(2, 12):  # ten records during the outage, clock standing still
        journal.record(note(i))
    assert journal.outage_error == "No space left on device"
    # Rate-limited: one failed write, then nine records dropped without a syscall.
    assert opener.files[-1].writes == 2
    opener.files[-1].full = False
    clock.now += 100
    seq = journal.record(note(12))
    journal.close()
    got = entries(path)
    assert [e.text for e in got] == ["line 1", LOST_NOTE, "line 12"]
    gap = got[1]
    assert gap.actor == "journal" and gap.detail["lost"] == 10
    assert gap.detail["error"] == "No space left on device"
    assert gap.detail["outage_s"] == 100.0
    # Seqs stay increasing in file order; the gap's seqs are the lost entries'.
    assert [e.seq for e in got] == [1, seq - 1, seq] and seq == 13
    assert journal.outage_error is None and journal.lost_total == 10
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(errors) == 1 and "cannot write" in errors[0].getMessage()
    assert len(warnings) == 1 and "10 entries lost" in warnings[0].getMessage()


def test_retries_back_off_and_cap(tmp_path):
    journal, opener, clock, _ = make(tmp_path, retry_first_s=0.5, retry_max_s=4.0)
    journal.record(note(0))
    opener.files[-1].full = True
    opener.disk_full = True  # reopened files are on the same full disk

    def syscalls() -> int:
        return opener.calls + sum(f.writes for f in opener.files)

    journal.record(note(1))  # fails: retry in 0.5 s
    attempts = []
    for _ in range(200):  # 20 s of records every 0.1 s
        clock.now += 0.1
        before = syscalls()
        journal.record(note(2))
        if syscalls() > before:
            attempts.append(round(clock.now - 1000.0, 1))
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(attempts)]
    assert attempts[0] == 0.5
    assert gaps[:3] == [1.0, 2.0, 4.0] and set(gaps[3:]) == {4.0}
    assert len(attempts) < 10  # not 200 syscalls
    assert journal.outage_error == "No space left on device"
    assert journal.lost_total == 201


def test_torn_line_is_ended_before_the_next_entry(tmp_path):
    journal, opener, clock, path = make(tmp_path)
    journal.record(note(1))
    opener.files[-1].partial = 7  # the disk fills mid-line
    journal.record(note(2))
    opener.files[-1].full = False
    clock.now += 60
    journal.record(note(3))
    journal.close()
    lines = path.read_bytes().split(b"\n")
    assert lines[1] == b'{"kind"'  # the torn fragment stays on its own line
    got = []
    for line in lines:
        try:
            got.append(decode_entry(line).text)
        except Exception:
            continue
    assert got == ["line 1", LOST_NOTE, "line 3"]


def test_failed_open_of_the_rotated_file_resumes_later(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="dockmirror.journal")
    journal, opener, clock, path = make(tmp_path, max_bytes=4096, backups=2)
    i = 0
    while opener.calls == 1:  # until the first rotation opened a new file
        i += 1
        journal.record(Note(text=f"{i}", detail={"pad": "x" * 100}))
    opener.fail = OSError(errno.ENOSPC, "No space left on device")
    while (tmp_path / "trace.jsonl.2").exists() is False:
        i += 1
        journal.record(Note(text=f"{i}", detail={"pad": "x" * 100}))
        if journal.outage_error:
            break
    assert journal.outage_error is not None
    failed_at = i
    for _ in range(5):
        i += 1
        journal.record(Note(text=f"{i}", detail={"pad": "x" * 100}))
    opener.fail = None
    clock.now += 30
    i += 1
    journal.record(Note(text=f"{i}", detail={"pad": "x" * 100}))
    journal.close()
    got = entries(path)
    assert got[0].text == LOST_NOTE and got[0].detail["lost"] == 6
    assert got[1].text == str(i)
    backup = entries(tmp_path / "trace.jsonl.1")
    assert backup[-1].text == str(failed_at - 1)  # nothing before the failure was lost
    assert sum(r.levelno == logging.ERROR for r in caplog.records) == 1


def test_directory_removed_is_recreated_private(tmp_path):
    state = tmp_path / "state"
    path = state / "trace.jsonl"
    journal = Journal(path, max_bytes=4096, backups=1)
    journal.record(note(1))
    for child in state.iterdir():
        child.unlink()
    state.rmdir()
    # Writes to the unlinked file still succeed; the next rotation recreates the directory.
    for i in range(100):
        journal.record(Note(text=f"{i}", detail={"pad": "y" * 100}))
    journal.close()
    assert journal.outage_error is None and journal.lost_total == 0
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert entries(path)[-1].text == "99"


def test_directory_replaced_by_a_file_is_an_outage_until_fixed(tmp_path, caplog):
    # Works as root too (unlike a read-only directory): nothing can be created below a file.
    caplog.set_level(logging.WARNING, logger="dockmirror.journal")
    state = tmp_path / "state"
    path = state / "trace.jsonl"
    clock = Clock()
    journal = Journal(path, max_bytes=4096, backups=1, clock=clock)
    journal.record(note(0))
    (state / "trace.jsonl").unlink()
    state.rmdir()
    state.write_bytes(b"not a directory")
    for i in range(100):  # forces a rotation, whose open fails
        journal.record(Note(text=f"{i}", detail={"pad": "z" * 100}))
    assert "Not a directory" in (journal.outage_error or "")
    lost = journal.lost_total
    assert lost > 0
    state.unlink()
    clock.now += 60
    journal.record(note(999))
    journal.close()
    assert journal.outage_error is None
    got = entries(path)
    assert [e.text for e in got] == [LOST_NOTE, "line 999"]
    assert got[0].detail["lost"] == lost
    assert [r.levelname for r in caplog.records] == ["ERROR", "WARNING"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_unwritable_directory_is_an_outage_until_fixed(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    path = state / "trace.jsonl"
    clock = Clock()
    journal = Journal(path, max_bytes=4096, backups=1, clock=clock)
    journal.record(note(0))
    state.chmod(0o500)
    try:
        for i in range(100):  # forces a rotation, whose rename fails
            journal.record(Note(text=f"{i}", detail={"pad": "z" * 100}))
        assert journal.outage_error is not None
    finally:
        state.chmod(0o700)
    clock.now += 60
    journal.record(note(999))
    journal.close()
    assert journal.outage_error is None
    texts = [e.text for e in entries(path)]
    assert texts[-1] == "line 999" and LOST_NOTE in texts


def test_unwritable_directory_via_injected_opener_at_start(tmp_path):
    opener, clock = Opener(), Clock()
    opener.fail = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x"))
    journal = Journal(tmp_path / "x", opener=opener, clock=clock)
    assert journal.outage_error == f"Permission denied: {tmp_path / 'x'}"
    assert journal.record(note(1)) == 1  # never raises
    opener.fail = None
    clock.now += 1
    assert journal.record(note(2)) == 3  # the gap Note took seq 2
    journal.close()
    got = entries(tmp_path / "x")
    assert [e.seq for e in got] == [2, 3] and got[0].detail["lost"] == 1


def test_record_never_raises_on_unencodable_or_after_close(tmp_path, caplog):
    journal, _, _, path = make(tmp_path)
    journal.record(Note(text="bad", detail={"x": object()}))
    journal.record(Note(text="bad", detail={"x": object()}))
    journal.record(note(1))
    journal.close()
    journal.record(note(2))
    assert [e.text for e in entries(path)] == ["line 1"]
    assert journal.unencodable == 2
    assert sum("not encodable" in r.getMessage() for r in caplog.records) == 1


def test_default_opener_creates_0600_despite_umask(tmp_path):
    old = os.umask(0o022)
    try:
        handle = open_journal_file(tmp_path / "new" / "trace.jsonl")
        handle.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "new" / "trace.jsonl").st_mode) == 0o600


def test_rotated_files_stay_0600(tmp_path):
    journal = Journal(tmp_path / "trace.jsonl", max_bytes=4096, backups=2)
    for i in range(200):
        journal.record(Note(text=f"{i}", detail={"pad": "q" * 60}))
    journal.close()
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"trace.jsonl": 0o600, "trace.jsonl.1": 0o600, "trace.jsonl.2": 0o600}
