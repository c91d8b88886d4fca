"""scripts/trace: filters, cause chains, time parsing, rotation order, following, bad lines."""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from actors.infra.journal import Journal
from actors.service import trace_cli as trace
from messages.journal import Effect, Note, Received

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "scripts" / "trace"
CID = "abcdef0123456789" * 4
OTHER = "fedcba9876543210" * 4
NOW = 1_700_000_000 * 1_000_000_000  # 2023-11-14T22:13:20Z


def line(**fields: Any) -> str:
    return json.dumps(fields, separators=(",", ":"))


def write_lines(path: Path, *lines: str, mode: str = "a") -> None:
    with open(path, mode) as f:
        f.writelines(text + "\n" for text in lines)


def run_cli(*argv: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    rc = trace.run(list(argv), out=out)
    return rc, out.getvalue().splitlines()


def seqs(output: list[str]) -> list[int]:
    return [json.loads(text)["seq"] for text in output]


@pytest.fixture
def story(tmp_path: Path) -> Path:
    """A docker event fanned out to a container actor, plus unrelated traffic."""
    path = tmp_path / "trace.jsonl"
    t = NOW
    write_lines(
        path,
        line(kind="received", seq=1, ts_ns=t, actor="docker-events", container_id=CID,
             msg_id="e-1", msg_kind="docker_event", msg={"action": "pause"}),
        line(kind="received", seq=2, ts_ns=t + 1, actor="router", msg_id="e-1",
             msg_kind="docker_event", msg={"container_id": CID, "action": "pause"}),
        line(kind="received", seq=3, ts_ns=t + 2, actor="c", container_id=CID, msg_id="s-1",
             causation_id="e-1", msg_kind="sync_container", msg={"reason": "pause"}),
        line(kind="effect", seq=4, ts_ns=t + 3, actor="c", container_id=CID,
             causation_id="s-1", target="docker", op="inspect", outcome="ok", duration_ms=2.5),
        line(kind="received", seq=5, ts_ns=t + 4, actor="events", container_id=CID,
             msg_id="v-1", causation_id="s-1", msg_kind="emit_event", msg={}),
        line(kind="effect", seq=6, ts_ns=t + 5, actor="events", container_id=CID,
             causation_id="v-1", target="kube", op="create_event", outcome="ok"),
        line(kind="received", seq=7, ts_ns=t + 60_000_000_000, actor="c2", container_id=OTHER,
             msg_id="m-9", msg_kind="mirror_observed", msg={"name": "x"}),
        line(kind="effect", seq=8, ts_ns=t + 61_000_000_000, actor="c2", container_id=OTHER,
             causation_id="m-9", target="kube", op="patch_last_action", outcome="conflict"),
        line(kind="note", seq=9, ts_ns=t + 62_000_000_000, actor="router", text="full sync",
             causation_id="e-1"),
    )  # fmt: skip
    return path


# --- time parsing ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "age_seconds"),
    [("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("1.5s", 1.5),
     ("250ms", 0.25)],
)  # fmt: skip
def test_relative_times_count_back_from_now(text: str, age_seconds: float) -> None:
    assert trace.parse_time(text, now_ns=NOW) == NOW - int(age_seconds * 1_000_000_000)


def test_clock_times_are_today_utc() -> None:
    now = int(datetime(2026, 3, 4, 15, 0, tzinfo=UTC).timestamp()) * 1_000_000_000
    expected = datetime(2026, 3, 4, 9, 8, 7, tzinfo=UTC).timestamp()
    assert trace.parse_time("09:08:07", now_ns=now) == int(expected) * 1_000_000_000
    assert trace.parse_time("09:08:07.5", now_ns=now) == int(expected) * 1_000_000_000 + 5 * 10**8
    assert trace.parse_time("09:08", now_ns=now) == (int(expected) - 7) * 1_000_000_000


def test_rfc3339_times() -> None:
    base = int(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()) * 1_000_000_000
    assert trace.parse_time("2026-01-02T03:04:05Z") == base
    assert trace.parse_time("2026-01-02T03:04:05.123456789Z") == base + 123_456_789
    assert trace.parse_time("2026-01-02T05:04:05+02:00") == base
    assert trace.parse_time("2026-01-01T22:04:05-05:00") == base
    assert trace.parse_time("2026-01-02 03:04:05") == base  # no offset: UTC
    # What users type beyond RFC 3339 is rewritten for the one parser (actors/domain/timefmt).
    assert trace.parse_time("2026-01-02t03:04:05z") == base
    assert trace.parse_time("2026-01-02T05:04:05+0200") == base
    assert trace.parse_time("2026-01-02 03:04") == base - 5 * 1_000_000_000
    assert trace.parse_time("2026-01-02") == base - (3 * 3600 + 4 * 60 + 5) * 1_000_000_000


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "5x",
        "25:00:00",
        "2026-13-01T00:00:00Z",
        "2026-02-30",
        "2026-01-02T03:04:60Z",
        "2026-01-02T03:04:05.1234567890Z",
        "2026-01-02T03:04:05+24:00",
    ],
)
def test_bad_times_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        trace.parse_time(text, now_ns=NOW)


def test_bad_time_is_a_usage_error(story: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        trace.run(["--file", str(story), "--since", "soon"])
    assert exc.value.code == 2
    assert "cannot parse time" in capsys.readouterr().err


# --- filters --------------------------------------------------------------------------
def test_no_filters_prints_everything_in_order(story: Path) -> None:
    rc, out = run_cli("--file", str(story), "--json")
    assert rc == 0
    assert seqs(out) == list(range(1, 10))


def test_container_prefix_matches_entry_or_message_container(story: Path) -> None:
    _, out = run_cli("--file", str(story), "--json", "--container", CID[:6])
    assert seqs(out) == [1, 2, 3, 4, 5, 6]  # 2 is the router's copy, container only in msg
    _, out = run_cli("--file", str(story), "--json", "--container", "fedc")
    assert seqs(out) == [7, 8]
    _, out = run_cli("--file", str(story), "--json", "--container", "0000")
    assert out == []


def test_kind_matches_entry_kind_message_kind_and_op(story: Path) -> None:
    def kinds(*names: str) -> list[int]:
        return seqs(run_cli("--file", str(story), "--json", "--kind", *names)[1])

    assert kinds("effect") == [4, 6, 8]
    assert kinds("note") == [9]
    assert kinds("docker_event") == [1, 2]
    assert kinds("mirror_observed") == [7]
    assert kinds("patch_last_action") == [8]
    assert kinds("docker.inspect") == [4]
    assert kinds("note", "inspect") == [4, 9]
    assert kinds("note,sync_container") == [3, 9]
    _, out = run_cli("--file", str(story), "--json", "--kind", "note", "--kind", "emit_event")
    assert seqs(out) == [5, 9]


def test_since_and_until(story: Path) -> None:
    def stamp(ns: int) -> str:
        moment = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ns % 1_000_000_000:09d}Z"

    _, out = run_cli("--file", str(story), "--json", "--since", stamp(NOW + 60_000_000_000))
    assert seqs(out) == [7, 8, 9]
    _, out = run_cli("--file", str(story), "--json", "--until", stamp(NOW + 3))
    assert seqs(out) == [1, 2, 3, 4]
    _, out = run_cli("--file", str(story), "--json", "--since", stamp(NOW + 2),
                     "--until", stamp(NOW + 61_000_000_000))  # fmt: skip
    assert seqs(out) == [3, 4, 5, 6, 7, 8]
    _, out = run_cli("--file", str(story), "--json", "--since", "1m")  # the story is in 2023
    assert seqs(out) == []


def test_limit_keeps_the_last_matches(story: Path) -> None:
    _, out = run_cli("--file", str(story), "--json", "--limit", "2", "--kind", "effect")
    assert seqs(out) == [6, 8]
    _, out = run_cli("--file", str(story), "--json", "--limit", "0")
    assert out == []


# --- cause chains ---------------------------------------------------------------------
def test_cause_shows_the_message_and_everything_it_caused_transitively(story: Path) -> None:
    _, out = run_cli("--file", str(story), "--json", "--cause", "e-1")
    assert seqs(out) == [1, 2, 3, 4, 5, 6, 9]
    _, out = run_cli("--file", str(story), "--json", "--cause", "s-1")
    assert seqs(out) == [3, 4, 5, 6]
    _, out = run_cli("--file", str(story), "--json", "--cause", "m-9")
    assert seqs(out) == [7, 8]
    _, out = run_cli("--file", str(story), "--json", "--cause", "nope")
    assert out == []


def test_cause_chain_is_followed_through_entries_other_filters_hide(story: Path) -> None:
    _, out = run_cli("--file", str(story), "--json", "--cause", "e-1", "--kind", "effect")
    assert seqs(out) == [4, 6]  # 6 is reached via received 3 and 5, which are not shown


def test_cause_chain_spans_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    write_lines(path.with_name("trace.jsonl.1"),
                line(kind="received", seq=1, msg_id="a", msg_kind="full_sync"))  # fmt: skip
    write_lines(path, line(kind="received", seq=2, msg_id="b", causation_id="a", msg_kind="x"),
                line(kind="effect", seq=3, causation_id="b", op="inspect"))  # fmt: skip
    _, out = run_cli("--file", str(path), "--json", "--cause", "a")
    assert seqs(out) == [1, 2, 3]


# --- files ----------------------------------------------------------------------------
def test_rotated_backups_are_read_oldest_first_then_the_live_file(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    for index, seq in ((10, 1), (2, 2), (1, 3)):  # numeric, not lexical, order: .10 is oldest
        write_lines(path.with_name(f"trace.jsonl.{index}"), line(kind="note", seq=seq))
    write_lines(path, line(kind="note", seq=4))
    (tmp_path / "trace.jsonl.bak").write_text(line(kind="note", seq=99) + "\n")
    (tmp_path / "other.jsonl.1").write_text(line(kind="note", seq=98) + "\n")
    assert trace.rotated_files(path) == [
        path.with_name("trace.jsonl.10"), path.with_name("trace.jsonl.2"),
        path.with_name("trace.jsonl.1"), path,
    ]  # fmt: skip
    assert seqs(run_cli("--file", str(path), "--json")[1]) == [1, 2, 3, 4]


def test_reads_what_the_real_journal_writer_rotated(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    journal = Journal(path, max_bytes=4096, backups=5)
    try:
        for n in range(60):
            journal.record(Note(actor="router", text=f"note {n}", detail={"pad": "x" * 80}))
    finally:
        journal.close()
    assert path.with_name("trace.jsonl.2").exists()  # rotated at least twice
    assert seqs(run_cli("--file", str(path), "--json")[1]) == list(range(1, 61))


def test_missing_journal_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert trace.run(["--file", str(tmp_path / "nope.jsonl")], out=io.StringIO()) == 1
    assert "no journal" in capsys.readouterr().err


def test_default_path() -> None:
    assert trace.default_trace_path({"DOCKMIRROR_TRACE": "/x/t.jsonl"}) == Path("/x/t.jsonl")
    assert trace.default_trace_path({"XDG_STATE_HOME": "/s"}) == Path("/s/dockmirror/trace.jsonl")
    assert trace.default_trace_path({}) == Path.home() / ".local/state/dockmirror/trace.jsonl"


def test_malformed_lines_are_skipped_with_one_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "trace.jsonl"
    with open(path, "wb") as f:
        f.write(line(kind="note", seq=1).encode() + b"\n")
        f.write(b"not json at all\n")
        f.write(b"[1, 2, 3]\n")  # JSON, but not an entry
        f.write(b'{"kind": "note", "seq": 2, "trunc\n')  # cut off mid-line
        f.write(b"\xff\xfe\x00 binary\n")
        f.write(b"\n")  # blank lines are not worth a warning
        f.write(line(kind="note", seq=3, future_field={"a": 1}).encode() + b"\n")
        f.write(line(kind="snapshot", seq=4, size=3).encode() + b"\n")  # a future entry kind
        f.write(line(kind="note", seq="five", ts_ns="soon", detail=[1]).encode() + b"\n")
    rc, out = run_cli("--file", str(path), "--json")
    assert rc == 0
    assert [json.loads(text)["seq"] for text in out] == [1, 3, 4, "five"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "malformed" in err
    rc, human = run_cli("--file", str(path))  # formatting copes with odd types too
    assert rc == 0 and len(human) == 4
    assert "snapshot" in human[2] and '"size":3' in human[2]


# --- formatting -----------------------------------------------------------------------
def test_human_format() -> None:
    ts = int(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()) * 10**9 + 678_900_000
    received = {
        "kind": "received", "seq": 12, "ts_ns": ts, "actor": "container/abcdef012345",
        "container_id": CID, "msg_id": "1f-7", "causation_id": "1f-3",
        "msg_kind": "mirror_observed",
        "msg": {"name": "web", "event_type": "MODIFIED", "resource_version": "42",
                "obj": {"annotations": {trace.ACTION_ANNOTATION: "pause"}}},
    }  # fmt: skip
    text = trace.format_entry(received)
    assert text.startswith("03:04:05.678  #12  ")
    fields = text.split()
    assert fields[2:5] == ["container/abcdef012345", CID[:12], "received"]
    assert fields[5] == "mirror_observed"
    for part in ("annotation=pause", "rv=42", "name=web", "id=1f-7", "cause=1f-3"):
        assert part in fields

    effect = {"kind": "effect", "seq": 13, "ts_ns": ts, "actor": "c", "target": "docker",
              "op": "pause", "outcome": "error", "duration_ms": 12.34, "error": "boom"}  # fmt: skip
    assert trace.format_entry(effect).endswith("effect    docker.pause -> error (12.3 ms) boom")
    assert "  -  " in trace.format_entry(effect)  # no container id

    note = {"kind": "note", "seq": 14, "ts_ns": ts, "actor": "router", "text": "actor died",
            "detail": {"error": "RuntimeError: x"}}  # fmt: skip
    assert trace.format_entry(note).endswith('note      actor died {"error":"RuntimeError: x"}')


def test_launcher_prints_human_lines(story: Path) -> None:
    result = subprocess.run(
        [str(LAUNCHER), "--file", str(story), "--kind", "patch_last_action"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert result.stderr == ""
    [only] = result.stdout.splitlines()
    assert "kube.patch_last_action -> conflict" in only and "#8" in only


def test_broken_pipe_exits_quietly(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    write_lines(path, *(line(kind="note", seq=n, text="x" * 200) for n in range(20_000)))
    proc = subprocess.Popen(
        [str(LAUNCHER), "--file", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away, like `trace | head -1`
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert err == b""


# --- follow ---------------------------------------------------------------------------
class LineReader:
    """Collects a subprocess's stdout lines on a thread; waits for them with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        for text in stream:
            self.lines.put(text.rstrip("\n"))

    def expect(self, count: int, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        got: list[str] = []
        while len(got) < count:
            remaining = deadline - time.monotonic()
            try:
                got.append(self.lines.get(timeout=max(0.0, remaining)))
            except queue.Empty:
                raise AssertionError(
                    f"expected {count} lines within {timeout}s, got {got}"
                ) from None
        return got

    def assert_quiet(self) -> None:
        assert self.lines.empty(), self.lines.get()


@pytest.fixture
def follow(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(path: Path, *extra: str) -> tuple[subprocess.Popen[str], LineReader]:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / "trace.py"), "--follow", "--json",
             "--poll", "0.02", "--file", str(path), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(proc)
        return proc, LineReader(proc)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> str:
    proc.send_signal(sig)
    proc.wait(timeout=10)
    assert proc.stderr is not None
    return proc.stderr.read()


def test_follow_waits_for_the_file_and_survives_rotation(tmp_path: Path, follow: Any) -> None:
    path = tmp_path / "state" / "trace.jsonl"
    path.parent.mkdir()
    proc, reader = follow(path)  # the file does not exist yet

    write_lines(path, line(kind="note", seq=1))
    assert seqs(reader.expect(1)) == [1]

    write_lines(path, line(kind="note", seq=2), line(kind="effect", seq=3, op="x"))
    assert seqs(reader.expect(2)) == [2, 3]

    # Rotation as actors/infra/journal.py does it: last lines, rename to .1, a fresh file.
    write_lines(path, line(kind="note", seq=5), "garbage")
    os.replace(path, path.with_name("trace.jsonl.1"))
    write_lines(path, line(kind="note", seq=6))
    assert seqs(reader.expect(2)) == [5, 6]

    write_lines(path, line(kind="note", seq=7))
    assert seqs(reader.expect(1)) == [7]

    path.unlink()  # removed and not yet recreated: keep waiting
    write_lines(path, line(kind="note", seq=8))
    assert seqs(reader.expect(1)) == [8]

    err = stop(proc)
    assert proc.returncode == 0
    assert err.count("\n") == 1 and "malformed" in err  # the one warning, no traceback
    reader.assert_quiet()


def test_follow_shows_recent_history_then_filters_new_lines(tmp_path: Path, follow: Any) -> None:
    path = tmp_path / "trace.jsonl"
    write_lines(path, *(line(kind="note", seq=n, container_id=CID) for n in range(1, 6)))
    proc, reader = follow(path, "--limit", "2", "--container", CID[:4])
    assert seqs(reader.expect(2)) == [4, 5]

    write_lines(
        path,
        line(kind="note", seq=6, container_id=OTHER),
        line(kind="note", seq=7, container_id=CID),
    )
    assert seqs(reader.expect(1)) == [7]
    stop(proc, signal.SIGINT)  # Ctrl-C
    assert proc.returncode == 0
    reader.assert_quiet()


def test_follow_keeps_up_with_the_real_journal_writer(tmp_path: Path, follow: Any) -> None:
    path = tmp_path / "trace.jsonl"
    journal = Journal(path, max_bytes=4096, backups=2)
    try:
        journal.record(Note(actor="test", text="start"))
        proc, reader = follow(path)
        assert seqs(reader.expect(1)) == [1]  # the follower has the file open
        for chunk in range(10):
            # 20 entries are less than one file's worth, so at most one rotation happens
            # per chunk; like tail -F, a follower cannot see a file rotated away twice
            # between two polls.
            for n in range(20):
                journal.record(
                    Received(actor="router", msg_id=f"m-{chunk}-{n}", msg_kind="docker_event")
                    if n % 4 == 0
                    else Effect(actor="c", causation_id=f"m-{chunk}-{n - n % 4}", op="inspect")
                )
            first = 2 + chunk * 20
            assert seqs(reader.expect(20)) == list(range(first, first + 20))
    finally:
        journal.close()
    assert path.with_name("trace.jsonl.2").exists()  # it rotated under the follower
    stop(proc)
    assert proc.returncode == 0
    reader.assert_quiet()


def test_follower_returns_only_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    follower = trace.Follower(path)
    try:
        assert follower.poll() == []  # no file yet
        with open(path, "ab", buffering=0) as f:
            f.write(b"one\ntw")
            assert follower.poll() == [b"one"]
            assert follower.poll() == []
            f.write(b"o\n")
            assert follower.poll() == [b"two"]
        os.replace(path, path.with_name("trace.jsonl.1"))
        assert follower.poll() == []  # rotated, new file not there yet
        path.write_bytes(b"three\n")
        assert follower.poll() == [b"three"]
        path.write_bytes(b"4\n")  # truncated in place (copytruncate)
        assert follower.poll() == [b"4"]
    finally:
        follower.close()


# --- hostile text ---------------------------------------------------------------------
#: Each can forge a line, move the cursor, recolour or reorder what a terminal shows.
HOSTILE = [
    "a\nfake 00:00:00.000  #1  forged",
    "cr\rover",
    "\x1b[2J\x1b]0;title\x07",
    "csi\x9b31m",  # a C1 control, a CSI in 8-bit terminals
    "del\x7f",
    "rtl\u202eevil\u202c\u2066iso\u2069\u200f",
    "ls\u2028ps\u2029nel\x85",
    "zw\u200b\ufeff",
    "surrogate\ud800",
    "tab\there",
]


def _hostile_entries(bad: str) -> list[dict[str, Any]]:
    """``bad`` in every string field the human format prints, in every entry kind."""
    return [
        {
            "kind": "received", "seq": 1, "ts_ns": NOW, "actor": bad, "container_id": bad,
            "msg_id": bad, "causation_id": bad, "msg_kind": bad,
            "msg": {"action": bad, "reason": bad, "event_type": bad, "name": bad,
                    "annotation": bad, "resource_version": bad, "ok": bad, "error": bad},
        },
        {
            "kind": "received", "seq": 2, "ts_ns": NOW, "msg_kind": "mirror_observed",
            "msg": {"obj": {"annotations": {trace.ACTION_ANNOTATION: bad},
                            "resourceVersion": bad}},
        },
        {
            "kind": "effect", "seq": 3, "ts_ns": NOW, "actor": bad, "container_id": bad,
            "target": bad, "op": bad, "outcome": bad, "error": bad, "duration_ms": 1.0,
        },
        {
            "kind": "note", "seq": 4, "ts_ns": NOW, "actor": bad, "text": bad,
            "detail": {bad: bad, "nested": {bad: [bad]}},
        },
        {"kind": bad, "seq": bad, "ts_ns": bad, bad: bad, "msg": {bad: bad}},
    ]  # fmt: skip


def _raw_json(entry: dict[str, Any]) -> bytes:
    """A journal line with non-ASCII characters raw, as msgspec writes them (a lone
    surrogate, which UTF-8 cannot carry, stays a JSON escape)."""
    return json.dumps(entry, ensure_ascii=False).encode("utf-8", "backslashreplace") + b"\n"


def _assert_safe(text: str) -> None:
    assert "\n" not in text and "\r" not in text
    unsafe = [c for c in text if not c.isprintable()]
    assert unsafe == [], f"unescaped {unsafe!r} in {text!r}"


@pytest.mark.parametrize("bad", HOSTILE)
def test_human_format_escapes_hostile_text_in_every_field(bad: str) -> None:
    for entry in _hostile_entries(bad):
        text = trace.format_entry(entry)
        _assert_safe(text)
        # The value is still there, escaped, for a human to read.
        assert trace.escape_text(bad) in text or "\\u" in text


def test_escapes_are_the_familiar_ones() -> None:
    escape = trace.escape_text
    assert escape("a\nb\rc\td") == "a\\nb\\rc\\td"
    assert escape("\x1b[31m\x07\x00\x7f\x9b") == "\\x1b[31m\\x07\\x00\\x7f\\x9b"
    assert escape("\u202eabc\u2028\ufeff") == "\\u202eabc\\u2028\\ufeff"
    assert escape("\U000e0041 \ud800") == "\\U000e0041 \\ud800"
    assert escape("plain text, é ü 漢字 and spaces") == "plain text, é ü 漢字 and spaces"


def test_human_output_of_a_hostile_journal_is_one_line_per_entry(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    entries = [e for bad in HOSTILE for e in _hostile_entries(bad)]
    write_lines(path, *(json.dumps(e) for e in entries))
    rc, out = run_cli("--file", str(path))
    assert rc == 0 and len(out) == len(entries)
    for text in out:
        _assert_safe(text)


def test_json_output_is_valid_ascii_json_of_the_same_entries(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    entries = [e for bad in HOSTILE for e in _hostile_entries(bad)]
    path.write_bytes(b"".join(_raw_json(e) for e in entries))
    rc, out = run_cli("--file", str(path), "--json")
    assert rc == 0 and len(out) == len(entries)
    for text, entry in zip(out, entries, strict=True):
        assert text.isascii()
        _assert_safe(text)
        assert json.loads(text) == entry


def test_json_output_never_prints_nan(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    write_lines(path, '{"kind":"effect","seq":1,"duration_ms":NaN,"error":Infinity}')
    _, out = run_cli("--file", str(path), "--json")
    assert [json.loads(text) for text in out] == [
        {"kind": "effect", "seq": 1, "duration_ms": None, "error": None}
    ]


def test_real_journal_writer_with_hostile_values_reads_back_safely(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    journal = Journal(path)
    for bad in HOSTILE:
        if "\ud800" in bad:
            continue  # msgspec refuses to encode a lone surrogate
        journal.record(Note(actor=bad, container_id=bad, text=bad, detail={bad: bad}))
        journal.record(Effect(actor=bad, target=bad, op=bad, outcome=bad, error=bad))
        journal.record(Received(actor=bad, msg_kind=bad, msg={"annotation": bad}))
    journal.close()
    _, human = run_cli("--file", str(path))
    _, raw = run_cli("--file", str(path), "--json")
    assert len(human) == len(raw) == 3 * (len(HOSTILE) - 1)
    for text in human + raw:
        _assert_safe(text)


def test_malformed_line_warning_is_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "trace.jsonl"
    write_lines(path, "\x1b]0;pwned\x07 not json\u202e", line(kind="note", seq=1))
    run_cli("--file", str(path))
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    _assert_safe(err.rstrip("\n"))
    assert "\\x1b]0;pwned\\x07" in err


@pytest.mark.parametrize("mode", ["human", "json"])
def test_follow_escapes_hostile_text(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "trace.jsonl"
    entries = [e for bad in HOSTILE for e in _hostile_entries(bad)]
    path.write_bytes(b"".join(_raw_json(e) for e in entries[:3]))
    extra = ["--json"] if mode == "json" else []
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "trace.py"), "--follow", "--poll", "0.02",
         "--limit", "100", "--file", str(path), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        encoding="utf-8", errors="strict",
    )  # fmt: skip
    try:
        reader = LineReader(proc)
        got = reader.expect(3)  # the history, printed by the first poll
        with open(path, "ab") as handle:
            handle.write(b"".join(_raw_json(e) for e in entries[3:]))
        got += reader.expect(len(entries) - 3)  # appended lines, printed as they come
        assert stop(proc) == ""
        reader.assert_quiet()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    for text in got:
        _assert_safe(text)
    if mode == "json":
        assert [json.loads(text) for text in got] == entries
