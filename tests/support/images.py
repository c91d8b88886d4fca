"""Test images and volumes on the real engine without a registry.

:func:`busybox_rootfs_tar` packs the host's static busybox into a root file system, which
``docker import`` turns into a fresh image with an ID of its own (a new one every time:
the import records its time). :class:`ImageFactory` makes such images and volumes under a
unique test prefix and removes exactly what it made afterwards: its images by ID, its
tags of other images (``busybox:local`` keeps its own tag and is never removed), its
volumes, and the containers it started.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tarfile
import time
from pathlib import Path

import docker
import docker.errors

APPLETS = ("sh", "sleep", "true", "cat", "echo")


def busybox_rootfs_tar() -> bytes:
    """A tar of ``/bin/busybox`` plus applet links: enough for ``sleep`` and ``sh``."""
    binary = shutil.which("busybox") or "/bin/busybox"
    data = Path(binary).read_bytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directory = tarfile.TarInfo("bin")
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(directory)
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode, info.mtime = len(data), 0o755, int(time.time())
        tar.addfile(info, io.BytesIO(data))
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buffer.getvalue()


class ImageFactory:
    """Makes test images, tags, containers and volumes named ``<prefix>-...``; cleans up."""

    def __init__(self, client: docker.DockerClient, prefix: str) -> None:
        self.client = client
        self.api = client.api
        self.prefix = prefix
        self.image_ids: list[str] = []
        self.tags: list[str] = []
        self.volumes: list[str] = []
        self.containers: list[str] = []
        self._tar: bytes | None = None

    def name(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"

    def import_image(self, tag: str | None = None, *, labels: dict[str, str] | None = None) -> str:
        """``docker import`` a fresh busybox image (tagged ``tag`` if given); its ID."""
        if self._tar is None:
            self._tar = busybox_rootfs_tar()
        repository, _, version = (
            (tag or "").rpartition(":") if tag and ":" in tag else (tag, "", "")
        )
        changes = [f"LABEL {k}={v}" for k, v in (labels or {}).items()] or None
        answer = self.api.import_image_from_data(
            self._tar, repository=repository or None, tag=version or None, changes=changes
        )
        image_id = _status_of(answer)
        self.image_ids.append(image_id)
        if tag:
            self.tags.append(tag)
        return image_id

    def tag(self, ref: str, tag: str) -> None:
        repository, _, version = tag.rpartition(":")
        self.api.tag(ref, repository, version)
        self.tags.append(tag)

    def commit(self, container_id: str, tag: str) -> str:
        repository, _, version = tag.rpartition(":")
        image_id = self.api.commit(container_id, repository=repository, tag=version)["Id"]
        self.image_ids.append(image_id)
        self.tags.append(tag)
        return image_id

    def container(self, image: str, *, running: bool = True, volumes: list[str] = ()) -> str:
        """A ``sleep 3600`` container (``--network none``) of ``image``; its ID."""
        host_config = self.api.create_host_config(
            network_mode="none", binds=[f"{v}:/data/{i}" for i, v in enumerate(volumes)]
        )
        created = self.api.create_container(
            image,
            ["sleep", "3600"],
            host_config=host_config,
            labels={"dockmirror.test": self.prefix},
            name=self.name(f"c{len(self.containers)}"),
        )
        self.containers.append(created["Id"])
        if running:
            self.api.start(created["Id"])
        return created["Id"]

    def volume(self, name: str, *, labels: dict[str, str] | None = None) -> str:
        self.api.create_volume(name, labels=labels)
        self.volumes.append(name)
        return name

    def cleanup(self) -> None:
        """Remove what this factory made; what is already gone is fine."""
        for container_id in self.containers:
            with contextlib.suppress(docker.errors.NotFound):
                self.api.remove_container(container_id, force=True)
        for tag in reversed(self.tags):  # only untags when the image has other tags
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.api.remove_image(tag, force=True, noprune=True)
        for image_id in reversed(self.image_ids):  # children before parents
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.api.remove_image(image_id, force=True, noprune=True)
        for volume in self.volumes:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.api.remove_volume(volume, force=True)


def _status_of(answer: object) -> str:
    """The image ID in ``docker import``'s answer (JSON lines ending with ``status``)."""
    import json

    text = answer.decode() if isinstance(answer, bytes) else str(answer)
    for line in reversed(text.strip().splitlines()):
        status = json.loads(line).get("status", "")
        if status.startswith("sha256:"):
            return status
    raise AssertionError(f"docker import gave no image ID: {text[:200]}")
