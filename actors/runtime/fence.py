"""The process-wide fence: once set, no actor makes another Docker or Kubernetes call.

Set by the supervisor (or the lease renewer thread) the moment this process loses its
leadership (actors/runtime/leader.py), *before* it stops the actors: a container actor that is
in the middle of a message would otherwise go on with its next call while its stop is
queued behind that message. :meth:`actors.runtime._base.JournaledActor.effect` asks
:func:`check` before every call and gets :class:`Fenced`, a retryable port error, so
the step ends as any failed step does (the annotation stays for the new leader). A call
already on the wire is not interrupted; that is the same situation as after a SIGKILL,
and the replay rules (docs/actions.md) cover it. Cleared when the actors are stopped
and the process is a standby again. Any thread.
"""

from __future__ import annotations

import threading

from actors.ports.port_errors import PortError


class Fenced(PortError):
    """A call refused because this process no longer leads its namespace."""

    retryable = True
    retry_after = 1.0


_fenced = threading.Event()


def raise_fence() -> None:
    _fenced.set()


def lower_fence() -> None:
    _fenced.clear()


def is_fenced() -> bool:
    return _fenced.is_set()


def check() -> None:
    """Raise :class:`Fenced` when the fence is up."""
    if _fenced.is_set():
        raise Fenced("not the leader any more: call refused")
