"""App mode's pure decisions (actors/domain/app_mode.py), docs/contract.md §3.1, §3.5."""

from __future__ import annotations

from typing import Any

import pytest

from actors.domain.app_mode import (
    CLEANUP_KINDS,
    AppView,
    Condition,
    Decision,
    Target,
    already_written,
    app_crd,
    cleanup_error,
    decide,
    needs_cleanup,
    read_app,
    readiness_condition,
    set_condition,
    strip_patch,
)
from actors.domain.names import (
    ACTION_ANNOTATION,
    APP_CRD_NAME,
    APP_GROUP,
    APP_VERSION,
    APPS,
    CONTAINER_NAMESPACES,
    CONTAINERS,
    FINALIZER,
    IMAGES,
    VOLUMES,
)

NS = "rancher-desktop"
STOPPED = Condition("False", "Stopped", "Container engine stopped")
NOT_APPLICABLE = Condition(
    "True", "NotApplicable", "Engine mirroring is only supported with the moby backend"
)


def app(
    *,
    running: str | None = "True",
    namespace: Any = NS,
    engine: Any = "moby",
    generation: Any = 3,
    ready: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"running": True}
    if namespace is not None:
        spec["namespace"] = namespace
    if engine is not None:
        spec["containerEngine"] = {"name": engine}
    conditions = []
    if running is not None:
        conditions.append({"type": "Running", "status": running, "reason": "R", "message": ""})
    if ready is not None:
        conditions.append({"type": "ContainerEngineReady", **ready})
    return {
        "metadata": {"name": "app", "generation": generation},
        "spec": spec,
        "status": {"conditions": conditions},
    }


# --- read_app --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (app(), AppView(NS, True, "moby", 3)),
        (app(running="False"), AppView(NS, False, "moby", 3)),
        (app(running="Unknown"), AppView(NS, False, "moby", 3)),
        (app(running=None), AppView(NS, False, "moby", 3)),
        (app(namespace=None), AppView("default", True, "moby", 3)),  # upstream's default
        (app(namespace=""), AppView("default", True, "moby", 3)),
        (app(namespace=7), AppView("default", True, "moby", 3)),
        (app(engine=None), AppView(NS, True, "moby", 3)),  # the CRD's default
        (app(engine="containerd"), AppView(NS, True, "containerd", 3)),
        (app(generation="x"), AppView(NS, True, "moby", 0)),
        (app(generation=True), AppView(NS, True, "moby", 0)),
        ({}, AppView("default", False, "moby", 0)),
        ({"spec": [], "status": "x", "metadata": None}, AppView("default", False, "moby", 0)),
        (
            {"status": {"conditions": ["x", {"type": "Running", "status": "True"}]}},
            AppView("default", True, "moby", 0),
        ),
    ],
)
def test_read_app_accepts_any_shape(obj: dict[str, Any], expected: AppView) -> None:
    assert read_app(obj) == expected


def test_read_app_reads_container_engine_ready() -> None:
    view = read_app(
        app(
            ready={
                "status": "False",
                "reason": "Stopped",
                "message": "m",
                "observedGeneration": 2,
            }
        )
    )
    assert view.engine_ready == Condition("False", "Stopped", "m", 2)


# --- decide ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("running", "engine", "namespace", "expected"),
    [
        (True, "moby", NS, Decision(Target.RUN, NS)),
        (True, "containerd", NS, Decision(Target.CLEAN, NS, NOT_APPLICABLE)),
        (True, "something-new", NS, Decision(Target.CLEAN, NS, NOT_APPLICABLE)),
        (False, "moby", NS, Decision(Target.CLEAN, NS, STOPPED)),
        (False, "containerd", NS, Decision(Target.CLEAN, NS, STOPPED)),
        (True, "moby", "elsewhere", Decision(Target.MOVED, "elsewhere")),
        (False, "moby", "elsewhere", Decision(Target.MOVED, "elsewhere")),
    ],
)
def test_decide(running: bool, engine: str, namespace: str, expected: Decision) -> None:
    assert decide(AppView(namespace, running, engine, 1), NS) == expected


# --- needs_cleanup ---------------------------------------------------------------------------

CLEAN_STOPPED = Decision(Target.CLEAN, NS, STOPPED)
MOVED = Decision(Target.MOVED, "elsewhere")


@pytest.mark.parametrize(
    ("engine_ready", "decision", "dirty", "cleaned", "expected"),
    [
        # Mirrors may exist: always.
        (Condition("False", "Stopped", "", 3), CLEAN_STOPPED, True, 3, True),
        # The cleanup of this generation finished: only the condition is left to write.
        (None, CLEAN_STOPPED, False, 3, False),
        # Upstream's "already clean": the terminal condition for this generation.
        (Condition("False", "Stopped", "", 3), CLEAN_STOPPED, False, None, False),
        (Condition("False", "Stopped", "", 4), CLEAN_STOPPED, False, None, False),
        # A newer generation, another reason or status, or no condition: check again.
        (Condition("False", "Stopped", "", 2), CLEAN_STOPPED, False, None, True),
        (Condition("True", "Connected", "", 3), CLEAN_STOPPED, False, None, True),
        (Condition("True", "Stopped", "", 3), CLEAN_STOPPED, False, None, True),
        (None, CLEAN_STOPPED, False, None, True),
        (None, CLEAN_STOPPED, False, 2, True),
        # Moved: once, unless done for this generation.
        (None, MOVED, False, None, True),
        (None, MOVED, False, 3, False),
    ],
)
def test_needs_cleanup(
    engine_ready: Condition | None,
    decision: Decision,
    dirty: bool,
    cleaned: int | None,
    expected: bool,
) -> None:
    view = AppView(NS, False, "moby", 3, engine_ready)
    assert (
        needs_cleanup(view, decision, mirrored_since_cleanup=dirty, cleaned_generation=cleaned)
        is expected
    )


def test_already_written_compares_the_message_and_the_generation() -> None:
    wanted = Condition("True", "Connected", "Container engine synced")
    view = AppView(
        NS, True, "moby", 3, Condition("True", "Connected", "Container engine synced", 3)
    )
    assert already_written(view, wanted)
    assert not already_written(view, Condition("True", "Connected", "other"))
    old = AppView(NS, True, "moby", 4, view.engine_ready)
    assert not already_written(old, wanted)
    assert not already_written(AppView(NS, True, "moby", 3), wanted)


# --- readiness_condition ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ready", "reason", "message", "expected"),
    [
        (
            True,
            "Connected",
            "Container engine synced",
            Condition("True", "Connected", "Container engine synced"),
        ),
        (
            False,
            "ConnectFailed",
            "failed to ping Docker: refused",
            Condition("False", "ConnectFailed", "failed to ping Docker: refused"),
        ),
        (False, "ConnectFailed", "", Condition("False", "ConnectFailed", "ConnectFailed")),
        (False, "Syncing", "Initial sync in progress", None),  # not an App reason
        (False, "Stopped", "Container engine stopped", None),  # only after a cleanup
        (True, "ConnectFailed", "x", None),
        (False, "Connected", "x", None),
    ],
)
def test_readiness_condition(
    ready: bool, reason: str, message: str, expected: Condition | None
) -> None:
    assert readiness_condition(ready, reason, message) == expected


# --- set_condition ---------------------------------------------------------------------------

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"
RUNNING = {
    "type": "Running",
    "status": "True",
    "reason": "R",
    "message": "",
    "lastTransitionTime": T0,
}


def ready(status: str, reason: str, message: str, generation: int, at: str = T0) -> dict[str, Any]:
    return {
        "type": "ContainerEngineReady",
        "status": status,
        "observedGeneration": generation,
        "lastTransitionTime": at,
        "reason": reason,
        "message": message,
    }


def test_set_condition_adds_a_new_condition_after_the_others() -> None:
    result = set_condition(
        [RUNNING], "ContainerEngineReady", Condition("True", "Connected", "m"), generation=2, now=T1
    )
    assert result == [RUNNING, ready("True", "Connected", "m", 2, T1)]


def test_set_condition_keeps_the_transition_time_when_the_status_stays() -> None:
    current = [RUNNING, ready("False", "ConnectFailed", "a", 1)]
    result = set_condition(
        current, "ContainerEngineReady", Condition("False", "Stopped", "b"), generation=2, now=T1
    )
    assert result == [RUNNING, ready("False", "Stopped", "b", 2, T0)]


def test_set_condition_moves_the_transition_time_when_the_status_changes() -> None:
    current = [ready("False", "Stopped", "b", 2), RUNNING]
    result = set_condition(
        current, "ContainerEngineReady", Condition("True", "Connected", "c"), generation=2, now=T1
    )
    assert result == [ready("True", "Connected", "c", 2, T1), RUNNING]


def test_set_condition_returns_none_when_nothing_changes() -> None:
    current = [RUNNING, ready("True", "Connected", "c", 2)]
    wanted = Condition("True", "Connected", "c")
    assert set_condition(current, "ContainerEngineReady", wanted, generation=2, now=T1) is None
    # A new generation alone is a change (upstream re-stamps observedGeneration).
    assert set_condition(current, "ContainerEngineReady", wanted, generation=3, now=T1) == [
        RUNNING,
        ready("True", "Connected", "c", 3),
    ]


def test_set_condition_cuts_a_long_message() -> None:
    result = set_condition(
        [],
        "ContainerEngineReady",
        Condition("False", "ConnectFailed", "x" * 40000),
        generation=1,
        now=T1,
    )
    assert result is not None and len(result[0]["message"]) == 32768


# --- strip_patch, cleanup_error ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("plural", "meta", "expected"),
    [
        (CONTAINERS, {"finalizers": [FINALIZER]}, {"finalizers": None}),
        (IMAGES, {"finalizers": ["other/x", FINALIZER]}, {"finalizers": ["other/x"]}),
        (VOLUMES, {"finalizers": ["other/x"]}, None),
        (CONTAINER_NAMESPACES, {}, None),
        (CONTAINERS, {"finalizers": "bogus"}, None),
        (
            CONTAINERS,
            {"finalizers": [FINALIZER], "annotations": {ACTION_ANNOTATION: "bogus", "k": "v"}},
            {"finalizers": None, "annotations": {ACTION_ANNOTATION: None}},
        ),
        # Only Containers have the action annotation.
        (
            IMAGES,
            {"finalizers": [FINALIZER], "annotations": {ACTION_ANNOTATION: "x"}},
            {"finalizers": None},
        ),
    ],
)
def test_strip_patch(plural: str, meta: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert strip_patch(plural, {"metadata": meta}) == expected


def test_cleanup_error_names_the_first_failures() -> None:
    assert cleanup_error(["a"]) == "a"
    assert cleanup_error([str(i) for i in range(8)]) == "0; 1; 2; 3; 4; and 3 more"


def test_cleanup_kinds_in_upstream_order() -> None:
    assert CLEANUP_KINDS == (CONTAINERS, VOLUMES, IMAGES, CONTAINER_NAMESPACES)


# --- the App CRD -----------------------------------------------------------------------------


def test_app_crd_matches_the_contract_names() -> None:
    crd = app_crd()
    assert crd["metadata"]["name"] == APP_CRD_NAME
    spec = crd["spec"]
    assert (spec["group"], spec["scope"], spec["names"]["plural"]) == (APP_GROUP, "Cluster", APPS)
    (version,) = spec["versions"]
    assert version["name"] == APP_VERSION and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    props = version["schema"]["openAPIV3Schema"]["properties"]
    app_spec = props["spec"]["properties"]
    assert app_spec["namespace"]["default"] == "default"
    assert app_spec["containerEngine"]["properties"]["name"]["enum"] == ["moby", "containerd"]
    conditions = props["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
