"""What a pure mapping says about one Docker object: the mirrors it should have, or why not.

The kinds whose one Docker object gives zero, one or several mirrors (an image gives one
mirror per tag, docs/contract.md §6.2; a volume one, §6.3) answer with these values, so the
caller never has to guess why a list is empty. Pure data; any thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DesiredMirror:
    """One mirror as the engine wants it: its ``metadata.name`` and its whole ``status``.

    ``status`` is what the status apply sends: fields absent here are removed by the
    server-side apply (the engine owns them all).
    """

    name: str
    status: dict[str, Any]


@dataclass(frozen=True)
class Unmappable:
    """The Docker object cannot be mirrored as it is; ``reason`` is the log line.

    ``ref`` is the object's Docker identity as far as it is known (an image ID, a volume
    name, or ``""``). The caller logs ``reason`` and skips the object; an existing mirror
    of it is left as it is (never pruned because of this), so a later answer can repair it.
    """

    ref: str
    reason: str
