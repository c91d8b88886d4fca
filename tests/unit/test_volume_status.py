"""actors.domain.volume_status against docs/contract.md §6.3 and §3.3 (volume events)."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.domain import volume_status as vol
from actors.domain.desired import DesiredMirror, Unmappable
from tests.support.samples import VOLUME_INSPECT

KUBE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
RFC1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def test_name_is_the_hash_of_the_docker_name():
    assert vol.mirror_name("My_Vol_Ume") == "vol-" + hashlib.sha256(b"My_Vol_Ume").hexdigest()
    assert vol.mirror_name("my_vol_ume") != vol.mirror_name("My_Vol_Ume")  # case kept


@given(st.text(min_size=1, max_size=64))
def test_every_docker_name_gives_a_valid_kubernetes_name(name):
    mirror = vol.mirror_name(name)
    assert RFC1123_SUBDOMAIN.match(mirror) and len(mirror) == 68


def test_sample_status():
    assert vol.volume_mirror(VOLUME_INSPECT) == DesiredMirror(
        vol.mirror_name("My_Vol_Ume"),
        {
            "name": "My_Vol_Ume",
            "namespace": "moby",
            "createdAt": "2026-12-04T12:40:32Z",
            "driver": "local",
            "mountpoint": "/var/lib/docker/volumes/My_Vol_Ume/_data",
            "scope": "local",
        },
    )


def test_labels_and_options_when_present():
    volume = dict(
        VOLUME_INSPECT,
        Labels={"com.example": "x", "bad": 3},
        Options={"type": "tmpfs", "device": "tmpfs"},
        CreatedAt="2026-12-04T13:40:32+01:00",  # the daemon's local zone
    )
    status = vol.volume_mirror(volume).status
    assert status["labels"] == {"com.example": "x"}
    assert status["options"] == {"type": "tmpfs", "device": "tmpfs"}
    assert status["createdAt"] == "2026-12-04T12:40:32Z"


@pytest.mark.parametrize("created", [None, "", "garbage", "2026-13-01T00:00:00Z", 1796388032])
def test_unparsable_created_at_is_skipped_with_a_clear_reason(created):
    result = vol.volume_mirror(dict(VOLUME_INSPECT, CreatedAt=created))
    assert isinstance(result, Unmappable)
    assert result.ref == "My_Vol_Ume"
    assert "'My_Vol_Ume'" in result.reason and repr(created) in result.reason
    assert "CreatedAt" in result.reason


@pytest.mark.parametrize("volume", [None, {}, "x", {"Name": ""}, {"Name": 3}])
def test_volume_without_name_is_unmappable(volume):
    result = vol.volume_mirror(volume)
    assert isinstance(result, Unmappable) and "without a Name" in result.reason


def test_listing():
    listing = {
        "Volumes": [VOLUME_INSPECT, {"Name": "b"}, {"Name": ""}, None, "x"],
        "Warnings": None,
    }
    assert vol.volume_entries(listing) == [VOLUME_INSPECT, {"Name": "b"}, {"Name": ""}]
    # the unmappable "b" (no CreatedAt) is still active: its existing mirror is kept
    assert vol.listed_mirror_names(listing) == {vol.mirror_name("My_Vol_Ume"), vol.mirror_name("b")}
    assert vol.volume_entries({"Volumes": None}) == []
    assert vol.volume_entries(None) == []
    assert vol.volume_entries([VOLUME_INSPECT]) == [VOLUME_INSPECT]


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
_KEYS = ["Name", "CreatedAt", "Driver", "Mountpoint", "Scope", "Labels", "Options"]


@settings(max_examples=300)
@given(
    st.fixed_dictionaries({}, optional={k: json_like for k in _KEYS})
    | st.fixed_dictionaries(
        {
            "Name": st.text(min_size=1, max_size=20),
            "CreatedAt": st.sampled_from(["2026-12-04T12:40:32Z", "x"]) | st.text(max_size=25),
        },
        optional={k: json_like for k in _KEYS[2:]},
    )
)
def test_any_volume_gives_a_valid_mirror_or_a_reason(volume):
    result = vol.volume_mirror(volume)
    if isinstance(result, Unmappable):
        assert result.reason
        return
    s = result.status
    assert result.name == vol.mirror_name(s["name"])
    for key in ("name", "namespace", "driver", "mountpoint", "scope"):  # required
        assert isinstance(s[key], str)
    assert KUBE_TIME.match(s["createdAt"])
    assert s.get("labels", {"x": "y"}) and s.get("options", {"x": "y"})  # absent, not empty


@pytest.mark.parametrize(
    ("action", "effect"),
    [("create", vol.SYNC), ("destroy", vol.REMOVE), ("mount", None), ("unmount", None), (3, None)],
)
def test_event_effects(action, effect):
    assert vol.volume_event_effect(action) == effect


@pytest.mark.parametrize(
    ("status", "ref"),
    [({"name": "My_Vol_Ume"}, "My_Vol_Ume"), ({"name": ""}, None), ({}, None), (None, None)],
)
def test_delete_ref(status, ref):
    assert vol.delete_ref(status) == ref
