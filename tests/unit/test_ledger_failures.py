"""The restart ledger on failing disks, its file modes, and the fields the replay rule uses.

Failures are real where the kernel can make them for root too (/dev/full gives ENOSPC
on write, a directory in the file's place fails the open); a partial write is made by
patching ``os.write`` in the ledger module only.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

import msgspec
import pytest

from actors import ledger as ledger_module
from actors.ledger import (
    LedgerLoadError,
    LedgerWriteError,
    RestartLedger,
    RestartRecord,
    current_boot_id,
)


def _record(cid: str, n: int = 1) -> RestartRecord:
    return RestartRecord(
        container_id=cid,
        started_at_before=f"2025-01-01T00:00:0{n}Z",
        dispatch_ns=n,
        boot_id="boot-a",
        dispatch_mono_ns=n * 7,
    )


def _lines(path: Path) -> list[dict]:
    out = []
    for line in path.read_bytes().splitlines():
        try:
            out.append(msgspec.json.decode(line))
        except msgspec.DecodeError:
            continue
    return out


def _swap_for_dev_full(path: Path) -> bytes:
    """Make appends to ``path`` fail with ENOSPC; returns the old content to restore."""
    content = path.read_bytes()
    path.unlink()
    path.symlink_to("/dev/full")
    return content


def _restore(path: Path, content: bytes) -> None:
    path.unlink()
    path.write_bytes(content)


needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")


@needs_dev_full
def test_dispatch_on_a_full_disk_raises_and_stays_closed(tmp_path):
    path = tmp_path / "actions-ns.jsonl"
    ledger = RestartLedger(path)
    ledger.dispatch(_record("a"))
    content = _swap_for_dev_full(path)
    with pytest.raises(LedgerWriteError) as caught:
        ledger.dispatch(_record("b"))
    assert "No space left on device" in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == errno.ENOSPC
    assert ledger.open_ids() == ["a"]
    assert ledger.open_record("b") is None
    _restore(path, content)
    # The next write also records that "b" is closed, in case its line reached the disk.
    ledger.dispatch(_record("c"))
    assert [(r["container_id"], r["op"]) for r in _lines(path)] == [
        ("a", "dispatch"),
        ("b", "closed"),
        ("c", "dispatch"),
    ]
    assert sorted(RestartLedger(path).open_ids()) == ["a", "c"]


def test_dispatch_when_the_file_cannot_be_opened(tmp_path):
    path = tmp_path / "actions-ns.jsonl"
    ledger = RestartLedger(path)
    path.unlink()
    path.mkdir()  # EISDIR on open, for root too
    with pytest.raises(LedgerWriteError, match="Is a directory"):
        ledger.dispatch(_record("a"))
    assert ledger.open_ids() == []


@needs_dev_full
def test_close_never_raises_logs_once_and_is_persisted_later(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dockmirror.ledger")
    path = tmp_path / "actions-ns.jsonl"
    ledger = RestartLedger(path)
    for cid in ("a", "b", "c"):
        ledger.dispatch(_record(cid))
    content = _swap_for_dev_full(path)
    ledger.close("a")
    ledger.close("b")
    assert ledger.open_ids() == ["c"]  # closed in memory at once
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "closing of a not written" in errors[0].getMessage()
    _restore(path, content)
    ledger.dispatch(_record("d"))
    ops = [(r["container_id"], r["op"]) for r in _lines(path)][3:]
    assert ops == [("a", "closed"), ("b", "closed"), ("d", "dispatch")]
    assert sorted(RestartLedger(path).open_ids()) == ["c", "d"]
    assert any("writing again" in r.getMessage() for r in caplog.records)


@needs_dev_full
def test_unpersisted_close_is_dropped_by_compaction(tmp_path):
    path = tmp_path / "actions-ns.jsonl"
    ledger = RestartLedger(path)
    ledger.dispatch(_record("a"))
    ledger.dispatch(_record("b"))
    content = _swap_for_dev_full(path)
    ledger.close("a")
    _restore(path, content)
    # A crash now leaves "a" open on disk (judged by the replay rule after restart).
    reloaded = RestartLedger(path)
    assert sorted(reloaded.open_ids()) == ["a", "b"]
    # While the original ledger compacting would drop it:
    ledger._compact()
    assert RestartLedger(path).open_ids() == ["b"]


def test_partial_write_does_not_swallow_the_next_record(tmp_path, monkeypatch):
    path = tmp_path / "actions-ns.jsonl"
    ledger = RestartLedger(path)
    ledger.dispatch(_record("a"))
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        if len(data) > 10:
            return real_write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ledger_module.os, "write", half_then_full)
    with pytest.raises(LedgerWriteError):
        ledger.dispatch(_record("b"))
    monkeypatch.setattr(ledger_module.os, "write", real_write)
    ledger.dispatch(_record("c"))
    assert sorted(RestartLedger(path).open_ids()) == ["a", "c"]


def test_removed_state_dir_is_recreated_private(tmp_path):
    path = tmp_path / "state" / "actions-ns.jsonl"
    ledger = RestartLedger(path)
    ledger.dispatch(_record("a"))
    path.unlink()
    path.parent.rmdir()
    ledger.dispatch(_record("b"))
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert RestartLedger(path).open_ids() == ["b"]  # "a" was lost with the directory


def test_load_failure_is_one_clear_error(tmp_path):
    path = tmp_path / "actions-ns.jsonl"
    path.mkdir()
    with pytest.raises(LedgerLoadError) as caught:
        RestartLedger(path)
    message = str(caught.value)
    assert message.startswith("cannot load the restart ledger") and "\n" not in message


def test_compaction_failure_is_one_clear_error(tmp_path):
    path = tmp_path / "actions-ns.jsonl"
    RestartLedger(path).dispatch(_record("a"))
    path.with_suffix(".tmp").mkdir()  # the compaction's temporary file cannot be made
    with pytest.raises(LedgerLoadError, match=r"actions-ns\.tmp"):
        RestartLedger(path)


def test_files_are_private_despite_umask(tmp_path):
    old = os.umask(0)
    try:
        path = tmp_path / "new" / "actions-ns.jsonl"
        ledger = RestartLedger(path)
        ledger.dispatch(_record("a"))
        path.unlink()
        ledger.dispatch(_record("b"))  # re-created by an append
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    RestartLedger(path)  # compaction's replacement is private too
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_new_fields_round_trip_and_old_files_still_decode(tmp_path):
    path = tmp_path / "actions-ns.jsonl"
    old_line = (
        b'{"container_id":"old","started_at_before":"2025-01-01T00:00:00Z",'
        b'"dispatch_ns":5,"annotation_time":"","op":"dispatch"}\n'
    )
    path.write_bytes(old_line)
    ledger = RestartLedger(path)
    old = ledger.open_record("old")
    assert old is not None and old.boot_id == "" and old.dispatch_mono_ns == 0
    ledger.dispatch(_record("new", 3))
    again = RestartLedger(path).open_record("new")
    assert again is not None and again.boot_id == "boot-a" and again.dispatch_mono_ns == 21


def test_current_boot_id(tmp_path):
    boot = tmp_path / "boot_id"
    boot.write_text("1b4c7e0e-4a4d-4c7e-9f0e-2b1f3c5d6e7f\n")
    assert current_boot_id(boot) == "1b4c7e0e-4a4d-4c7e-9f0e-2b1f3c5d6e7f"
    assert current_boot_id(tmp_path / "missing") == ""
    real = current_boot_id()
    if os.path.exists("/proc/sys/kernel/random/boot_id"):
        assert len(real) == 36 and real == current_boot_id()
