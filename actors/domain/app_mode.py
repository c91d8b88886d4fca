"""App mode's decisions (``--app``, docs/contract.md §3.1, §3.5): pure, clock injected.

With ``--app`` the service follows the cluster-scoped ``App`` named ``app``
(``APP_API_VERSION`` of :mod:`actors.domain.names`) the way rancher-desktop-daemon's
engine reconciler does. This module turns one observed App object into what the service should do:

* :func:`read_app` reads any object shape into an :class:`AppView` (a missing or
  mistyped field counts as absent, never as an error);
* :func:`decide` is the decision table of §3.1 step 3-4:

  ======================================  =========================================
  App                                     target
  ======================================  =========================================
  ``spec.namespace`` is not ours          ``MOVED``: stop, clean our namespace up
  ``Running`` True, engine ``moby``       ``RUN``: mirror into the App's namespace
  ``Running`` True, another engine        ``CLEAN``: True/``NotApplicable``
  ``Running`` not True                    ``CLEAN``: False/``Stopped``
  ======================================  =========================================

* :func:`needs_cleanup` is upstream's "already clean" test: a ``CLEAN`` target skips the
  cleanup's list calls when nothing was mirrored since the last cleanup and the App
  already carries the terminal condition for its current generation;
* :func:`readiness_condition` maps what the router wrote on ``ContainerNamespace/moby``
  (``Connected``, ``ConnectFailed``) to the App's ``ContainerEngineReady``; ``Syncing``
  and ``Stopped`` are not App reasons and are not forwarded (upstream writes nothing
  until the first full sync is done, and ``Stopped`` only after a cleanup);
* :func:`set_condition` is apimachinery's ``meta.SetStatusCondition`` with
  ``observedGeneration``: ``lastTransitionTime`` moves only when the status changes;
* :func:`strip_patch` is the metadata patch that removes the mirror finalizer in the
  cleanup, and :func:`cleanup_error` the one line that joins the per-item failures.

:func:`app_crd` is the App CRD (``actors/domain/app_crd.yaml``), installed only when the
apiserver has none. Nothing here does I/O except reading that packaged file once.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from actors.domain.names import (
    ACTION_ANNOTATION,
    APP_DEFAULT_NAMESPACE,
    APP_RUNNING,
    CONTAINER_ENGINE_READY,
    CONTAINER_NAMESPACES,
    CONTAINERS,
    ENGINE_MOBY,
    FINALIZER,
    IMAGES,
    VOLUMES,
)

#: Kinds the cleanup deletes, in upstream's order (docs/contract.md §3.5).
CLEANUP_KINDS: tuple[str, ...] = (CONTAINERS, VOLUMES, IMAGES, CONTAINER_NAMESPACES)
#: Kind names for messages, by plural.
KIND_NAMES = {
    CONTAINERS: "Container",
    VOLUMES: "Volume",
    IMAGES: "Image",
    CONTAINER_NAMESPACES: "ContainerNamespace",
}

#: The reasons and messages of ``ContainerEngineReady`` (docs/contract.md §3.1).
CONNECTED = "Connected"
CONNECT_FAILED = "ConnectFailed"
STOPPED = "Stopped"
NOT_APPLICABLE = "NotApplicable"
CONNECTED_MESSAGE = "Container engine synced"
STOPPED_MESSAGE = "Container engine stopped"
NOT_APPLICABLE_MESSAGE = "Engine mirroring is only supported with the moby backend"
#: Written when the service stops while it mirrors (docs/contract.md §9, D23): the mirrors
#: are kept, so ``Stopped`` (which promises a cleanup) would be wrong.
SHUTDOWN_MESSAGE = "dockmirror stopped: the mirrors are kept but no longer follow the engine"

#: The condition fields' limits of ``metav1.Condition``.
MESSAGE_MAX = 32768


@dataclass(frozen=True)
class Condition:
    """One ``metav1.Condition`` as the decisions need it."""

    status: str
    reason: str
    message: str
    observed_generation: int = 0


@dataclass(frozen=True)
class AppView:
    """What the decisions read from the App object."""

    namespace: str
    running: bool
    engine: str
    generation: int
    engine_ready: Condition | None = None


class Target(enum.Enum):
    RUN = "run"
    CLEAN = "clean"
    MOVED = "moved"


@dataclass(frozen=True)
class Decision:
    """What the App asks for. ``terminal`` is the condition a ``CLEAN`` target writes
    once the cleanup is done (``None`` for ``RUN`` and ``MOVED``: ``RUN`` writes what the
    router reports, ``MOVED`` writes nothing on an App that is not ours any more)."""

    target: Target
    namespace: str
    terminal: Condition | None = None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def conditions_of(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The object's ``status.conditions`` (only the well-formed entries)."""
    conditions = _dict(obj.get("status")).get("conditions")
    if not isinstance(conditions, list):
        return []
    return [c for c in conditions if isinstance(c, dict)]


def _find(conditions: Sequence[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def read_app(obj: dict[str, Any]) -> AppView:
    """The App as the decisions see it; total: any shape gives a view.

    ``spec.namespace`` empty or absent is ``default`` (upstream's
    ``GetResourceNamespace``); ``spec.containerEngine.name`` absent is ``moby`` (the
    CRD's default); ``Running`` counts only when its status is exactly ``True``.
    """
    spec = _dict(obj.get("spec"))
    namespace = spec.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        namespace = APP_DEFAULT_NAMESPACE
    engine = _dict(spec.get("containerEngine")).get("name")
    if not isinstance(engine, str) or not engine:
        engine = ENGINE_MOBY
    conditions = conditions_of(obj)
    running = _find(conditions, APP_RUNNING)
    ready = _find(conditions, CONTAINER_ENGINE_READY)
    engine_ready = None
    if ready is not None:
        engine_ready = Condition(
            status=str(ready.get("status") or ""),
            reason=str(ready.get("reason") or ""),
            message=str(ready.get("message") or ""),
            observed_generation=_int(ready.get("observedGeneration")),
        )
    return AppView(
        namespace=namespace,
        running=running is not None and running.get("status") == "True",
        engine=engine,
        generation=_int(_dict(obj.get("metadata")).get("generation")),
        engine_ready=engine_ready,
    )


def decide(view: AppView, our_namespace: str) -> Decision:
    """The target for ``view`` when this process mirrors into ``our_namespace``."""
    if view.namespace != our_namespace:
        return Decision(Target.MOVED, view.namespace)
    if view.running and view.engine == ENGINE_MOBY:
        return Decision(Target.RUN, view.namespace)
    if view.running:
        # True so that waiting for ContainerEngineReady ends; consumers that want
        # mirrors must look at the reason (upstream does the same).
        terminal = Condition("True", NOT_APPLICABLE, NOT_APPLICABLE_MESSAGE)
    else:
        terminal = Condition("False", STOPPED, STOPPED_MESSAGE)
    return Decision(Target.CLEAN, view.namespace, terminal)


def is_current(view: AppView, wanted: Condition) -> bool:
    """The App already carries ``wanted`` (status and reason) for its generation."""
    current = view.engine_ready
    return (
        current is not None
        and current.status == wanted.status
        and current.reason == wanted.reason
        and current.observed_generation >= view.generation
    )


def needs_cleanup(
    view: AppView,
    decision: Decision,
    *,
    mirrored_since_cleanup: bool,
    cleaned_generation: int | None,
) -> bool:
    """Whether a ``CLEAN``/``MOVED`` target must run the cleanup (docs/contract.md §3.5).

    * after mirroring (``mirrored_since_cleanup``): always, its mirrors are there;
    * after a cleanup finished for this very generation: never (it is done; what is
      left is writing the condition);
    * ``MOVED``: yes (the App no longer says anything about our namespace, so nothing
      tells that it is clean);
    * ``CLEAN``: unless the App already carries the terminal condition for its current
      generation, upstream's "already clean" test, so an App change that does not
      concern the engine costs no list calls while a new generation always re-checks.
    """
    if mirrored_since_cleanup:
        return True
    if cleaned_generation is not None and cleaned_generation == view.generation:
        return False
    if decision.target is Target.MOVED or decision.terminal is None:
        return True
    return not is_current(view, decision.terminal)


def already_written(view: AppView, wanted: Condition) -> bool:
    """The App's ``ContainerEngineReady`` is ``wanted`` (message included) for its
    current generation: writing it again would change nothing."""
    current = view.engine_ready
    return (
        is_current(view, wanted)
        and current is not None
        and current.message == wanted.message[:MESSAGE_MAX]
    )


def readiness_condition(ready: bool, reason: str, message: str) -> Condition | None:
    """The App condition for a readiness the router wrote, or None (not forwarded)."""
    if reason == CONNECTED and ready:
        return Condition("True", CONNECTED, message or CONNECTED_MESSAGE)
    if reason == CONNECT_FAILED and not ready:
        return Condition("False", CONNECT_FAILED, message or CONNECT_FAILED)
    return None


def set_condition(
    conditions: Sequence[dict[str, Any]],
    kind: str,
    wanted: Condition,
    *,
    generation: int,
    now: str,
) -> list[dict[str, Any]] | None:
    """``conditions`` with ``kind`` set to ``wanted`` at ``generation``; None if unchanged.

    Like ``meta.SetStatusCondition``: a new condition or a status change stamps
    ``lastTransitionTime`` with ``now``; otherwise it is kept. Other conditions and
    their order are kept. The message is cut to the schema's limit.
    """
    message = wanted.message[:MESSAGE_MAX]
    result: list[dict[str, Any]] = []
    changed = False
    found = False
    for condition in conditions:
        if condition.get("type") != kind:
            result.append(dict(condition))
            continue
        found = True
        new = dict(condition)
        if new.get("status") != wanted.status:
            new["status"] = wanted.status
            new["lastTransitionTime"] = now
        new["reason"] = wanted.reason
        new["message"] = message
        new["observedGeneration"] = generation
        if not new.get("lastTransitionTime"):
            new["lastTransitionTime"] = now
        changed = changed or new != condition
        result.append(new)
    if not found:
        result.append(
            {
                "type": kind,
                "status": wanted.status,
                "observedGeneration": generation,
                "lastTransitionTime": now,
                "reason": wanted.reason,
                "message": message,
            }
        )
        changed = True
    return result if changed else None


def strip_patch(plural: str, obj: dict[str, Any]) -> dict[str, Any] | None:
    """The metadata merge patch that removes the mirror finalizer from ``obj``; None
    when it does not carry it.

    Other finalizers stay (someone else's; the object then stays Terminating until they
    go, and the cleanup's wait reports it). A Container also loses its action annotation:
    the object is being deleted, so the request would never run (§3.6), and an invalid
    value written while admission was off would make the admission policy refuse this
    very update.
    """
    meta = _dict(obj.get("metadata"))
    finalizers = meta.get("finalizers")
    if not isinstance(finalizers, list) or FINALIZER not in finalizers:
        return None
    rest = [f for f in finalizers if f != FINALIZER]
    patch: dict[str, Any] = {"finalizers": rest or None}
    annotations = _dict(meta.get("annotations"))
    if plural == CONTAINERS and ACTION_ANNOTATION in annotations:
        patch["annotations"] = {ACTION_ANNOTATION: None}
    return patch


def cleanup_error(errors: Sequence[str], *, limit: int = 5) -> str:
    """One line for a cleanup pass's per-item failures (the first ``limit`` named)."""
    shown = "; ".join(errors[:limit])
    more = len(errors) - limit
    return shown + (f"; and {more} more" if more > 0 else "")


@functools.cache
def app_crd() -> dict[str, Any]:
    """The App CRD manifest (``actors/domain/app_crd.yaml``); read once per process."""
    text = resources.files("actors.domain").joinpath("app_crd.yaml").read_text("utf-8")
    manifest = yaml.safe_load(text)
    assert isinstance(manifest, dict)
    return manifest
