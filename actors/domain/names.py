"""The names of the contract, defined once (docs/contract.md §1, §4, §6).

Every API group, version, plural, annotation key, enum value, finalizer and field manager
that the service, the tests, ``scripts/bench`` and ``scripts/chaos`` use comes from here.
Pure constants: this module imports nothing, so any layer (and the standard-library-only
``dockmirror-trace``) may import it.
"""

from __future__ import annotations

#: The API group and version of every mirrored kind.
GROUP = "containers.rancherdesktop.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: Plurals (resource names in URLs) of the group's kinds.
CONTAINERS = "containers"
CONTAINER_NAMESPACES = "containernamespaces"
CONTAINER_CREATE_REQUESTS = "containercreaterequests"

#: The client's one-shot action request on a Container (docs/contract.md §4).
ACTION_ANNOTATION = f"{GROUP}/action"
ACTIONS: tuple[str, ...] = ("start", "stop", "pause", "unpause", "restart")
#: ``status.lastAction.state`` values.
ACTION_STATES: tuple[str, ...] = ("Succeeded", "Failed")

#: The service's own record of a ``restart`` sent to Docker (actors/runtime/actions.py).
DISPATCH_ANNOTATION = "dockmirror.rancherdesktop.io/restart-dispatch"

#: Every mirror carries this finalizer while its Docker object may still exist.
FINALIZER = "engine.rancherdesktop.io/mirror"

#: The ContainerNamespace that stands for the Docker engine, and its readiness condition.
MOBY = "moby"
ENGINE_READY = "EngineReady"

#: Field managers. The engine's server-side applies own the mirrored fields and the
#: conditions derived from them (docs/contract.md §2.6); ``lastAction`` is written by
#: another manager so the engine's apply never removes it.
ENGINE_MANAGER = "engine-controller"
ACTIONS_MANAGER = "dockmirror-actions"
#: The manager of what the service installs (CRDs, admission objects, RBAC output).
INSTALL_MANAGER = "dockmirror"

#: Content types of the Kubernetes API calls.
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
