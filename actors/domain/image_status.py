"""Pure derivation of ``Image`` mirrors from Docker's image list and inspect answers.

Contract: docs/contract.md §6.2 (upstream: rancher-desktop-daemon ``sync_images.go``).

* **Names.** One mirror per tag, named ``img-`` + lowercase hex SHA-256 of
  ``id + "\\x00" + tag``; an image without tags (dangling, or an intermediate image of a
  build) has one mirror named ``img-`` + hex SHA-256 of ``id``.
* **Status** (:func:`image_mirrors`): ``namespace`` (always ``moby``), ``id``,
  ``repoTag`` (absent when dangling), ``repoDigests`` (sorted, absent when empty),
  ``createdAt`` (absent when it does not parse), ``architecture``, ``os``, ``size``
  (int64) and ``labels`` (``Config.Labels``, absent when empty).
* **Full sync** lists with ``all=true`` so intermediate images are mirrored (as dangling
  ones); :func:`listed_mirror_names` gives the names every listed image implies *before*
  any inspect, so a transient inspect failure cannot make a mirror look stale.
* **Events** (:func:`image_event_effect`): ``pull``, ``import``, ``load``, ``tag`` and
  ``untag`` re-inspect ``Actor.ID``; :func:`plan_after_inspect` then says which mirrors to
  apply and which to prune. Docker's ``untag`` event does not name the tag it removed, so
  the mirrors of that image ID outside the fresh set are the removed tags (or the
  dangling mirror once the image is tagged again). ``delete`` removes every mirror with
  that ``status.id`` (:func:`mirrors_of_image`).
* **Kubernetes delete** (:func:`delete_ref`): ``DELETE /images/{repoTag or id}``; a mirror
  with neither only loses its finalizer.

Docker answers the API 1.41 list of a dangling image with the placeholders
``<none>:<none>`` and ``<none>@<none>`` (newer APIs with empty lists); both are dropped.

All functions are total: garbage input (missing keys, ``None``, wrong types) is treated as
absent, and an inspect without an ``Id`` is :class:`~actors.domain.desired.Unmappable`.
No I/O, any thread.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from actors.domain.desired import DesiredMirror, Unmappable
from actors.domain.mirror_status import to_kube_time
from actors.domain.names import IMAGE_MIRROR_PREFIX, MOBY

#: What Docker < API 1.43 lists for an image without tags or digests.
PLACEHOLDER_TAG = "<none>:<none>"
PLACEHOLDER_DIGEST = "<none>@<none>"

#: Image events that re-inspect ``Actor.ID`` (docs/contract.md §3.3). ``pull`` names the
#: pulled reference rather than the ID; the inspect resolves it either way.
REINSPECT_ACTIONS = frozenset({"pull", "import", "load", "tag", "untag"})
#: The image event after which no mirror of ``Actor.ID`` (an image ID) may remain.
REMOVE_ACTIONS = frozenset({"delete"})

REINSPECT = "reinspect"
REMOVE = "remove"

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def mirror_name(image_id: str, tag: str | None = None) -> str:
    """``img-`` + hex SHA-256 of ``id + "\\x00" + tag``, or of ``id`` alone without a tag."""
    key = image_id if not tag else f"{image_id}\x00{tag}"
    return IMAGE_MIRROR_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


def clean_tags(raw: Any) -> list[str]:
    """Docker's ``RepoTags`` as real tags: strings only, placeholders and repeats dropped."""
    if not isinstance(raw, list):
        return []
    tags: list[str] = []
    for tag in raw:
        if isinstance(tag, str) and tag and tag != PLACEHOLDER_TAG and tag not in tags:
            tags.append(tag)
    return tags


def clean_digests(raw: Any) -> list[str]:
    """Docker's ``RepoDigests`` sorted (the field is atomic: an unsorted apply would churn
    ``resourceVersion``), placeholders and repeats dropped."""
    if not isinstance(raw, list):
        return []
    return sorted({d for d in raw if isinstance(d, str) and d and d != PLACEHOLDER_DIGEST})


def mirror_names(image_id: str, repo_tags: Any) -> list[str]:
    """The mirror names of one image: one per tag, or the single dangling name."""
    tags = clean_tags(repo_tags)
    if not tags:
        return [mirror_name(image_id)]
    return [mirror_name(image_id, tag) for tag in tags]


def _image_id(obj: Any) -> str:
    value = obj.get("Id") if isinstance(obj, dict) else None
    return value if isinstance(value, str) else ""


def listed_image_ids(summaries: Any) -> list[str]:
    """IDs of a ``GET /images/json?all=1`` answer, in order, each once (entries without
    an ``Id`` are skipped: there is nothing to inspect)."""
    ids: list[str] = []
    seen: set[str] = set()
    for summary in summaries if isinstance(summaries, list) else []:
        image_id = _image_id(summary)
        if image_id and image_id not in seen:
            seen.add(image_id)
            ids.append(image_id)
    return ids


def listed_mirror_names(summaries: Any) -> set[str]:
    """Every mirror name the listed images imply (the full sync's active set).

    Taken from the list alone, before any inspect: a mirror whose inspect fails for a
    moment is still active and is not pruned.
    """
    names: set[str] = set()
    for summary in summaries if isinstance(summaries, list) else []:
        image_id = _image_id(summary)
        if image_id:
            names.update(mirror_names(image_id, summary.get("RepoTags")))
    return names


def _int64(value: Any) -> int:
    """Docker's int64 sizes; anything else is 0, out-of-range values are clamped."""
    if not isinstance(value, int) or isinstance(value, bool):
        return 0
    return min(max(value, _INT64_MIN), _INT64_MAX)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _labels(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}


def base_status(inspect: dict[str, Any]) -> dict[str, Any]:
    """The status fields every mirror of one image shares (all but ``repoTag``)."""
    status: dict[str, Any] = {"namespace": MOBY, "id": _image_id(inspect)}
    digests = clean_digests(inspect.get("RepoDigests"))
    if digests:
        status["repoDigests"] = digests
    created = to_kube_time(inspect.get("Created"))
    if created is not None:
        status["createdAt"] = created
    status["architecture"] = _str(inspect.get("Architecture"))
    status["os"] = _str(inspect.get("Os"))
    status["size"] = _int64(inspect.get("Size"))
    config = inspect.get("Config")
    labels = _labels(config.get("Labels") if isinstance(config, dict) else None)
    if labels:
        status["labels"] = labels
    return status


def image_mirrors(inspect: Any) -> list[DesiredMirror] | Unmappable:
    """The mirrors one ``GET /images/{ref}/json`` answer implies, in ``RepoTags`` order.

    One per tag, each with its ``repoTag``; a dangling image gets one mirror without
    ``repoTag``. An answer without a string ``Id`` is :class:`Unmappable`.
    """
    if not isinstance(inspect, dict) or not _image_id(inspect):
        return Unmappable("", f"image inspect without an Id, not mirrored: {str(inspect)[:200]}")
    image_id = _image_id(inspect)
    base = base_status(inspect)
    tags = clean_tags(inspect.get("RepoTags"))
    if not tags:
        return [DesiredMirror(mirror_name(image_id), base)]
    # A deep copy per mirror: the statuses share no mutable parts (labels, digests).
    return [
        DesiredMirror(mirror_name(image_id, tag), {**copy.deepcopy(base), "repoTag": tag})
        for tag in tags
    ]


# --- what is stored -----------------------------------------------------------------


@dataclass(frozen=True)
class StoredImage:
    """What the event and delete paths need of a stored Image mirror."""

    name: str
    image_id: str
    repo_tag: str


def stored_image(obj: Any) -> StoredImage:
    """Read a stored Image object (a dict as the apiserver returns it); garbage → ``""``."""
    obj = obj if isinstance(obj, dict) else {}
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    return StoredImage(
        name=_str(metadata.get("name")),
        image_id=_str(status.get("id")),
        repo_tag=_str(status.get("repoTag")),
    )


# --- events -------------------------------------------------------------------------


def image_event_effect(action: Any) -> str | None:
    """:data:`REINSPECT`, :data:`REMOVE` or None (ignored) for an image event's action."""
    if action in REINSPECT_ACTIONS:
        return REINSPECT
    if action in REMOVE_ACTIONS:
        return REMOVE
    return None


def mirrors_of_image(image_id: str, stored: Iterable[StoredImage]) -> list[str]:
    """Names of every stored mirror whose ``status.id`` is ``image_id`` (after ``delete``,
    or when the re-inspect answers 404). An empty ``image_id`` matches nothing."""
    if not image_id:
        return []
    return [s.name for s in stored if s.image_id == image_id]


@dataclass(frozen=True)
class ImagePlan:
    """What to do after a fresh inspect of one image.

    ``apply``: its mirrors as they should be. ``prune``: stored mirrors that are no longer
    true (remove-mirror, no Docker call), i.e. mirrors of this ID whose tag was removed
    (or the dangling mirror of an image that has tags again), and mirrors of *other* IDs
    that still claim a tag Docker has moved to this image. ``reinspect``: those other IDs,
    in order: the tag move left them dangling (or gone), which no event of theirs reports.
    """

    apply: list[DesiredMirror] = field(default_factory=list)
    prune: list[str] = field(default_factory=list)
    reinspect: list[str] = field(default_factory=list)


def plan_after_inspect(inspect: Any, stored: Iterable[StoredImage]) -> ImagePlan | Unmappable:
    """Which mirrors to apply and prune after re-inspecting an image (docs/contract.md §6.2).

    Beyond upstream: a tag that moved from image A to image B (``docker tag``, ``load``,
    ``import`` or ``pull`` of an existing tag) produces an event for B only. Upstream keeps
    A's mirror for that tag until the next full sync; here it is pruned and A is listed in
    ``reinspect``, so A's dangling mirror appears (or A's mirrors go if A was deleted).
    """
    desired = image_mirrors(inspect)
    if isinstance(desired, Unmappable):
        return desired
    image_id = _image_id(inspect)
    fresh = {d.name for d in desired}
    tags = {d.status["repoTag"] for d in desired if "repoTag" in d.status}
    prune: list[str] = []
    reinspect: list[str] = []
    for s in stored:
        if s.name in fresh:
            continue
        if s.image_id == image_id:
            prune.append(s.name)
        elif s.image_id and s.repo_tag in tags:
            prune.append(s.name)
            if s.image_id not in reinspect:
                reinspect.append(s.image_id)
    return ImagePlan(apply=desired, prune=prune, reinspect=reinspect)


# --- Kubernetes delete ----------------------------------------------------------------


def delete_ref(status: Any) -> str | None:
    """The reference a Kubernetes delete removes in Docker: ``repoTag``, else ``id``.

    None when the mirror has neither (a hand-made object, or one whose status apply never
    happened): its finalizer is removed without a Docker call (docs/contract.md §7,
    scenario 55).
    """
    if not isinstance(status, dict):
        return None
    return _str(status.get("repoTag")) or _str(status.get("id")) or None
