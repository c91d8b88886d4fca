"""The base of every actor message."""

from __future__ import annotations

import itertools
import os

import msgspec

_counter = itertools.count(1)
_prefix = f"{os.getpid():x}"


def new_msg_id() -> str:
    """A process-unique message id (``<pid hex>-<n>``); effects cite it as their cause."""
    return f"{_prefix}-{next(_counter)}"


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """A message between actors.

    ``msg_id`` identifies this message in the journal; ``cause`` is the ``msg_id`` of
    the message whose handling produced it (empty for messages from the outside
    world, such as a Docker event), so a trace can be followed across actors.
    """

    msg_id: str = msgspec.field(default_factory=new_msg_id)
    cause: str = ""
