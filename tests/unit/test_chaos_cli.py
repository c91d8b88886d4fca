"""scripts/chaos command line (no devenv needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scripts.chaos import parse_args
from scripts.chaoslib.campaigns import FULL, QUICK, scaled


def test_only_selects_campaigns_and_rejects_unknown() -> None:
    args = parse_args(["--quick", "--only", "sigkill,bad-input"])
    assert args.quick and args.names == ["sigkill", "bad-input"]
    assert parse_args([]).names == [
        "sigkill",
        "actor-crash",
        "engine",
        "races",
        "soak",
        "flaky",
        "bad-input",
    ]
    with pytest.raises(SystemExit):
        parse_args(["--only", "nope"])


def test_self_test_flag_and_its_exclusions() -> None:
    assert parse_args(["--self-test"]).self_test
    with pytest.raises(SystemExit):
        parse_args(["--self-test", "--only", "sigkill"])


def test_flaky_is_in_quick_and_full_with_one_hang() -> None:
    for sizes in (QUICK, FULL):
        assert sizes["flaky"].hang >= 15 and sizes["flaky"].containers >= 10
    assert scaled(QUICK["flaky"], 0.1).hang == QUICK["flaky"].hang
    # Every campaign of the CLI has sizes, except bad-input (its catalogue is fixed).
    assert set(QUICK) == set(FULL) == set(parse_args([]).names) - {"bad-input"}


def test_full_mode_meets_the_issue_sizes() -> None:
    assert FULL["sigkill"].kills >= 100 and FULL["sigkill"].containers == 30
    assert FULL["soak"].budget == 10_000 and FULL["soak"].containers == 50
    assert QUICK["soak"].budget < FULL["soak"].budget


def test_scaled_keeps_minimums() -> None:
    small = scaled(FULL["sigkill"], 0.001)
    assert small.kills == 1 and small.containers == 3


def test_help_runs() -> None:
    out = subprocess.run(
        [sys.executable, "scripts/chaos.py", "--help"], capture_output=True, text=True, check=True
    )
    assert "--quick" in out.stdout and "--json" in out.stdout and "--self-test" in out.stdout
