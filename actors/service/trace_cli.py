"""Read, filter and follow the dockmirror journal (``trace.jsonl``): ``dockmirror-trace``.

Installed as the ``dockmirror-trace`` console script; ``scripts/trace`` (and
``scripts/trace.py``) run the same code from a checkout.

Usage: dockmirror-trace [--file PATH] [--container PREFIX] [--kind KIND ...] [--since TIME]
                     [--until TIME] [--cause MSG_ID] [--follow] [--json] [--limit N]

The journal (see ``messages/journal.py`` and ``actors/infra/journal.py``) is one JSON object per
line with ``kind`` = ``received`` | ``effect`` | ``note``. This reader decodes lines as
plain JSON objects, not with the service's structs, so it keeps working when fields or
entry kinds are added, and it needs only the standard library (``scripts/trace`` runs
it with any python3, outside the venv: keep it free of third-party imports).

Without ``--follow`` the rotated backups are read oldest first (``trace.jsonl.3``, ``.2``,
``.1``) and then the live file. With ``--follow`` only the live file is read, then new
lines are printed as they are appended; the follower polls (it is a CLI) and survives
rotation (file replaced: the old file is drained, the new one opened from its start),
truncation and a file that does not exist yet.

Malformed lines are skipped with a single warning on stderr.

Everything in the journal may come from an untrusted client (annotation values,
container names, error texts), so nothing is printed raw: the human-readable output
escapes every character that :meth:`str.isprintable` rejects (C0 and C1 controls such
as newline, carriage return and ESC, DEL, bidi overrides and other format characters,
separators and spaces other than the ASCII space, surrogates) as ``\\n``, ``\\r``,
``\\t``, ``\\xHH``, ``\\uHHHH`` or ``\\UHHHHHHHH``, so one entry is always one line and
can never send a terminal escape. ``--json`` prints each entry re-encoded as ASCII-only
JSON (the same object; every non-ASCII character as ``\\uHHHH``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from actors.domain.names import ACTION_ANNOTATION
from actors.domain.timefmt import parse_rfc3339_ns

ENTRY_KINDS = ("received", "effect", "note")
DEFAULT_FOLLOW_LIMIT = 10  # like tail -F: last lines first, then new ones
DEFAULT_POLL_SECONDS = 0.2

Entry = dict[str, Any]


# --- locations --------------------------------------------------------------------------
def default_trace_path(env: dict[str, str] | None = None) -> Path:
    """``$DOCKMIRROR_TRACE``, else the journal the service picks from its own variables
    (``$DOCKMIRROR_TRACE_FILE``, else ``$DOCKMIRROR_STATE_DIR/trace.jsonl``), else
    ``${XDG_STATE_HOME:-~/.local/state}/dockmirror/trace.jsonl``."""
    env = dict(os.environ) if env is None else env
    explicit = env.get("DOCKMIRROR_TRACE")
    if explicit:
        return Path(explicit).expanduser()
    service_file = env.get("DOCKMIRROR_TRACE_FILE")
    if service_file and service_file != "-":
        return Path(service_file).expanduser()
    if env.get("DOCKMIRROR_STATE_DIR"):
        return Path(env["DOCKMIRROR_STATE_DIR"]).expanduser() / "trace.jsonl"
    state_home = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "dockmirror" / "trace.jsonl"


def rotated_files(path: Path) -> list[Path]:
    """Existing backups (``path.N``, highest N = oldest first), then ``path`` if it exists."""
    backups: list[tuple[int, Path]] = []
    if path.parent.is_dir():
        prefix = path.name + "."
        for candidate in path.parent.iterdir():
            suffix = candidate.name[len(prefix) :]
            if candidate.name.startswith(prefix) and suffix.isdigit() and candidate.is_file():
                backups.append((int(suffix), candidate))
    files = [p for _, p in sorted(backups, reverse=True)]
    if path.is_file():
        files.append(path)
    return files


# --- time parsing -----------------------------------------------------------------------
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RELATIVE_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_RELATIVE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
_CLOCK = re.compile(r"(\d{1,2}):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?")
#: What a user may type for an RFC 3339 time, beyond RFC 3339 itself: a space for the
#: ``T``, lowercase ``t``/``z``, no seconds, no zone (UTC), ``+hhmm``, or a bare date
#: (midnight UTC). :func:`_rfc3339_of` rewrites these into RFC 3339 for the one parser.
_USER_STAMP = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})(?:[Tt ]([0-9]{2}:[0-9]{2})(:[0-9]{2}(?:\.[0-9]{1,9})?)?)?"
    r"\s*([Zz]|[+-][0-9]{2}:?[0-9]{2})?"
)


def _rfc3339_of(value: str) -> str | None:
    """The RFC 3339 text a user's date-time stands for, or None when it is not one."""
    stamp = _USER_STAMP.fullmatch(value)
    if stamp is None:
        return None
    date, clock, seconds, zone = stamp.groups()
    if zone is None or zone in ("Z", "z"):
        zone = "Z"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    return f"{date}T{clock or '00:00'}{seconds or ':00'}{zone}"


def parse_time(text: str, *, now_ns: int | None = None) -> int:
    """Unix nanoseconds for ``--since``/``--until``.

    Accepts a relative age (``30s``, ``5m``, ``2h``, ``1d``, ``1h30m``, ``250ms``: that long
    before now), a clock time ``HH:MM[:SS[.fff]]`` (today, UTC) or an RFC 3339 date-time
    (``2026-01-02T03:04:05.678Z``; a missing offset means UTC, a bare date means midnight).
    Raises ValueError otherwise.
    """
    value = text.strip()
    now = time.time_ns() if now_ns is None else now_ns
    if _RELATIVE.fullmatch(value):
        total = sum(float(n) * _UNIT_SECONDS[u] for n, u in _RELATIVE_PART.findall(value))
        return now - round(total * 1_000_000_000)
    clock = _CLOCK.fullmatch(value)
    if clock:
        hour, minute, second, fraction = clock.groups()
        if int(hour) > 23 or int(minute) > 59 or int(second or 0) > 59:
            raise ValueError(f"not a clock time: {text!r}")
        today = datetime.fromtimestamp(now // 1_000_000_000, UTC).date().isoformat()
        stamp = f"{today}T{int(hour):02d}:{minute}:{second or '00'}"
        parsed = parse_rfc3339_ns(stamp + (f".{fraction}Z" if fraction else "Z"))
        if parsed is None:  # unreachable: every part was checked above
            raise ValueError(f"not a clock time: {text!r}")
        return parsed
    if stamp := _rfc3339_of(value):
        parsed = parse_rfc3339_ns(stamp)  # the one parser (actors/domain/timefmt.py)
        if parsed is None:
            raise ValueError(f"not a valid date-time: {text!r}")
        return parsed
    raise ValueError(
        f"cannot parse time {text!r}: use RFC 3339, HH:MM:SS (today, UTC) or 30s/5m/2h/1d"
    )


# --- escaping ---------------------------------------------------------------------------
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(char: str) -> str:
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_text(text: str) -> str:
    """``text`` with every non-printable character escaped (see the module docstring).

    A backslash is left as it is: the output cannot forge a line or a terminal escape,
    but a literal ``\\n`` in a value looks like an escaped newline (``--json`` tells
    them apart).
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_char(c) for c in text)


def json_line(entry: Entry) -> str:
    """``entry`` as one line of ASCII-only JSON (for ``--json``)."""
    return json.dumps(entry, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def _no_constant(name: str) -> None:
    """NaN/Infinity are not JSON; msgspec writes null for them, so read them as null."""
    return None


# --- decoding ---------------------------------------------------------------------------
class LineDecoder:
    """Turns raw lines into entries; warns once on stderr about malformed lines."""

    def __init__(self, warn: TextIO | None = None) -> None:
        self.warn = warn
        self.malformed = 0

    def decode(self, raw: bytes | str, where: str = "") -> Entry | None:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        text = text.strip()
        if not text:
            return None
        try:
            entry = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            entry = None
        if not isinstance(entry, dict):
            self.malformed += 1
            if self.malformed == 1:
                stream = self.warn if self.warn is not None else sys.stderr
                location = f" ({escape_text(where)})" if where else ""
                print(
                    f"trace: skipping malformed journal line(s){location}: "
                    f"{escape_text(text[:80])}",
                    file=stream,
                    flush=True,
                )
            return None
        return entry


def read_entries(files: Iterable[Path], decoder: LineDecoder) -> Iterator[tuple[Entry, str]]:
    """(entry, raw line) for every well-formed line of ``files`` in order."""
    for path in files:
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below, files may vanish mid-read
        except OSError:
            continue  # rotated away between listing and opening
        with handle:
            for number, raw in enumerate(handle, 1):
                entry = decoder.decode(raw, f"{path}:{number}")
                if entry is not None:
                    yield entry, raw.decode("utf-8", "replace").rstrip("\r\n")


# --- filtering --------------------------------------------------------------------------
def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _msg(entry: Entry) -> dict[str, Any]:
    msg = entry.get("msg")
    return msg if isinstance(msg, dict) else {}


@dataclass(frozen=True)
class Filters:
    container: str = ""
    kinds: frozenset[str] = frozenset()
    since_ns: int | None = None
    until_ns: int | None = None
    cause: str = ""


def entry_kinds(entry: Entry) -> set[str]:
    """Every name ``--kind`` matches for this entry: its kind, msg kind, op, target.op."""
    names = {_text(entry.get("kind")), _text(entry.get("msg_kind")), _text(entry.get("op"))}
    if entry.get("op") and entry.get("target"):
        names.add(f"{_text(entry.get('target'))}.{_text(entry.get('op'))}")
    names.discard("")
    return names


class Matcher:
    """Stateful filter: ``--cause`` grows its chain of message ids as entries stream by.

    Entries must be fed in journal order (a message is always received before anything
    it causes is journaled), which both file reading and following guarantee.
    """

    def __init__(self, filters: Filters) -> None:
        self.filters = filters
        self.chain: set[str] = {filters.cause} if filters.cause else set()

    def _in_chain(self, entry: Entry) -> bool:
        msg_id = _text(entry.get("msg_id"))
        if msg_id and msg_id in self.chain:
            return True
        cause = _text(entry.get("causation_id"))
        if cause and cause in self.chain:
            if msg_id:  # a message caused by the chain: what it causes belongs too
                self.chain.add(msg_id)
            return True
        return False

    def __call__(self, entry: Entry) -> bool:
        f = self.filters
        # The chain is tracked before any other filter so that e.g. --kind effect still
        # follows the chain through the received entries it hides.
        if f.cause and not self._in_chain(entry):
            return False
        if f.container:
            ids = (_text(entry.get("container_id")), _text(_msg(entry).get("container_id")))
            if not any(cid.startswith(f.container) for cid in ids):
                return False
        if f.kinds and not (entry_kinds(entry) & f.kinds):
            return False
        if f.since_ns is not None or f.until_ns is not None:
            ts = entry.get("ts_ns")
            if not isinstance(ts, int):
                return False
            if f.since_ns is not None and ts < f.since_ns:
                return False
            if f.until_ns is not None and ts > f.until_ns:
                return False
        return True


# --- formatting -------------------------------------------------------------------------
def format_clock(ts_ns: Any) -> str:
    if not isinstance(ts_ns, int) or isinstance(ts_ns, bool):
        return "??:??:??.???"
    moment = datetime.fromtimestamp(ts_ns // 1_000_000_000, UTC)
    return f"{moment:%H:%M:%S}.{(ts_ns // 1_000_000) % 1000:03d}"


def _received_details(entry: Entry) -> str:
    msg = _msg(entry)
    parts = [_text(entry.get("msg_kind")) or "?"]
    for key in ("action", "reason", "event_type", "name"):
        value = msg.get(key)
        if value not in (None, ""):
            parts.append(f"{key}={value}")
    raw_obj = msg.get("obj")
    obj: dict[str, Any] = raw_obj if isinstance(raw_obj, dict) else {}
    raw_annotations = obj.get("annotations")
    annotations: dict[str, Any] = raw_annotations if isinstance(raw_annotations, dict) else {}
    annotation = annotations.get(ACTION_ANNOTATION) or msg.get("annotation")
    if annotation:
        parts.append(f"annotation={annotation}")
    rv = msg.get("resource_version") or obj.get("resourceVersion")
    if rv:
        parts.append(f"rv={rv}")
    for key in ("ok", "error"):
        if msg.get(key) not in (None, ""):
            parts.append(f"{key}={msg[key]}")
    if entry.get("msg_id"):
        parts.append(f"id={entry['msg_id']}")
    if entry.get("causation_id"):
        parts.append(f"cause={entry['causation_id']}")
    return " ".join(parts)


def _effect_details(entry: Entry) -> str:
    text = f"{_text(entry.get('target')) or '?'}.{_text(entry.get('op')) or '?'}"
    text += f" -> {_text(entry.get('outcome')) or '?'}"
    duration = entry.get("duration_ms")
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        text += f" ({duration:.1f} ms)"
    if entry.get("error"):
        text += f" {entry['error']}"
    return text


def _note_details(entry: Entry) -> str:
    text = _text(entry.get("text"))
    detail = entry.get("detail")
    if detail:
        text += " " + json.dumps(detail, separators=(",", ":"), sort_keys=True, default=str)
    return text


def format_entry(entry: Entry) -> str:
    """``HH:MM:SS.mmm  #seq  actor  cid[:12]  kind  details`` (time in UTC).

    Every printed string may be hostile; the whole line is escaped at the end, in this
    one place, so that no field (present or added later) can be printed raw.
    """
    kind = _text(entry.get("kind")) or "?"
    if kind == "received":
        details = _received_details(entry)
    elif kind == "effect":
        details = _effect_details(entry)
    elif kind == "note":
        details = _note_details(entry)
    else:  # a kind added after this reader was written
        rest = {k: v for k, v in entry.items() if k not in ("seq", "ts_ns", "run", "kind")}
        details = json.dumps(rest, separators=(",", ":"), default=str)
    seq = f"#{entry.get('seq', '?')}"
    actor = _text(entry.get("actor")) or "-"
    cid = _text(entry.get("container_id"))[:12] or "-"
    line = f"{format_clock(entry.get('ts_ns'))}  {seq:<6}  {actor:<22}  {cid:<12}  {kind:<8}  "
    return escape_text((line + details).rstrip())


# --- following --------------------------------------------------------------------------
class Follower:
    """Incrementally reads complete lines of a file that may not exist yet or be rotated."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: Any = None
        self._identity: tuple[int, int] | None = None
        self._partial = b""

    def _open(self) -> bool:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - kept open across polls
        except OSError:
            return False
        stat = os.fstat(handle.fileno())
        self._handle, self._identity, self._partial = handle, (stat.st_dev, stat.st_ino), b""
        return True

    def _read_available(self) -> list[bytes]:
        data = self._handle.read()
        if not data:
            return []
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()  # "" after a trailing newline, else an unfinished line
        return chunks

    def poll(self) -> list[bytes]:
        """Every complete line appended since the last call (the whole file after a reopen)."""
        if self._handle is None and not self._open():
            return []
        lines = self._read_available()
        try:
            stat = os.stat(self.path)
        except OSError:
            return lines  # removed or mid-rotation: keep draining the old file
        if (stat.st_dev, stat.st_ino) != self._identity:
            lines += self._read_available()  # whatever the writer added before it rotated
            if self._partial:
                lines.append(self._partial)
            self.close()
            if self._open():
                lines += self._read_available()
        elif stat.st_size < self._handle.tell():  # truncated in place
            self._handle.seek(0)
            self._partial = b""
            lines += self._read_available()
        return lines

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle = None


# --- command line -----------------------------------------------------------------------
class _Stop(Exception):
    """Raised by the SIGTERM handler to leave the follow loop cleanly."""


def _kind_list(values: Sequence[Sequence[str]] | None) -> frozenset[str]:
    kinds: set[str] = set()
    for group in values or ():
        for value in group:
            kinds.update(part.strip() for part in value.split(",") if part.strip())
    return frozenset(kinds)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dockmirror-trace",
        description="Show, filter and follow the dockmirror journal (trace.jsonl).",
        epilog=(
            "TIME: RFC 3339 (2026-01-02T03:04:05Z), HH:MM:SS (today, UTC) or an age "
            "(30s, 5m, 2h, 1d). Printed times are UTC."
        ),
    )
    parser.add_argument(
        "--file",
        type=Path,
        metavar="PATH",
        help="journal file (default: $DOCKMIRROR_TRACE, else $DOCKMIRROR_TRACE_FILE, else "
        "$DOCKMIRROR_STATE_DIR/trace.jsonl, else "
        "${XDG_STATE_HOME:-~/.local/state}/dockmirror/trace.jsonl)",
    )
    parser.add_argument("--container", default="", metavar="PREFIX", help="container id prefix")
    parser.add_argument(
        "--kind",
        action="append",
        nargs="+",
        metavar="KIND",
        help="entry kind (received/effect/note), message kind (docker_event, ...) or "
        "effect op (pause, docker.pause, ...); repeatable, any of them matches",
    )
    parser.add_argument("--since", metavar="TIME", help="entries at or after TIME")
    parser.add_argument("--until", metavar="TIME", help="entries at or before TIME")
    parser.add_argument(
        "--cause",
        metavar="MSG_ID",
        default="",
        help="the message MSG_ID and everything it caused, transitively",
    )
    parser.add_argument(
        "-f", "--follow", action="store_true", help="keep printing entries as they are appended"
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON lines")
    parser.add_argument(
        "-n",
        "--limit",
        type=int,
        metavar="N",
        help="only the last N matching entries (with --follow: of those already written; "
        f"default {DEFAULT_FOLLOW_LIMIT} there), then new ones",
    )
    parser.add_argument("--poll", type=float, default=DEFAULT_POLL_SECONDS, help=argparse.SUPPRESS)
    return parser


def _emit(out: TextIO, lines: Iterable[str]) -> None:
    for line in lines:
        out.write(line + "\n")
    out.flush()


def run(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    out = sys.stdout if out is None else out
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 0:
        parser.error("--limit must be >= 0")
    try:
        now = time.time_ns()
        since = parse_time(args.since, now_ns=now) if args.since else None
        until = parse_time(args.until, now_ns=now) if args.until else None
    except ValueError as exc:
        parser.error(str(exc))
    path: Path = args.file if args.file is not None else default_trace_path()
    matcher = Matcher(
        Filters(
            container=args.container,
            kinds=_kind_list(args.kind),
            since_ns=since,
            until_ns=until,
            cause=args.cause,
        )
    )
    decoder = LineDecoder()

    def render(entry: Entry, raw: str) -> str:
        # Not the raw line: valid JSON may still carry C1 controls or bidi overrides
        # unescaped, which would reach the terminal.
        return json_line(entry) if args.json else format_entry(entry)

    if not args.follow:
        files = rotated_files(path)
        if not files:
            print(f"trace: no journal at {path}", file=sys.stderr)
            return 1
        selected: Iterable[str] = (
            render(e, raw) for e, raw in read_entries(files, decoder) if matcher(e)
        )
        if args.limit is not None:
            selected = collections.deque(selected, maxlen=args.limit)
        _emit(out, selected)
        return 0

    return _follow(path, matcher, decoder, render, args, out)


def _follow(
    path: Path,
    matcher: Matcher,
    decoder: LineDecoder,
    render: Callable[[Entry, str], str],
    args: argparse.Namespace,
    out: TextIO,
) -> int:
    follower = Follower(path)
    limit = DEFAULT_FOLLOW_LIMIT if args.limit is None else args.limit

    def batch() -> list[str]:
        shown = []
        for raw in follower.poll():
            entry = decoder.decode(raw, str(path))
            if entry is not None and matcher(entry):
                shown.append(render(entry, raw.decode("utf-8", "replace").rstrip("\r")))
        return shown

    try:
        first = batch()
        _emit(out, first[-limit:] if limit else [])
        while True:
            time.sleep(max(0.01, args.poll))
            lines = batch()
            if lines:
                _emit(out, lines)
    finally:
        follower.close()


def main(argv: Sequence[str] | None = None) -> int:
    def on_term(signum: int, frame: Any) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, on_term)
    # Explicitly, because a process started in the background by a non-interactive shell
    # inherits SIGINT as ignored, and Python then leaves it ignored: Ctrl-C (or a
    # supervisor's SIGINT) would not stop --follow.
    signal.signal(signal.SIGINT, on_term)
    try:
        return run(argv)
    except (KeyboardInterrupt, _Stop):
        return 0
    except BrokenPipeError:
        # The reader went away (e.g. `trace | head`): stop quietly, and keep Python's
        # final flush of stdout from complaining a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
