"""actors.domain.mirror_status against docs/contract.md §1.5, §1.6, §2.2-§2.5."""

from __future__ import annotations

import copy
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.domain.mirror_status import (
    CONDITION_TYPES,
    comparable_status,
    compute_conditions,
    mirror_status,
    parse_container_name,
    to_kube_time,
)
from tests.support.samples import IMAGE_ID, INSPECT_RUNNING, inspect_with

KUBE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


# --- §2.2 names ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "namespace", "name"),
    [
        ("/plain", "moby", "plain"),
        ("plain", "moby", "plain"),
        ("/k8s.io/magical_gates", "k8s.io", "magical_gates"),
        ("/ns/name/with/slashes", "ns", "name/with/slashes"),
        ("", "moby", ""),
        ("/", "moby", ""),
    ],
)
def test_parse_container_name_table(raw, namespace, name):
    assert parse_container_name(raw) == (namespace, name)


# --- §2.5 times ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2025-11-22T00:34:07Z", "2025-11-22T00:34:07Z"),
        ("2025-11-22T00:34:07.999999999Z", "2025-11-22T00:34:07Z"),  # truncated, not rounded
        ("2025-11-22T00:34:07.5Z", "2025-11-22T00:34:07Z"),
        ("2025-12-31T23:59:59.999999999Z", "2025-12-31T23:59:59Z"),
        ("2025-11-22T02:34:07.9+02:00", "2025-11-22T00:34:07Z"),
        ("2025-11-21T19:04:07-05:30", "2025-11-22T00:34:07Z"),
        ("2025-01-01T00:30:00+01:00", "2024-12-31T23:30:00Z"),
        ("0001-01-01T00:00:01Z", "0001-01-01T00:00:01Z"),
    ],
)
def test_to_kube_time_valid(raw, expected):
    assert to_kube_time(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00.000000000Z",
        "0001-01-01T00:00:00.5Z",
        "garbage",
        "2025-11-22",
        "2025-11-22T00:34:07",  # no zone
        "2025-11-22T00:34:07.Z",  # empty fraction
        "2025-13-22T00:34:07Z",
        "2025-02-30T00:34:07Z",
        "2025-11-22T24:00:00Z",
        "2025-11-22T00:34:60Z",
        "2025-11-22T00:34:07+24:00",
        "0001-01-01T00:30:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:30:00-01:00",  # after year 9999 in UTC
        " 2025-11-22T00:34:07Z",
        "\uff12\uff10\uff12\uff15-11-22T00:34:07Z",  # fullwidth (non-ASCII) digits
        12345,
        ["2025-11-22T00:34:07Z"],
    ],
)
def test_to_kube_time_invalid(raw):
    assert to_kube_time(raw) is None


@given(st.text())
def test_to_kube_time_never_raises(text):
    result = to_kube_time(text)
    assert result is None or KUBE_TIME.match(result)


# --- §2.3 field mapping ------------------------------------------------------------


def test_running_sample_full_status():
    assert mirror_status(INSPECT_RUNNING) == {
        "name": "web",
        "namespace": "moby",
        "path": "sleep",
        "args": ["inf"],
        "image": IMAGE_ID,
        "labels": {"app": "web", "org.example.tier": "frontend"},
        "status": "running",
        "pid": 4242,
        "exitCode": 0,
        "createdAt": "2025-11-22T00:34:07Z",
        "startedAt": "2025-11-22T00:34:08Z",
        "ports": [
            {
                "name": "443/tcp",
                "bindings": [
                    {"hostIP": "0.0.0.0", "hostPort": "32768"},
                    {"hostIP": "::", "hostPort": "32768"},
                ],
            },
            {"name": "53/udp"},
            {
                "name": "80/tcp",
                "bindings": [
                    {"hostIP": "0.0.0.0", "hostPort": "8080"},
                    {"hostIP": "::", "hostPort": "8080"},
                ],
            },
        ],
    }


def test_does_not_mutate_input():
    before = copy.deepcopy(INSPECT_RUNNING)
    mirror_status(INSPECT_RUNNING)
    assert before == INSPECT_RUNNING


def test_created_container():
    inspect = inspect_with(
        Status="created",
        Running=False,
        Pid=0,
        StartedAt="0001-01-01T00:00:00Z",
        FinishedAt="0001-01-01T00:00:00Z",
    )
    status = mirror_status(inspect)
    assert status["status"] == "created"
    assert status["pid"] == 0
    assert status["exitCode"] == 0
    assert status["createdAt"] == "2025-11-22T00:34:07Z"
    assert "startedAt" not in status
    assert "finishedAt" not in status
    assert "error" not in status


def test_paused_container():
    assert mirror_status(inspect_with(Status="paused", Paused=True))["status"] == "paused"


def test_exited_container_keeps_started_at_and_has_error():
    inspect = inspect_with(
        Status="exited",
        Running=False,
        Pid=0,
        ExitCode=137,
        Error="OCI runtime exec failed",
        FinishedAt="2025-11-22T01:00:00.999999999Z",
    )
    status = mirror_status(inspect)
    assert status["status"] == "exited"
    assert status["pid"] == 0
    assert status["exitCode"] == 137
    assert status["error"] == "OCI runtime exec failed"
    assert status["startedAt"] == "2025-11-22T00:34:08Z"
    assert status["finishedAt"] == "2025-11-22T01:00:00Z"


@pytest.mark.parametrize(
    "docker_status",
    ["created", "running", "pausing", "paused", "restarting", "removing", "exited", "dead"],
)
def test_status_identity(docker_status):
    assert mirror_status(inspect_with(Status=docker_status))["status"] == docker_status


@pytest.mark.parametrize("docker_status", ["", "Running", "healthy", "unknown", None, 3])
def test_status_unknown_for_anything_else(docker_status):
    assert mirror_status(inspect_with(Status=docker_status))["status"] == "unknown"


def test_empty_error_is_omitted():
    assert "error" not in mirror_status(inspect_with(Error=""))


def test_exit_code_and_pid_int32():
    status = mirror_status(inspect_with(ExitCode=-1, Pid=2**31))
    assert status["exitCode"] == -1
    assert status["pid"] == -(2**31)  # wraps like Go's int32()


def test_args_omitted_when_empty_or_null():
    for args in ([], None):
        inspect = copy.deepcopy(INSPECT_RUNNING)
        inspect["Args"] = args
        assert "args" not in mirror_status(inspect)


@pytest.mark.parametrize("config", [None, {}, {"Labels": None}, {"Labels": {}}])
def test_labels_omitted(config):
    inspect = copy.deepcopy(INSPECT_RUNNING)
    inspect["Config"] = config
    assert "labels" not in mirror_status(inspect)


# --- §1.5 / §2.4 ports ---------------------------------------------------------------


def test_ports_sorted_bytewise():
    inspect = copy.deepcopy(INSPECT_RUNNING)
    inspect["NetworkSettings"]["Ports"] = {"80/tcp": None, "443/tcp": None, "8080/tcp": None}
    names = [p["name"] for p in mirror_status(inspect)["ports"]]
    assert names == ["443/tcp", "80/tcp", "8080/tcp"]


def test_dual_stack_bindings_order_independent():
    v4 = {"HostIp": "0.0.0.0", "HostPort": "8080"}
    v6 = {"HostIp": "::", "HostPort": "8080"}
    a = copy.deepcopy(INSPECT_RUNNING)
    b = copy.deepcopy(INSPECT_RUNNING)
    a["NetworkSettings"]["Ports"] = {"80/tcp": [v4, v6]}
    b["NetworkSettings"]["Ports"] = {"80/tcp": [v6, v4]}
    assert mirror_status(a)["ports"] == mirror_status(b)["ports"]
    assert mirror_status(a)["ports"][0]["bindings"][0] == {"hostIP": "0.0.0.0", "hostPort": "8080"}


@pytest.mark.parametrize("value", [None, []])
def test_unpublished_port_has_no_bindings_key(value):
    inspect = copy.deepcopy(INSPECT_RUNNING)
    inspect["NetworkSettings"]["Ports"] = {"80/tcp": value}
    assert mirror_status(inspect)["ports"] == [{"name": "80/tcp"}]


def test_binding_sort_uses_host_port_text():
    inspect = copy.deepcopy(INSPECT_RUNNING)
    inspect["NetworkSettings"]["Ports"] = {
        "80/tcp": [
            {"HostIp": "127.0.0.1", "HostPort": "9000"},
            {"HostIp": "127.0.0.1", "HostPort": "10000"},
        ]
    }
    ports = [b["hostPort"] for b in mirror_status(inspect)["ports"][0]["bindings"]]
    assert ports == ["10000", "9000"]  # lexicographic text, not numeric


@pytest.mark.parametrize(
    ("host_ip", "expected"),
    [
        ("::", "::"),
        ("0.0.0.0", "0.0.0.0"),
        ("127.0.0.1", "127.0.0.1"),
        ("0:0:0:0:0:0:0:0", "::"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
        ("", ""),  # deviation: upstream would say "invalid IP"
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_host_ip_canonical(host_ip, expected):
    inspect = copy.deepcopy(INSPECT_RUNNING)
    inspect["NetworkSettings"]["Ports"] = {"80/tcp": [{"HostIp": host_ip, "HostPort": "1"}]}
    assert mirror_status(inspect)["ports"][0]["bindings"] == [{"hostIP": expected, "hostPort": "1"}]


@pytest.mark.parametrize("network_settings", [None, {}, {"Ports": None}, {"Ports": {}}])
def test_ports_omitted(network_settings):
    inspect = copy.deepcopy(INSPECT_RUNNING)
    inspect["NetworkSettings"] = network_settings
    assert "ports" not in mirror_status(inspect)


# --- robustness ----------------------------------------------------------------------

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

_KEYS = ["Name", "Path", "Args", "Image", "Created", "State", "Config", "NetworkSettings"]
_STATE_KEYS = ["Status", "Pid", "ExitCode", "Error", "StartedAt", "FinishedAt"]


def _check_shape(status):
    for key in ("name", "namespace", "path", "image", "status"):
        assert isinstance(status[key], str)
    assert isinstance(status["pid"], int)
    assert isinstance(status["exitCode"], int)
    assert -(2**31) <= status["exitCode"] < 2**31
    for key in ("createdAt", "startedAt", "finishedAt"):
        if key in status:
            assert KUBE_TIME.match(status[key])
    for port in status.get("ports", []):
        assert isinstance(port["name"], str)
        for binding in port.get("bindings", []):
            assert isinstance(binding["hostIP"], str)
            assert isinstance(binding["hostPort"], str)


@settings(max_examples=300)
@given(
    st.fixed_dictionaries({}, optional={k: json_like for k in _KEYS})
    | st.dictionaries(st.sampled_from(_KEYS), json_like)
)
def test_garbage_top_level_never_raises(inspect):
    _check_shape(mirror_status(inspect))


@settings(max_examples=300)
@given(
    state=st.fixed_dictionaries({}, optional={k: json_like for k in _STATE_KEYS}),
    ports=json_like | st.dictionaries(st.text(max_size=8), st.lists(json_like, max_size=3)),
    labels=json_like,
)
def test_garbage_nested_never_raises(state, ports, labels):
    inspect = copy.deepcopy(INSPECT_RUNNING)
    inspect["State"] = state
    inspect["NetworkSettings"] = {"Ports": ports}
    inspect["Config"] = {"Labels": labels}
    _check_shape(mirror_status(inspect))


@pytest.mark.parametrize("inspect", [{}, None, [], "x", {"State": None, "Config": "x"}])
def test_degenerate_inspect(inspect):
    status = mirror_status(inspect)
    assert status == {
        "name": "",
        "namespace": "moby",
        "path": "",
        "image": "",
        "status": "unknown",
        "pid": 0,
        "exitCode": 0,
    }


# --- §1.6 conditions -----------------------------------------------------------------

T0 = "2025-11-22T00:00:00Z"
T1 = "2025-11-22T00:05:00Z"


def _by_type(conditions):
    return {c["type"]: c for c in conditions}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (
            "running",
            {
                "Running": ("True", "Running", "Container is running"),
                "Paused": ("False", "NotPaused", "Container is not paused"),
                "Restarting": ("False", "NotRestarting", "Container is not restarting"),
                "Dead": ("False", "NotDead", "Container is not dead"),
            },
        ),
        (
            "paused",
            {
                "Running": ("False", "NotRunning", "Container is not running"),
                "Paused": ("True", "Paused", "Container is paused"),
                "Restarting": ("False", "NotRestarting", "Container is not restarting"),
                "Dead": ("False", "NotDead", "Container is not dead"),
            },
        ),
        (
            "restarting",
            {
                "Running": ("False", "NotRunning", "Container is not running"),
                "Paused": ("False", "NotPaused", "Container is not paused"),
                "Restarting": ("True", "Restarting", "Container is restarting"),
                "Dead": ("False", "NotDead", "Container is not dead"),
            },
        ),
        (
            "dead",
            {
                "Running": ("False", "NotRunning", "Container is not running"),
                "Paused": ("False", "NotPaused", "Container is not paused"),
                "Restarting": ("False", "NotRestarting", "Container is not restarting"),
                "Dead": ("True", "Dead", "Container is dead"),
            },
        ),
        (
            "",
            {
                "Running": ("False", "NotRunning", "Container is not running"),
                "Paused": ("False", "NotPaused", "Container is not paused"),
                "Restarting": ("False", "NotRestarting", "Container is not restarting"),
                "Dead": ("False", "NotDead", "Container is not dead"),
            },
        ),
    ],
)
def test_conditions_table(status, expected):
    conditions, changed = compute_conditions(status, None, T0)
    assert [c["type"] for c in conditions] == list(CONDITION_TYPES)
    assert CONDITION_TYPES == ("Running", "Paused", "Restarting", "Dead", "OOMKilled")
    by_type = _by_type(conditions)
    for cond_type, (cond_status, reason, message) in expected.items():
        assert (
            by_type[cond_type]["status"],
            by_type[cond_type]["reason"],
            by_type[cond_type]["message"],
        ) == (cond_status, reason, message)
    assert by_type["OOMKilled"] == {
        "type": "OOMKilled",
        "status": "Unknown",
        "reason": "OOMKilled",
        "message": "Unable to tell if container is OOMKilled",
        "lastTransitionTime": T0,
    }
    assert all(c["lastTransitionTime"] == T0 for c in conditions)
    assert changed == conditions  # first computation: everything changed
    assert all("observedGeneration" not in c for c in conditions)


def test_conditions_unchanged_keep_transition_time_and_report_nothing():
    first, _ = compute_conditions("running", None, T0)
    second, changed = compute_conditions("running", first, T1)
    assert second == first
    assert changed == []


def test_conditions_transition_running_to_paused():
    first, _ = compute_conditions("running", None, T0)
    second, changed = compute_conditions("paused", first, T1)
    by_type = _by_type(second)
    assert by_type["Running"]["lastTransitionTime"] == T1
    assert by_type["Paused"]["lastTransitionTime"] == T1
    assert by_type["Restarting"]["lastTransitionTime"] == T0
    assert by_type["Dead"]["lastTransitionTime"] == T0
    assert by_type["OOMKilled"]["lastTransitionTime"] == T0
    assert [c["type"] for c in changed] == ["Running", "Paused"]


def test_conditions_reason_change_keeps_transition_time_but_is_changed():
    previous = [
        {
            "type": "Running",
            "status": "False",
            "reason": "Whatever",
            "message": "old",
            "lastTransitionTime": T0,
        }
    ]
    conditions, changed = compute_conditions("exited", previous, T1)
    running = _by_type(conditions)["Running"]
    assert running["lastTransitionTime"] == T0
    assert running["reason"] == "NotRunning"
    assert [c["type"] for c in changed] == [*CONDITION_TYPES]


def test_conditions_keep_foreign_types_and_tolerate_garbage():
    foreign = {
        "type": "Custom",
        "status": "True",
        "reason": "X",
        "message": "y",
        "lastTransitionTime": T0,
    }
    conditions, changed = compute_conditions("running", [None, "x", {"no": "type"}, foreign], T1)
    assert conditions[-1] == foreign
    assert [c["type"] for c in conditions[:5]] == list(CONDITION_TYPES)
    assert foreign not in changed


# --- comparable_status ---------------------------------------------------------------


def test_comparable_status_drops_controller_fields():
    computed = mirror_status(INSPECT_RUNNING)
    stored = {
        **computed,
        "conditions": compute_conditions("running", None, T0)[0],
        "lastAction": {"action": "start", "state": "Succeeded"},
    }
    assert comparable_status(stored) == comparable_status(computed) == computed
    assert "conditions" in stored  # input untouched
