"""FakeDocker's images and volumes against the real engine: one script, both backends.

The same steps (import, tag, remove by tag and by ID with every kind of conflict, a
commit's parent, ``rmi --force`` of a pinned image, volumes in use) run on the devenv
engine (through :class:`DockerPort`, as the service calls it) and on
:class:`tests.fakes.docker.FakeDocker`. The outcomes (exception family and daemon text)
and the image and volume events must be the same once IDs and names are replaced by
placeholders. Only the test's own images, containers and volumes are touched.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import docker
import pytest

from actors.ports.docker_port import DockerPort
from actors.ports.port_errors import PortError
from tests.fakes.docker import FakeDocker
from tests.support.devenv import unique_name
from tests.support.images import ImageFactory
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration


class Real:
    """The steps on the engine: CLI-like changes by the SDK, the port's own calls."""

    def __init__(self, client: docker.DockerClient, factory: ImageFactory, port: DockerPort):
        self.client, self.factory, self.port = client, factory, port

    def import_image(self, tag: str | None) -> str:
        return self.factory.import_image(tag, labels={"a": "b"})

    def tag(self, ref: str, tag: str) -> None:
        self.factory.tag(ref, tag)

    def container(self, image: str, running: bool, volumes: list[str] = ()) -> str:
        return self.factory.container(image, running=running, volumes=list(volumes))

    def start(self, cid: str) -> None:
        self.client.api.start(cid)

    def stop(self, cid: str) -> None:
        self.client.api.stop(cid, timeout=0)

    def rm(self, cid: str) -> None:
        self.client.api.remove_container(cid, force=True)

    def commit(self, cid: str, tag: str) -> str:
        return self.factory.commit(cid, tag)

    def rmi_force(self, ref: str) -> None:
        self.client.api.remove_image(ref, force=True, noprune=False)

    def volume(self, name: str) -> None:
        self.factory.volume(name)


class Fake:
    def __init__(self, fake: FakeDocker, prefix: str) -> None:
        self.port = fake
        self.fake = fake
        self.labels = {"dockmirror.test": prefix}  # as ImageFactory labels its containers

    def import_image(self, tag: str | None) -> str:
        return self.fake.docker_import_direct(tag, labels={"a": "b"})

    def tag(self, ref: str, tag: str) -> None:
        self.fake.docker_tag_direct(ref, tag)

    def container(self, image: str, running: bool, volumes: list[str] = ()) -> str:
        name = f"c{len(self.fake.list_ids())}-{time.monotonic_ns()}"
        return self.fake.create(
            name, image=image, running=running, volumes=list(volumes), labels=self.labels
        )

    def start(self, cid: str) -> None:
        self.fake.start(cid)

    def stop(self, cid: str) -> None:
        self.fake.stop(cid)

    def rm(self, cid: str) -> None:
        self.fake.remove(cid)

    def commit(self, cid: str, tag: str) -> str:
        return self.fake.docker_commit_direct(cid, tag)

    def rmi_force(self, ref: str) -> None:
        self.fake.docker_rmi_direct(ref, force=True)

    def volume(self, name: str) -> None:
        self.fake.docker_volume_create_direct(name)


def script(b: Real | Fake, p: str) -> list[tuple[str, str]]:
    """The steps; returns ``(step, outcome)`` with outcome ``ok`` or ``<Family>: <text>``."""
    out: list[tuple[str, str]] = []

    def step(label: str, call: Callable[[], Any]) -> Any:
        try:
            result = call()
        except PortError as exc:
            out.append((label, f"{type(exc).__name__}: {exc}"))
            return None
        out.append((label, "ok"))
        return result

    image = b.import_image(f"{p}-p:v1")
    b.tag(f"{p}-p:v1", f"{p}-p:v2")
    step("rm one of two tags", lambda: b.port.remove_image(f"{p}-p:v2"))
    cid = b.container(f"{p}-p:v1", running=False)
    step("rm last tag, stopped user", lambda: b.port.remove_image(f"{p}-p:v1"))
    b.start(cid)
    step("rm by id, one tag, running user", lambda: b.port.remove_image(image))
    b.rmi_force(f"{p}-p:v1")  # scenario 4: the image stays, dangling
    step("inspect dangling", lambda: b.port.inspect_image(image)["RepoTags"])
    step("rm dangling, running user", lambda: b.port.remove_image(image))
    b.stop(cid)
    step("rm dangling, stopped user", lambda: b.port.remove_image(image))
    child = b.commit(cid, f"{p}-child:v1")
    b.rm(cid)
    step("rm parent of a child", lambda: b.port.remove_image(image))
    step("rm child (noprune)", lambda: b.port.remove_image(child))
    step("parent still there", lambda: b.port.inspect_image(image)["Id"])
    step("rm parent", lambda: b.port.remove_image(image))
    step("rm gone image", lambda: b.port.remove_image(image))
    step("inspect gone image", lambda: b.port.inspect_image(f"{p}-gone:x"))
    multi = b.import_image(f"{p}-m:v1")
    b.tag(multi, f"{p}-m:v2")
    step("rm by id, two tags", lambda: b.port.remove_image(multi))
    step("rm tag 1", lambda: b.port.remove_image(f"{p}-m:v1"))
    step("rm tag 2 (deletes)", lambda: b.port.remove_image(f"{p}-m:v2"))

    volume = f"{p}-Vol_X"
    b.volume(volume)
    user = b.container("busybox:local", running=False, volumes=[volume])
    step("rm volume in use", lambda: b.port.remove_volume(volume))
    b.rm(user)
    step("rm volume", lambda: b.port.remove_volume(volume))
    step("rm gone volume", lambda: b.port.remove_volume(volume))
    step("inspect gone volume", lambda: b.port.inspect_volume(volume))
    return out


def normalize(text: str, ids: dict[str, str], prefix: str) -> str:
    """IDs (full and 12-digit) and the test prefix become stable placeholders."""

    def name_of(hex_id: str) -> str:
        full = next((k for k in ids if k.startswith(hex_id)), hex_id)
        return ids.setdefault(full, f"<{len(ids)}>")

    text = text.replace(prefix, "P")
    text = re.sub(r"sha256:([0-9a-f]{64})", lambda m: name_of(m.group(1)), text)
    return re.sub(r"\b[0-9a-f]{64}\b|\b[0-9a-f]{12}\b", lambda m: name_of(m.group(0)), text)


def test_fake_answers_and_events_match_the_engine(docker_client, devenv, request):
    prefix = unique_name("parity", request.node.name, max_len=30)
    factory = ImageFactory(docker_client, prefix)
    since = time.time()
    try:
        real_out = script(Real(docker_client, factory, DockerPort(devenv.docker_host)), prefix)
        until = time.time() + 1

        def own_events() -> list[dict[str, Any]]:
            events = docker_client.api.events(
                since=since, until=until, decode=True, filters={"type": ["image", "volume"]}
            )
            mine = set(factory.image_ids) | set(factory.volumes)
            return [e for e in events if e["Actor"]["ID"] in mine]

        real_events = wait_for(lambda: own_events(), timeout=10, message="engine events")
    finally:
        factory.cleanup()

    fake = FakeDocker()
    fake.docker_import_direct("busybox:local")  # the devenv's image, for the volume's user
    start = len(fake.all_events())
    fake_out = script(Fake(fake, prefix), prefix)
    fake_events = [e for e in fake.all_events()[start:] if e["Type"] in ("image", "volume")]

    real_ids: dict[str, str] = {}
    fake_ids: dict[str, str] = {}

    def outcomes(out, ids):
        return [(label, normalize(text, ids, prefix)) for label, text in out]

    def shape(events, ids):
        return [
            normalize(
                f"{e['Type']} {e['Action']} {e['Actor']['ID']} {e['Actor']['Attributes']}",
                ids,
                prefix,
            )
            for e in events
        ]

    assert outcomes(fake_out, fake_ids) == outcomes(real_out, real_ids)
    assert shape(fake_events, fake_ids) == shape(real_events, real_ids)
