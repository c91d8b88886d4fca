"""FakeDocker's images and volumes answer like Docker 20.10 (moby ``image_delete.go``).

The expected texts and event orders were read off the devenv engine (``docker import``,
``tag``, ``rmi``, ``commit``, ``save``/``load``, ``volume create``/``rm``);
``tests/integration/test_fake_parity.py`` replays the same steps on both.
"""

from __future__ import annotations

import threading

import pytest

from actors.domain import image_status, volume_status
from actors.ports.docker_port import DockerError, DockerInUse, DockerNotFound, DockerTimeout
from actors.ports.port_errors import is_retryable
from tests.fakes.docker import FakeDocker, short_id
from tests.support.wait import wait_for

# --- images ---------------------------------------------------------------------------


def test_import_sends_tag_then_import_and_inspects_like_docker():
    d = FakeDocker()
    iid = d.docker_import_direct("probe-p:v1", labels={"a": "b"})
    assert d.image_events() == [("tag", iid, "probe-p:v1"), ("import", iid, iid)]
    info = d.inspect_image("probe-p:v1")
    assert info["Id"] == iid and iid.startswith("sha256:") and len(iid) == 71
    assert info["RepoTags"] == ["probe-p:v1"] and info["RepoDigests"] == []
    assert info["Config"]["Labels"] == {"a": "b"}
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    # the event attributes carry the image's labels, as moby's do
    assert d.all_events()[0]["Actor"]["Attributes"] == {"a": "b", "name": "probe-p:v1"}
    # the mapping understands what the fake answers
    [mirror] = image_status.image_mirrors(info)
    assert mirror.status["repoTag"] == "probe-p:v1" and "createdAt" in mirror.status


def test_references_resolve_like_docker():
    d = FakeDocker()
    iid = d.docker_import_direct("probe")
    assert d.tags_of(iid) == ["probe:latest"]
    for ref in (iid, iid[7:], iid[7:19], "probe", "probe:latest"):
        assert d.inspect_image(ref)["Id"] == iid
    with pytest.raises(DockerNotFound) as err:
        d.inspect_image("nope:x")
    assert err.value.daemon_message == "no such image: nope:x: No such image: nope:x"
    with pytest.raises(DockerNotFound) as err:
        d.remove_image("nope:x")
    assert err.value.daemon_message == "No such image: nope:x"


def test_list_shows_placeholders_for_images_without_references():
    d = FakeDocker()
    tagged = d.docker_import_direct("probe-p:v1")
    dangling = d.docker_import_direct()
    listed = {i["Id"]: i for i in d.list_images()}
    assert listed[tagged]["RepoTags"] == ["probe-p:v1"]
    assert listed[tagged]["RepoDigests"] is None
    assert listed[dangling]["RepoTags"] == ["<none>:<none>"]
    assert listed[dangling]["RepoDigests"] == ["<none>@<none>"]
    assert isinstance(listed[dangling]["Created"], int)
    assert image_status.listed_mirror_names(d.list_images()) == {
        image_status.mirror_name(tagged, "probe-p:v1"),
        image_status.mirror_name(dangling),
    }


def test_removing_one_of_several_tags_only_untags():
    d = FakeDocker()
    iid = d.docker_import_direct("probe-p:v1")
    d.docker_tag_direct("probe-p:v1", "probe-p:v2")
    d.remove_image("probe-p:v2")
    assert d.tags_of(iid) == ["probe-p:v1"]
    assert d.image_events()[-2:] == [("tag", iid, "probe-p:v2"), ("untag", iid, iid)]
    d.remove_image("probe-p:v1")
    assert d.tags_of(iid) is None
    assert d.image_events()[-2:] == [("untag", iid, iid), ("delete", iid, iid)]


def test_an_image_in_use_cannot_be_removed_by_its_last_tag():
    d = FakeDocker()
    iid = d.docker_import_direct("probe-p:v1")
    cid = d.create("c", image="probe-p:v1", running=False)
    with pytest.raises(DockerInUse) as err:
        d.remove_image("probe-p:v1")
    assert err.value.status_code == 409 and is_retryable(err.value)
    assert err.value.daemon_message == (
        'conflict: unable to remove repository reference "probe-p:v1" (must force) - '
        f"container {cid[:12]} is using its referenced image {short_id(iid)}"
    )
    assert d.inspect(cid)["Image"] == iid and d.inspect(cid)["Config"]["Image"] == "probe-p:v1"
    d.remove(cid)
    d.remove_image("probe-p:v1")  # the last user is gone
    assert iid not in d.image_ids()


def test_force_removing_the_tag_of_a_running_image_leaves_it_dangling():
    """Scenario 4: ``docker image rm --force`` of an image pinned by a running container."""
    d = FakeDocker()
    iid = d.docker_import_direct("probe-p:v1")
    d.create("c", image="probe-p:v1")
    d.docker_rmi_direct("probe-p:v1", force=True)
    assert d.tags_of(iid) == []
    assert d.image_events()[-1] == ("untag", iid, iid)
    d.docker_tag_direct(iid, "dangling-tag-test:v1")
    assert d.tags_of(iid) == ["dangling-tag-test:v1"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("running", "(cannot be forced) - image is being used by running container {cid}"),
        ("stopped", "(must be forced) - image is being used by stopped container {cid}"),
        ("child", "(cannot be forced) - image has dependent child images"),
    ],
)
def test_removing_a_dangling_image_by_id_reports_the_conflict(setup, message):
    d = FakeDocker()
    iid = d.docker_import_direct()
    cid = ""
    if setup in ("running", "stopped"):
        cid = d.create("c", image=iid, running=setup == "running")[:12]
    else:
        d.docker_import_direct("probe-child:v1", parent=iid)
    with pytest.raises(DockerInUse) as err:
        d.remove_image(iid)
    expected = f"conflict: unable to delete {short_id(iid)} " + message.format(cid=cid)
    assert err.value.daemon_message == expected
    assert iid in d.image_ids()


def test_removing_by_id_an_image_with_several_tags_must_be_forced():
    d = FakeDocker()
    iid = d.docker_import_direct("a:1")
    d.docker_tag_direct(iid, "b:1")
    with pytest.raises(DockerInUse) as err:
        d.remove_image(iid)
    assert err.value.daemon_message.endswith(
        "(must be forced) - image is referenced in multiple repositories"
    )
    d.docker_rmi_direct(iid, force=True)
    assert iid not in d.image_ids()
    assert [a for a, _, _ in d.image_events()][-3:] == ["untag", "untag", "delete"]


def test_commit_makes_a_child_and_noprune_keeps_its_parent():
    d = FakeDocker()
    parent = d.docker_import_direct("probe-p:v1")
    cid = d.create("c", image="probe-p:v1", running=False)
    child = d.docker_commit_direct(cid, "probe-child:v1")
    assert d.inspect_image(child)["Parent"] == parent
    d.remove(cid)
    # the parent's tag goes, the image stays as an intermediate (dangling with a child)
    d.remove_image("probe-p:v1")
    assert d.tags_of(parent) == []
    assert d.image_events()[-1] == ("untag", parent, parent)
    # the port's remove (noprune) keeps the parent; the CLI's (prune) would not
    d.remove_image("probe-child:v1")
    assert parent in d.image_ids() and child not in d.image_ids()
    d.remove_image(parent)
    assert d.image_ids() == []


def test_cli_rmi_prunes_dangling_parents():
    d = FakeDocker()
    parent = d.docker_import_direct()
    child = d.docker_import_direct("probe-child:v1", parent=parent)
    d.docker_rmi_direct("probe-child:v1")
    assert d.image_ids() == []
    assert [(a, i) for a, i, _ in d.image_events()][-3:] == [
        ("untag", child),
        ("delete", child),
        ("delete", parent),
    ]


def test_a_moved_tag_sends_no_event_for_the_old_image():
    d = FakeDocker()
    a = d.docker_import_direct("x:1")
    b = d.docker_import_direct()
    before = len(d.image_events())
    d.docker_tag_direct(b, "x:1")
    assert d.tags_of(a) == [] and d.tags_of(b) == ["x:1"]
    assert d.image_events()[before:] == [("tag", b, "x:1")]


def test_load_and_pull_events():
    d = FakeDocker()
    iid = d.docker_load_direct(["probe-l:v1"])
    assert d.image_events() == [("load", iid, iid)]
    pulled = d.docker_pull_direct("probe-r")
    assert d.image_events()[-1] == ("pull", "probe-r:latest", "probe-r:latest")
    info = d.inspect_image("probe-r")
    assert info["Id"] == pulled and info["RepoDigests"] == [f"probe-r@sha256:{pulled[7:]}"]
    d.remove_image("probe-r")  # the last tag takes the repository's digests along
    assert pulled not in d.image_ids()


def test_remove_image_faults_and_gates():
    d = FakeDocker()
    d.docker_import_direct("probe-p:v1")
    d.fail_status("remove_image", 500, "boom")
    with pytest.raises(DockerError) as err:
        d.remove_image("probe-p:v1")
    assert err.value.status_code == 500 and d.tags_of(d.image_ids()[0]) == ["probe-p:v1"]
    d.time_out_next("list_images")
    with pytest.raises(DockerTimeout):
        d.list_images()
    assert d.calls_of("remove_image") == ["probe-p:v1"]


# --- volumes --------------------------------------------------------------------------


def test_volume_lifecycle_and_shapes():
    d = FakeDocker()
    d.docker_volume_create_direct("My_Vol_Ume", labels={"l": "1"})
    info = d.inspect_volume("My_Vol_Ume")
    assert info == {
        "CreatedAt": info["CreatedAt"],
        "Driver": "local",
        "Labels": {"l": "1"},
        "Mountpoint": "/var/lib/docker/volumes/My_Vol_Ume/_data",
        "Name": "My_Vol_Ume",
        "Options": None,
        "Scope": "local",
    }
    assert volume_status.volume_mirror(info).status["createdAt"] == info["CreatedAt"]
    assert d.list_volumes() == [info]
    d.remove_volume("My_Vol_Ume")
    assert d.volume_events() == [("create", "My_Vol_Ume"), ("destroy", "My_Vol_Ume")]
    d.remove_volume("My_Vol_Ume")  # force=1: a missing volume is no error
    with pytest.raises(DockerNotFound) as err:
        d.docker_volume_rm_direct("My_Vol_Ume")  # the CLI without --force
    assert err.value.daemon_message == "get My_Vol_Ume: no such volume"
    with pytest.raises(DockerNotFound):
        d.inspect_volume("My_Vol_Ume")


def test_a_mounted_volume_is_in_use_even_with_force():
    d = FakeDocker()
    d.docker_volume_create_direct("data")
    cid = d.create("c", volumes=["data"], running=False)
    # Docker sends ``create`` again when a container mounts a named volume
    assert d.volume_events() == [("create", "data"), ("create", "data")]
    with pytest.raises(DockerInUse) as err:
        d.remove_volume("data")
    assert err.value.daemon_message == f"remove data: volume is in use - [{cid}]"
    d.remove(cid)
    d.remove_volume("data")
    assert d.volume_names() == []


def test_garbage_created_at_can_be_injected():
    d = FakeDocker()
    d.docker_volume_create_direct("v", created_at="yesterday")
    assert d.inspect_volume("v")["CreatedAt"] == "yesterday"


# --- the event stream's type filter ----------------------------------------------------


def test_event_stream_filters_by_type():
    d = FakeDocker()
    default = d.events(since="0")
    everything = d.events(since="0", types=("container", "image", "volume"))
    d.docker_import_direct("probe-p:v1")
    cid = d.create("c", running=False)
    d.docker_volume_create_direct("v")
    seen: dict[str, list[str]] = {"default": [], "all": []}

    def drain(stream, key: str, count: int) -> None:
        for event in stream:
            seen[key].append(f"{event['Type']}/{event['Action']}")
            if len(seen[key]) == count:
                stream.close()

    threads = [
        threading.Thread(target=drain, args=(default, "default", 1), daemon=True),
        threading.Thread(target=drain, args=(everything, "all", 4), daemon=True),
    ]
    for t in threads:
        t.start()
    wait_for(lambda: len(seen["all"]) == 4 and seen["default"], timeout=5, message="events")
    assert seen["default"] == ["container/create"]
    assert seen["all"] == ["image/tag", "image/import", "container/create", "volume/create"]
    assert d.events_of(cid) == ["create"]
