"""Message and journal types: pure msgspec data, no I/O.

Every message an actor receives is a frozen, tagged :class:`msgspec.Struct`
(``tag_field="kind"``), so the journal can write it as one JSON object and a reader
can decode it back into the same type. Modules:

* :mod:`messages.base` - the :class:`Message` base (every message carries ``msg_id``).
* :mod:`messages.inbound` - what the readers and the supervisor send to the router and
  to container actors.
* :mod:`messages.journal` - journal entries: a received message or an effect.
"""

from messages.base import Message, new_msg_id
from messages.inbound import (
    ActorFailed,
    ChildStopped,
    ContainerGone,
    DockerEvent,
    DockerLost,
    DockerResynced,
    EmitEvent,
    EngineReachable,
    FullSync,
    MirrorDeleted,
    MirrorObserved,
    Recover,
    Retire,
    SyncContainer,
    SyncDone,
    Tick,
    WatchRelisted,
)
from messages.journal import Effect, Entry, Note, Received, decode_entry, encode_entry

__all__ = [
    "ActorFailed",
    "ChildStopped",
    "ContainerGone",
    "DockerEvent",
    "DockerLost",
    "DockerResynced",
    "Effect",
    "EmitEvent",
    "EngineReachable",
    "Entry",
    "FullSync",
    "Message",
    "MirrorDeleted",
    "MirrorObserved",
    "Note",
    "Received",
    "Recover",
    "Retire",
    "SyncContainer",
    "SyncDone",
    "Tick",
    "WatchRelisted",
    "decode_entry",
    "encode_entry",
    "new_msg_id",
]
