"""Journal entries: one msgspec JSON line per received message or effect.

A line always has ``seq`` (monotonic per process), ``ts_ns``, ``run`` (process start
id), ``actor`` and ``container_id``; ``kind`` tells the entry type:

* ``received``: an actor took a message from its inbox (``msg_id``, ``msg_kind``,
  ``msg`` = the message's own fields);
* ``effect``: a call the actor made to Docker or Kubernetes, its outcome and
  duration, with ``causation_id`` = the ``msg_id`` being handled;
* ``note``: anything else worth a trace line (retry, decision, restart of an actor).

Readers must not forbid unknown fields: new fields are added with defaults.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Entry(msgspec.Struct, kw_only=True, tag_field="kind", omit_defaults=True):
    seq: int = 0
    ts_ns: int = 0
    run: str = ""
    actor: str = ""
    container_id: str = ""
    causation_id: str = ""


class Received(Entry, tag="received"):
    msg_id: str = ""
    msg_kind: str = ""
    msg: dict[str, Any] = msgspec.field(default_factory=dict)


class Effect(Entry, tag="effect"):
    target: str = ""  # "docker" or "kube"
    op: str = ""  # e.g. "inspect", "pause", "apply_status", "remove_annotation"
    outcome: str = ""  # "ok", "not_found", "conflict", "error", "unavailable", "skipped"
    error: str = ""
    duration_ms: float = 0.0
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


class Note(Entry, tag="note"):
    text: str = ""
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


AnyEntry = Received | Effect | Note

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEntry)


def encode_entry(entry: Entry) -> bytes:
    return _encoder.encode(entry)


def decode_entry(line: bytes | str) -> Entry:
    return _decoder.decode(line)
