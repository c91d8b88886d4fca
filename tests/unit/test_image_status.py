"""actors.domain.image_status against docs/contract.md §6.2 and §3.3 (image events)."""

from __future__ import annotations

import copy
import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.domain import image_status as img
from actors.domain.desired import DesiredMirror, Unmappable
from actors.domain.image_status import StoredImage
from tests.support.samples import IMAGE_INSPECT, IMAGE_LIST

NAME = re.compile(r"^img-[0-9a-f]{64}$")
KUBE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ID = IMAGE_INSPECT["Id"]
OTHER = "sha256:" + "1" * 64


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- names ---------------------------------------------------------------------------


def test_names_follow_the_contract():
    assert img.mirror_name(ID, "probe-p:v1") == "img-" + sha(ID + "\x00probe-p:v1")
    assert img.mirror_name(ID) == "img-" + sha(ID)
    assert img.mirror_name(ID, "") == img.mirror_name(ID)  # no tag: dangling
    # a known value, computed outside Python (printf 'sha256:abc\0busybox:latest' | sha256sum)
    assert img.mirror_name("sha256:abc", "busybox:latest") == (
        "img-" + hashlib.sha256(b"sha256:abc\x00busybox:latest").hexdigest()
    )


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (None, []),
        ([], []),
        (["<none>:<none>"], []),
        (["a:1", "b:2"], ["a:1", "b:2"]),
        (["a:1", "a:1", 3, None, ""], ["a:1"]),
        ("a:1", []),
    ],
)
def test_clean_tags(tags, expected):
    assert img.clean_tags(tags) == expected


def test_mirror_names_one_per_tag_or_one_dangling():
    assert img.mirror_names(ID, ["a:1", "b:2"]) == [
        img.mirror_name(ID, "a:1"),
        img.mirror_name(ID, "b:2"),
    ]
    assert img.mirror_names(ID, ["<none>:<none>"]) == [img.mirror_name(ID)]
    assert img.mirror_names(ID, None) == [img.mirror_name(ID)]


# --- full sync: list -----------------------------------------------------------------


def test_listed_names_include_intermediate_images_as_dangling():
    child, parent = IMAGE_LIST
    assert img.listed_mirror_names(IMAGE_LIST) == {
        img.mirror_name(child["Id"], "probe-child:v1"),
        img.mirror_name(parent["Id"]),
    }
    assert img.listed_image_ids(IMAGE_LIST) == [child["Id"], parent["Id"]]


@pytest.mark.parametrize("listing", [None, {}, "x", [None, 3, {"RepoTags": ["a:1"]}, {"Id": 5}]])
def test_listed_garbage_gives_nothing(listing):
    assert img.listed_mirror_names(listing) == set()
    assert img.listed_image_ids(listing) == []


def test_listed_ids_each_once():
    entry = {"Id": ID, "RepoTags": ["a:1"]}
    assert img.listed_image_ids([entry, dict(entry)]) == [ID]


# --- inspect → mirrors ---------------------------------------------------------------


def test_sample_gives_one_mirror_per_tag():
    mirrors = img.image_mirrors(IMAGE_INSPECT)
    base = {
        "namespace": "moby",
        "id": ID,
        "createdAt": "2026-12-04T12:40:49Z",
        "architecture": "amd64",
        "os": "linux",
        "size": 1984172,
        "labels": {"a": "b"},
    }
    assert mirrors == [
        DesiredMirror(img.mirror_name(ID, "probe-p:v1"), {**base, "repoTag": "probe-p:v1"}),
        DesiredMirror(img.mirror_name(ID, "probe-p:v2"), {**base, "repoTag": "probe-p:v2"}),
    ]


def test_dangling_image_has_one_mirror_without_repo_tag():
    inspect = copy.deepcopy(IMAGE_INSPECT)
    inspect["RepoTags"] = []
    inspect["RepoDigests"] = ["b@sha256:2", "a@sha256:1", "<none>@<none>"]
    inspect["Config"] = None
    inspect["Created"] = "garbage"
    [mirror] = img.image_mirrors(inspect)
    assert mirror.name == img.mirror_name(ID)
    assert mirror.status == {
        "namespace": "moby",
        "id": ID,
        "repoDigests": ["a@sha256:1", "b@sha256:2"],  # sorted: no churn
        "architecture": "amd64",
        "os": "linux",
        "size": 1984172,
    }


def test_does_not_mutate_input():
    before = copy.deepcopy(IMAGE_INSPECT)
    mirrors = img.image_mirrors(IMAGE_INSPECT)
    mirrors[0].status["labels"]["x"] = "y"  # statuses share no mutable parts
    assert before == IMAGE_INSPECT
    assert "x" not in mirrors[1].status["labels"]


@pytest.mark.parametrize("inspect", [None, {}, [], "x", {"Id": None}, {"Id": ""}, {"Id": 7}])
def test_inspect_without_id_is_unmappable(inspect):
    result = img.image_mirrors(inspect)
    assert isinstance(result, Unmappable) and "without an Id" in result.reason


@pytest.mark.parametrize(
    ("size", "expected"),
    [(5, 5), (2**70, 2**63 - 1), (-(2**70), -(2**63)), (True, 0), (1.5, 0), (None, 0)],
)
def test_size_is_int64(size, expected):
    inspect = dict(IMAGE_INSPECT, Size=size)
    assert img.image_mirrors(inspect)[0].status["size"] == expected


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
_KEYS = ["Id", "RepoTags", "RepoDigests", "Created", "Architecture", "Os", "Size", "Config"]


@settings(max_examples=300)
@given(
    st.fixed_dictionaries({}, optional={k: json_like for k in _KEYS})
    | st.fixed_dictionaries(
        {"Id": st.text(min_size=1, max_size=20)},
        optional={
            "RepoTags": st.lists(st.text(max_size=8) | json_like, max_size=4),
            "RepoDigests": st.lists(st.text(max_size=8) | json_like, max_size=4),
            "Config": st.fixed_dictionaries({}, optional={"Labels": json_like}),
            **{k: json_like for k in ("Created", "Architecture", "Os", "Size")},
        },
    )
)
def test_any_inspect_gives_valid_mirrors_or_a_reason(inspect):
    result = img.image_mirrors(inspect)
    if isinstance(result, Unmappable):
        assert result.reason
        return
    assert result, "a mappable image has at least one mirror"
    assert len({m.name for m in result}) == len(result)
    tags = img.clean_tags(inspect.get("RepoTags"))
    assert [m.status.get("repoTag") for m in result] == (tags or [None])
    for m in result:
        assert NAME.match(m.name)
        s = m.status
        for key in ("namespace", "id", "architecture", "os"):  # required by the CRD
            assert isinstance(s[key], str)
        assert isinstance(s["size"], int) and -(2**63) <= s["size"] < 2**63
        assert s.get("repoDigests", ["x"]) == sorted(s.get("repoDigests", ["x"]))
        assert s.get("repoDigests", ["x"]) and s.get("labels", {"x": "y"})  # absent, not empty
        assert "createdAt" not in s or KUBE_TIME.match(s["createdAt"])
        assert m.name == img.mirror_name(s["id"], s.get("repoTag"))


# --- stored mirrors and events -------------------------------------------------------


def test_stored_image_reads_garbage_as_empty():
    obj = {"metadata": {"name": "img-x"}, "status": {"id": ID, "repoTag": "a:1"}}
    assert img.stored_image(obj) == StoredImage("img-x", ID, "a:1")
    assert img.stored_image({"metadata": None, "status": "x"}) == StoredImage("", "", "")
    assert img.stored_image(None) == StoredImage("", "", "")


@pytest.mark.parametrize(
    ("action", "effect"),
    [
        ("pull", img.REINSPECT),
        ("import", img.REINSPECT),
        ("load", img.REINSPECT),
        ("tag", img.REINSPECT),
        ("untag", img.REINSPECT),
        ("delete", img.REMOVE),
        ("save", None),
        ("push", None),
        ("prune", None),
        (None, None),
    ],
)
def test_event_effects(action, effect):
    assert img.image_event_effect(action) == effect


def _stored(image_id: str, tag: str = "") -> StoredImage:
    return StoredImage(img.mirror_name(image_id, tag), image_id, tag)


def test_mirrors_of_image():
    stored = [_stored(ID, "a:1"), _stored(ID), _stored(OTHER, "b:1"), StoredImage("bare", "", "")]
    assert img.mirrors_of_image(ID, stored) == [stored[0].name, stored[1].name]
    assert img.mirrors_of_image("", stored) == []


def _inspect(image_id: str, tags: list[str]) -> dict:
    return dict(IMAGE_INSPECT, Id=image_id, RepoTags=tags)


def test_untag_prunes_the_removed_tag_only():
    # docker image rm probe-p:v2 (scenario 3): the untag event does not name the tag
    stored = [_stored(ID, "probe-p:v1"), _stored(ID, "probe-p:v2"), _stored(OTHER, "x:1")]
    plan = img.plan_after_inspect(_inspect(ID, ["probe-p:v1"]), stored)
    assert [m.name for m in plan.apply] == [stored[0].name]
    assert plan.prune == [stored[1].name]
    assert plan.reinspect == []


def test_last_untag_makes_the_image_dangling():
    # docker image rm --force of the last tag of an image in use (scenario 4)
    stored = [_stored(ID, "probe-p:v1")]
    plan = img.plan_after_inspect(_inspect(ID, []), stored)
    assert [m.name for m in plan.apply] == [img.mirror_name(ID)]
    assert "repoTag" not in plan.apply[0].status
    assert plan.prune == [stored[0].name]


def test_tagging_a_dangling_image_replaces_its_mirror():
    # docker tag <id> dangling-tag-test:v1 (scenario 4, second half)
    stored = [_stored(ID)]
    plan = img.plan_after_inspect(_inspect(ID, ["dangling-tag-test:v1"]), stored)
    assert [m.status["repoTag"] for m in plan.apply] == ["dangling-tag-test:v1"]
    assert plan.prune == [stored[0].name]


def test_a_moved_tag_prunes_the_old_images_mirror_and_reinspects_it():
    # docker tag B x:1 while x:1 pointed at A: only B gets an event
    stored = [_stored(OTHER, "x:1"), _stored(OTHER, "y:1"), _stored(ID, "z:1")]
    plan = img.plan_after_inspect(_inspect(ID, ["x:1", "z:1"]), stored)
    assert {m.status["repoTag"] for m in plan.apply} == {"x:1", "z:1"}
    assert plan.prune == [stored[0].name]
    assert plan.reinspect == [OTHER]


def test_nothing_to_prune_when_mirrors_are_current():
    stored = [_stored(ID, "probe-p:v1"), _stored(ID, "probe-p:v2")]
    plan = img.plan_after_inspect(IMAGE_INSPECT, stored)
    assert plan.prune == [] and plan.reinspect == [] and len(plan.apply) == 2


def test_plan_of_garbage_is_unmappable():
    assert isinstance(img.plan_after_inspect({"Id": None}, []), Unmappable)


@settings(max_examples=200)
@given(
    tags=st.lists(st.sampled_from(["a:1", "b:1", "c:1", "d:1"]), unique=True, max_size=4),
    stored=st.lists(
        st.tuples(st.sampled_from([ID, OTHER, ""]), st.sampled_from(["", "a:1", "b:1", "e:1"])),
        max_size=8,
    ),
)
def test_plan_leaves_exactly_the_true_mirrors_of_the_image(tags, stored):
    records = [
        _stored(i, t) if i else StoredImage(f"bare-{n}", "", t) for n, (i, t) in enumerate(stored)
    ]
    plan = img.plan_after_inspect(_inspect(ID, tags), records)
    left = {r.name for r in records} - set(plan.prune) | {m.name for m in plan.apply}
    # every surviving mirror of ID is one Docker has now
    assert {r.name for r in records if r.image_id == ID and r.name in left} <= {
        m.name for m in plan.apply
    }
    # no other image still claims one of ID's tags
    assert not [
        r for r in records if r.image_id not in ("", ID) and r.repo_tag in tags and r.name in left
    ]
    # mirrors of other images keep their tags unless ID took the tag
    for r in records:
        if r.image_id not in ("", ID) and r.repo_tag not in tags:
            assert r.name not in plan.prune
        if not r.image_id:
            assert r.name not in plan.prune  # an empty status.id is the full sync's business


# --- Kubernetes delete ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "ref"),
    [
        ({"id": ID, "repoTag": "a:1"}, "a:1"),
        ({"id": ID}, ID),
        ({"id": ID, "repoTag": ""}, ID),
        ({"id": "", "repoTag": ""}, None),  # scenario 55: finalizer only
        ({}, None),
        (None, None),
        ({"id": 3, "repoTag": None}, None),
    ],
)
def test_delete_ref(status, ref):
    assert img.delete_ref(status) == ref
