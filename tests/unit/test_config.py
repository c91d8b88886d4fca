"""The option table (actors/service/config.py, actors/service/options.py): precedence,
conversions, one-line errors naming option and variable, help showing every default and variable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from actors.service import options
from actors.service.config import Config, build_run_parser, default_state_dir, load_config
from actors.service.options import OptionError, option, options_of


def load(argv: list[str], env: dict[str, str] | None = None) -> Config:
    return load_config(argv, env or {})


def error_of(capsys: pytest.CaptureFixture[str], argv: list[str], env: dict[str, str]) -> str:
    with pytest.raises(SystemExit) as caught:
        load(argv, env)
    assert caught.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_defaults_equal_the_field_defaults() -> None:
    config = load([], {"XDG_STATE_HOME": "/ignored-by-the-factory"})
    assert config == Config()
    assert config.max_active_containers == 128
    assert config.log_format == "text"


def test_command_line_wins_over_environment_over_default() -> None:
    env = {"DOCKMIRROR_MAX_ACTIVE_CONTAINERS": "7", "DOCKMIRROR_IDLE_TIMEOUT": "2.5"}
    config = load(["--max-active-containers", "9"], env)
    assert config.max_active_containers == 9  # command line
    assert config.idle_timeout == 2.5  # environment
    assert config.restart_budget == 10  # default


def test_every_field_is_an_option_with_a_variable_in_the_help() -> None:
    text = build_run_parser().format_help()
    found = options_of(Config)
    assert [o.name for o in found] == [f.name for f in dataclasses.fields(Config)]
    for opt in found:
        assert opt.flag in text
        assert opt.env_var in " ".join(text.split())  # the help may wrap inside a name
        assert opt.env_var == "DOCKMIRROR_" + opt.name.upper()
    assert "(default: 128; env DOCKMIRROR_MAX_ACTIVE_CONTAINERS)" in " ".join(text.split())


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (
            ["--max-active-containers", "abc"],
            {},
            "--max-active-containers (env "
            "DOCKMIRROR_MAX_ACTIVE_CONTAINERS): 'abc' is not an integer",
        ),
        (
            [],
            {"DOCKMIRROR_MAX_ACTIVE_CONTAINERS": "-3"},
            "DOCKMIRROR_MAX_ACTIVE_CONTAINERS "
            "(option --max-active-containers): '-3' is below the minimum 1",
        ),
        ([], {"DOCKMIRROR_IDLE_TIMEOUT": "soon"}, "'soon' is not a number"),
        ([], {"DOCKMIRROR_IDLE_TIMEOUT": "nan"}, "'nan' is not a finite number"),
        (["--log-format", "xml"], {}, "'xml' is not one of text, json"),
        ([], {"DOCKMIRROR_LOG_LEVEL": "loud"}, "'LOUD' is not one of DEBUG, INFO"),
        (["--webhook-port", "70000"], {}, "above the maximum 65535"),
        ([], {"DOCKMIRROR_TRACE_BACKUPS": ""}, "'' is not an integer"),
    ],
)
def test_invalid_values_give_one_line_naming_option_and_variable(
    capsys: pytest.CaptureFixture[str], argv: list[str], env: dict[str, str], expected: str
) -> None:
    line = error_of(capsys, argv, env)
    assert line.startswith("dockmirror: error: invalid value for ")
    assert expected in line


def test_unknown_option_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    line = error_of(capsys, ["--no-such-option"], {})
    assert "unrecognized arguments: --no-such-option" in line


def test_case_is_normalized_for_choices() -> None:
    config = load([], {"DOCKMIRROR_LOG_LEVEL": "debug", "DOCKMIRROR_LOG_FORMAT": "JSON"})
    assert (config.log_level, config.log_format) == ("DEBUG", "json")


def test_empty_variable_of_an_optional_setting_means_unset() -> None:
    assert load([], {"DOCKMIRROR_DOCKER_HOST": "", "DOCKMIRROR_KUBECONFIG": ""}).docker_host is None
    assert load([], {"DOCKMIRROR_DOCKER_HOST": "tcp://h:1"}).docker_host == "tcp://h:1"


def test_paths_and_journal_location(tmp_path: Path) -> None:
    config = load(["--state-dir", str(tmp_path)])
    assert config.state_dir == tmp_path
    assert config.journal_file() == tmp_path / "trace.jsonl"
    assert load(["--trace-file", "-"]).journal_file() is None
    assert load([], {"DOCKMIRROR_TRACE_FILE": "/x/t.jsonl"}).journal_file() == Path("/x/t.jsonl")
    assert default_state_dir({"XDG_STATE_HOME": "/s"}) == Path("/s/dockmirror")
    assert default_state_dir({}) == Path.home() / ".local/state/dockmirror"


@dataclasses.dataclass
class Demo:
    """A table with the kinds other engineers will add (booleans, optional paths)."""

    leader_elect: bool = option(True, "take a Lease")
    skip_crd_install: bool = option(False, "do not install CRDs")
    ca_file: Path | None = option(None, "a file")
    ratio: float = option(0.5, "a ratio", minimum=0, maximum=1)


def parse_demo(argv: list[str], env: dict[str, str]) -> Demo:
    parser = options.OneLineParser(prog="demo")
    options.add_options(parser, options_of(Demo))
    return options.parse_into(Demo, parser, argv, env)


@pytest.mark.parametrize(
    ("word", "value"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_boolean_words_in_the_environment(word: str, value: bool) -> None:
    assert parse_demo([], {"DOCKMIRROR_SKIP_CRD_INSTALL": word}).skip_crd_install is value


def test_boolean_flags_and_negations_win_over_the_environment() -> None:
    env = {"DOCKMIRROR_LEADER_ELECT": "yes", "DOCKMIRROR_SKIP_CRD_INSTALL": "no"}
    demo = parse_demo(["--no-leader-elect", "--skip-crd-install"], env)
    assert (demo.leader_elect, demo.skip_crd_install) == (False, True)
    assert parse_demo([], {}) == Demo()


def test_bad_boolean_and_optional_path(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_demo([], {"DOCKMIRROR_LEADER_ELECT": "maybe"})
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "DOCKMIRROR_LEADER_ELECT (option --leader-elect): 'maybe' is not a boolean" in err
    assert parse_demo(["--ca-file", "~/ca.pem"], {}).ca_file == Path.home() / "ca.pem"
    assert parse_demo([], {"DOCKMIRROR_CA_FILE": ""}).ca_file is None


def test_boolean_help_shows_both_spellings_and_default() -> None:
    parser = options.OneLineParser(prog="demo")
    options.add_options(parser, options_of(Demo))
    text = " ".join(parser.format_help().split())
    assert "--leader-elect, --no-leader-elect" in text
    assert "take a Lease (default: on; env DOCKMIRROR_LEADER_ELECT)" in text
    assert "(default: none; env DOCKMIRROR_CA_FILE)" in text


def test_unsupported_field_type_is_refused_at_definition() -> None:
    @dataclasses.dataclass
    class Bad:
        items: list = option(default_factory=list, help="x")  # type: ignore[type-arg]

    with pytest.raises(TypeError, match="unsupported type"):
        options_of(Bad)


def test_convert_reports_reason_only() -> None:
    (ratio,) = [o for o in options_of(Demo) if o.name == "ratio"]
    with pytest.raises(OptionError, match=r"^'2' is above the maximum 1$"):
        ratio.convert("2")
    assert ratio.convert(" 0.25 ") == 0.25
