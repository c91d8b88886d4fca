"""The restart ledger (persistence, compaction, torn lines) and the journal (rotation)."""

from __future__ import annotations

import threading

from actors.journal import Journal
from actors.ledger import RestartLedger, RestartRecord
from messages.journal import Effect, Note, Received, decode_entry


def _record(cid: str, n: int = 1) -> RestartRecord:
    return RestartRecord(
        container_id=cid,
        started_at_before=f"2025-01-01T00:00:0{n}.000000001Z",
        dispatch_ns=n * 10**9,
        annotation_time="2025-01-01T00:00:00Z",
    )


def test_ledger_survives_reload(tmp_path):
    path = tmp_path / "state" / "actions-ns.jsonl"
    ledger = RestartLedger(path)
    ledger.dispatch(_record("a"))
    ledger.dispatch(_record("b", 2))
    ledger.close("a")
    ledger.close("nothing-open")  # a no-op
    reloaded = RestartLedger(path)
    assert reloaded.open_ids() == ["b"]
    assert reloaded.open_record("b") == _record("b", 2)
    assert reloaded.open_record("a") is None


def test_ledger_compacts_on_load(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger = RestartLedger(path)
    for i in range(20):
        ledger.dispatch(_record(f"c{i}"))
        ledger.close(f"c{i}")
    ledger.dispatch(_record("keep"))
    assert len(path.read_bytes().splitlines()) == 41
    RestartLedger(path)
    lines = path.read_bytes().splitlines()
    assert len(lines) == 1 and b'"keep"' in lines[0]
    assert not path.with_suffix(".tmp").exists()


def test_ledger_ignores_torn_last_line(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger = RestartLedger(path)
    ledger.dispatch(_record("a"))
    ledger.dispatch(_record("b"))
    with open(path, "ab") as handle:
        handle.write(b'{"container_id":"b","op":"clo')  # crash mid-write of a close
    reloaded = RestartLedger(path)
    assert sorted(reloaded.open_ids()) == ["a", "b"]
    reloaded.close("a")
    assert RestartLedger(path).open_ids() == ["b"]


def test_ledger_without_path_is_memory_only(tmp_path):
    ledger = RestartLedger(None)
    ledger.dispatch(_record("a"))
    assert ledger.open_ids() == ["a"]
    ledger.close("a")
    assert ledger.open_ids() == []


def test_journal_rotation_keeps_n_backups_and_lines_decode(tmp_path):
    path = tmp_path / "trace.jsonl"
    journal = Journal(path=path, max_bytes=4096, backups=2, run_id="run1")
    for i in range(400):
        journal.record(Note(actor="t", text=f"line {i}", detail={"i": i, "pad": "x" * 40}))
    journal.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["trace.jsonl", "trace.jsonl.1", "trace.jsonl.2"]
    seqs = []
    for name in ("trace.jsonl.2", "trace.jsonl.1", "trace.jsonl"):
        data = (tmp_path / name).read_bytes()
        assert len(data) <= 4096
        for line in data.splitlines():
            entry = decode_entry(line)
            assert isinstance(entry, Note) and entry.run == "run1" and entry.ts_ns > 0
            seqs.append(entry.seq)
    # The newest lines are kept, in order, with no gaps across the rotated files.
    assert seqs == list(range(seqs[0], 401))


def test_journal_without_backups_truncates(tmp_path):
    path = tmp_path / "trace.jsonl"
    journal = Journal(path=path, max_bytes=4096, backups=0)
    for i in range(200):
        journal.record(Note(actor="t", text=f"line {i}", detail={"pad": "y" * 40}))
    journal.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace.jsonl"]


def test_journal_entry_kinds_round_trip_and_concurrent_writers(tmp_path):
    path = tmp_path / "trace.jsonl"
    journal = Journal(path=path)

    def writer(n: int) -> None:
        for i in range(100):
            journal.record(
                Effect(actor=f"w{n}", target="docker", op="inspect", outcome="ok", duration_ms=i)
            )

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    journal.record(Received(actor="r", msg_id="m1", msg_kind="sync_container", msg={"a": 1}))
    journal.close()
    entries = [decode_entry(line) for line in path.read_bytes().splitlines()]
    assert len(entries) == 401
    assert [e.seq for e in entries] == list(range(1, 402))
    assert isinstance(entries[-1], Received) and entries[-1].msg == {"a": 1}
    assert all(isinstance(e, Effect) and e.op == "inspect" for e in entries[:-1])


def test_journal_without_path_still_numbers(tmp_path):
    journal = Journal(path=None)
    assert journal.record(Note(text="a")) == 1
    assert journal.record(Note(text="b")) == 2
    assert list(tmp_path.iterdir()) == []
