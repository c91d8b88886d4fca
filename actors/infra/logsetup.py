"""Log output of the service: ``--log-format text`` (for people) or ``json`` (for collectors).

``json`` writes one object per line: ``time`` (RFC 3339, UTC, milliseconds), ``level``,
``logger``, ``thread`` (the actor's thread name), ``message``, and ``exception`` (the
formatted traceback) when the record carries one. ``json.dumps`` escapes newlines, so a
multi-line message or traceback stays on one line.

Why no library (python-json-logger and similar): the formatter is a dozen lines of
standard library, and a dependency would add a release cycle to follow for no feature
we need. Called once from the main thread at start.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record; never raises on odd arguments (``default=str``)."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, object] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "thread": record.threadName,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (like logging's
    last-resort handler), so a replaced stderr (a test's capture) is never written
    after it was closed."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Replace the root logger's handlers with one stream handler in format ``fmt``.

    ``level`` is a level name (``INFO``); ``fmt`` is ``text`` or ``json`` (validated by
    the option table; anything else is a programming error and raises ValueError).
    """
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
    elif fmt == "text":
        formatter = logging.Formatter(TEXT_FORMAT)
    else:
        raise ValueError(f"unknown log format {fmt!r}")
    handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
