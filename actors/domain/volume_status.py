"""Pure derivation of ``Volume`` mirrors from Docker's volume list and inspect answers.

Contract: docs/contract.md §6.3 (upstream: rancher-desktop-daemon ``sync_volumes.go``).

* **Name**: ``vol-`` + lowercase hex SHA-256 of the Docker name, because Docker allows
  uppercase letters and underscores, which Kubernetes names forbid. Clients find a
  volume with ``--field-selector status.name=<docker name>``.
* **Status** (:func:`volume_mirror`): ``name``, ``namespace`` (always ``moby``),
  ``createdAt``, ``driver``, ``mountpoint``, ``scope``, and ``labels`` and ``options``
  when not empty. The CRD requires ``createdAt``: a volume whose ``CreatedAt`` is not an
  RFC 3339 time cannot be mirrored and is :class:`~actors.domain.desired.Unmappable`
  with a log line naming the volume and the value (upstream's status apply fails the
  same way; here it is a clear skip, never a crash).
* **Full sync** applies every entry of ``GET /volumes`` (its entries carry every field
  inspect has); :func:`listed_mirror_names` is the active set, taken before any mapping
  so an unmappable volume's existing mirror is not pruned.
* **Events** (:func:`volume_event_effect`): ``create`` inspects and applies; ``destroy``
  removes the mirror of ``Actor.ID`` (the volume's name); ``mount``, ``unmount`` and
  the rest are ignored.
* **Kubernetes delete** (:func:`delete_ref`): ``DELETE /volumes/{status.name}?force=1``;
  a mirror without ``status.name`` only loses its finalizer.

Total and pure like :mod:`actors.domain.image_status`; any thread.
"""

from __future__ import annotations

import hashlib
from typing import Any

from actors.domain.desired import DesiredMirror, Unmappable
from actors.domain.mirror_status import to_kube_time
from actors.domain.names import MOBY, VOLUME_MIRROR_PREFIX

SYNC = "sync"
REMOVE = "remove"
SYNC_ACTIONS = frozenset({"create"})
REMOVE_ACTIONS = frozenset({"destroy"})


def mirror_name(docker_name: str) -> str:
    """``vol-`` + hex SHA-256 of the Docker volume name (case and ``_`` preserved)."""
    return VOLUME_MIRROR_PREFIX + hashlib.sha256(docker_name.encode("utf-8")).hexdigest()


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _string_map(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}


def volume_entries(listing: Any) -> list[dict[str, Any]]:
    """The volume dicts of a ``GET /volumes`` answer (``{"Volumes": [...]}``) or of a
    plain list; anything else is no volumes."""
    if isinstance(listing, dict):
        listing = listing.get("Volumes")
    if not isinstance(listing, list):
        return []
    return [v for v in listing if isinstance(v, dict)]


def listed_mirror_names(listing: Any) -> set[str]:
    """The mirror names of every listed volume with a name (the full sync's active set)."""
    return {mirror_name(v["Name"]) for v in volume_entries(listing) if _str(v.get("Name"))}


def volume_mirror(volume: Any) -> DesiredMirror | Unmappable:
    """The mirror of one volume (a list entry or an inspect answer), or why there is none."""
    if not isinstance(volume, dict) or not _str(volume.get("Name")):
        return Unmappable("", f"volume without a Name, not mirrored: {str(volume)[:200]}")
    name = volume["Name"]
    created = to_kube_time(volume.get("CreatedAt"))
    if created is None:
        return Unmappable(
            name,
            f"volume {name!r} not mirrored: its CreatedAt {volume.get('CreatedAt')!r} is not "
            "an RFC 3339 time, and the Volume CRD requires status.createdAt",
        )
    status: dict[str, Any] = {
        "name": name,
        "namespace": MOBY,
        "createdAt": created,
        "driver": _str(volume.get("Driver")),
        "mountpoint": _str(volume.get("Mountpoint")),
        "scope": _str(volume.get("Scope")),
    }
    labels = _string_map(volume.get("Labels"))
    if labels:
        status["labels"] = labels
    options = _string_map(volume.get("Options"))
    if options:
        status["options"] = options
    return DesiredMirror(mirror_name(name), status)


def volume_event_effect(action: Any) -> str | None:
    """:data:`SYNC`, :data:`REMOVE` or None (ignored) for a volume event's action."""
    if action in SYNC_ACTIONS:
        return SYNC
    if action in REMOVE_ACTIONS:
        return REMOVE
    return None


def delete_ref(status: Any) -> str | None:
    """The Docker volume name a Kubernetes delete removes; None: finalizer only."""
    if not isinstance(status, dict):
        return None
    return _str(status.get("name")) or None
