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
#: Image and Volume mirrors (docs/contract.md §6.2, §6.3); App mode's cleanup deletes
#: them too.
IMAGES = "images"
VOLUMES = "volumes"

#: Mirror names of the kinds whose Docker names are not valid Kubernetes names
#: (docs/contract.md §6.2, §6.3): the prefix and the lowercase hex SHA-256 of the Docker
#: identity (actors/domain/image_status.py, actors/domain/volume_status.py).
IMAGE_MIRROR_PREFIX = "img-"
VOLUME_MIRROR_PREFIX = "vol-"

#: The client's one-shot action request on a Container (docs/contract.md §4).
ACTION_ANNOTATION = f"{GROUP}/action"
ACTIONS: tuple[str, ...] = ("start", "stop", "pause", "unpause", "restart")
#: ``status.lastAction.state`` values.
ACTION_STATES: tuple[str, ...] = ("Succeeded", "Failed")

#: The service's own record of a ``restart`` sent to Docker (actors/runtime/actions.py).
DISPATCH_ANNOTATION = "dockmirror.rancherdesktop.io/restart-dispatch"

#: Every mirror carries this finalizer while its Docker object may still exist.
FINALIZER = "engine.rancherdesktop.io/mirror"

#: The ContainerNamespace that stands for the Docker engine (also ``status.namespace`` of
#: every Image and Volume mirror), and its readiness condition.
MOBY = "moby"
ENGINE_READY = "EngineReady"

#: Field managers. The engine's server-side applies own the mirrored fields and the
#: conditions derived from them (docs/contract.md §2.6); ``lastAction`` is written by
#: another manager so the engine's apply never removes it.
ENGINE_MANAGER = "engine-controller"
ACTIONS_MANAGER = "dockmirror-actions"
#: The manager of what the service installs (CRDs, admission objects, RBAC output).
INSTALL_MANAGER = "dockmirror"

#: The ``reportingController`` of every Kubernetes Event the service writes (condition
#: changes, action outcomes, rejected syncs): one name, upstream's (docs/contract.md §1.6).
EVENT_REPORTING_CONTROLLER = "container-controller"

#: Content types of the Kubernetes API calls.
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

#: App mode (``--app``, docs/contract.md §3.1, §3.5): the cluster-scoped singleton ``App``
#: named ``app`` of rancher-desktop-daemon, its group, the conditions it carries and the
#: engine name that selects Docker.
APP_GROUP = "app.rancherdesktop.io"
APP_VERSION = "v1alpha1"
APP_API_VERSION = f"{APP_GROUP}/{APP_VERSION}"
APPS = "apps"
APP_NAME = "app"
APP_CRD_NAME = f"{APPS}.{APP_GROUP}"
#: Written by the App's own controller (the VM is up); we only read it.
APP_RUNNING = "Running"
#: Written by this service on the App (upstream's readiness condition).
CONTAINER_ENGINE_READY = "ContainerEngineReady"
#: ``spec.containerEngine.name`` values (the CRD's enum); only moby is mirrored.
ENGINE_MOBY = "moby"
ENGINE_CONTAINERD = "containerd"
#: ``spec.namespace`` when the App leaves it empty (the CRD's default too).
APP_DEFAULT_NAMESPACE = "default"
