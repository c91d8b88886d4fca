"""actors/infra/faults.py: DOCKMIRROR_FAULTS parsing, flaky port faults and planted bugs."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.infra import faults

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    faults.configure("")
    faults.configure_bugs("")


def test_unset_everything_is_off() -> None:
    faults.configure("")
    assert faults.flaky("kube.request") is None
    assert faults.flaky("docker.call") is None
    assert faults.bug("double_restart") is False
    faults.hit("action.after_docker")  # nothing happens


def test_port_points_are_known() -> None:
    assert {"kube.request", "docker.call"} <= set(faults.POINTS)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("kube.request=flaky:0", "in (0, 1]"),
        ("kube.request=flaky:1.5", "in (0, 1]"),
        ("kube.request=flaky:-0.1", "in (0, 1]"),
        ("kube.request=flaky:nan", "in (0, 1]"),
        ("kube.request=flaky:lots", "in (0, 1]"),
        ("kube.request=flaky:", "in (0, 1]"),
        ("kube.request=flaky:0.1@3", "flaky takes no @N"),
        ("kube.requests=flaky:0.1", "unknown point 'kube.requests'"),
        ("docker.call=sometimes", "unknown mode 'sometimes'"),
        ("action.after_docker=kill@x", "@N needs an integer"),
        ("docker.call=flaky:0.1,docker.call=flaky:0.2", "configured twice"),
    ],
)
def test_bad_specs_get_a_clear_error(spec: str, needle: str) -> None:
    with pytest.raises(ValueError, match="DOCKMIRROR_FAULTS") as err:
        faults.configure(spec)
    assert needle in str(err.value)


def test_flaky_parses_alongside_kill_and_raise() -> None:
    rules, flaky_p = faults.parse(
        "kube.request=flaky:0.05, docker.call=flaky:1, container.on_receive=raise@4"
    )
    assert flaky_p == {"kube.request": 0.05, "docker.call": 1.0}
    assert rules["container.on_receive"].mode == "raise"
    assert rules["container.on_receive"].nth == 4


def test_flaky_is_deterministic_with_a_seeded_rng() -> None:
    def run(seed: int) -> list[str | None]:
        faults.configure("docker.call=flaky:0.3", rng=random.Random(seed))
        return [faults.flaky("docker.call") for _ in range(200)]

    first = run(7)
    assert first == run(7)
    assert first != run(8)


def test_flaky_rate_and_kinds() -> None:
    faults.configure("kube.request=flaky:0.1", rng=random.Random(1))
    answers = [faults.flaky("kube.request") for _ in range(5000)]
    fired = [a for a in answers if a is not None]
    # Binomial(5000, 0.1): mean 500, sd ~21; +-100 is far outside chance.
    assert 400 <= len(fired) <= 600
    assert set(fired) == set(faults.FLAKY_KINDS)
    assert sum(faults.flaky_counts["kube.request"].values()) == len(fired)
    # Another point is not affected.
    assert faults.flaky("docker.call") is None


def test_flaky_probability_one_always_fails() -> None:
    faults.configure("docker.call=flaky:1", rng=random.Random(3))
    assert all(faults.flaky("docker.call") in faults.FLAKY_KINDS for _ in range(50))
    assert Counter(faults.flaky_counts["docker.call"]).total() == 50


def test_bug_names_are_validated() -> None:
    with pytest.raises(ValueError, match="DOCKMIRROR_BUGS: unknown bug"):
        faults.configure_bugs("double_restart,drop_everything")
    with pytest.raises(ValueError, match="unknown bug 'typo'"):
        faults.bug("typo")


def test_bug_true_only_for_the_named_bugs_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    faults.configure_bugs(" drop_last_action , wrong_status ")
    with caplog.at_level("WARNING", logger="dockmirror.faults"):
        assert faults.bug("drop_last_action") is True
        assert faults.bug("drop_last_action") is True
        assert faults.bug("wrong_status") is True
        assert faults.bug("double_restart") is False
        assert faults.bug("leave_annotation") is False
    fired = [r.getMessage() for r in caplog.records]
    assert fired == ["planted bug fired: drop_last_action", "planted bug fired: wrong_status"]


def test_environment_variables_are_read_and_validated_at_import() -> None:
    code = "from actors.infra import faults; print(faults.bug('leave_annotation'), faults._flaky)"
    ok = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={
            "DOCKMIRROR_BUGS": "leave_annotation",
            "DOCKMIRROR_FAULTS": "docker.call=flaky:0.25",
            "DOCKMIRROR_FAULTS_SEED": "5",
            "PYTHONPATH": ".",
        },
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "True {'docker.call': 0.25}"
    bad = subprocess.run(
        [sys.executable, "-c", "import actors.infra.faults"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"DOCKMIRROR_BUGS": "nope", "PYTHONPATH": "."},
    )
    assert bad.returncode != 0 and "DOCKMIRROR_BUGS: unknown bug(s) ['nope']" in bad.stderr
