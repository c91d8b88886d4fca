"""The dockmirror command: dispatch, --version, printing subcommands, JSON logs."""

from __future__ import annotations

import io
import json
import logging
import sys
import types
from typing import Any

import pytest
import yaml

from actors.domain.app_mode import app_crd
from actors.domain.crds import all_crds
from actors.infra.logsetup import JsonFormatter, configure_logging
from actors.service import cli
from actors.service.config import Config


def run_cli(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, list[Config], str]:
    seen: list[Config] = []
    out = io.StringIO()

    def run(config: Config) -> int:
        seen.append(config)
        return 7

    code = cli.main(argv, run=run, env=env or {}, out=out)
    return code, seen, out.getvalue()


@pytest.fixture(autouse=True)
def keep_logging() -> Any:
    """cli.main configures the root logger; restore it for the other tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_no_subcommand_and_run_both_run_the_service() -> None:
    code, seen, _ = run_cli(["--namespace", "a"])
    assert code == 7 and seen[0].namespace == "a"
    code, seen, _ = run_cli(["run", "--namespace", "b"], {"DOCKMIRROR_IDLE_TIMEOUT": "4"})
    assert code == 7 and (seen[0].namespace, seen[0].idle_timeout) == ("b", 4.0)


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        run_cli(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"dockmirror {cli.package_version()}"
    assert cli.package_version()[0].isdigit()  # installed (editable) in the test venv


def test_help_lists_subcommands_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_cli(["--help"])
    text = capsys.readouterr().out
    for word in ("dockmirror crds", "dockmirror rbac", "dockmirror policy", "--version"):
        assert word in text
    assert "(default: 128; env DOCKMIRROR_MAX_ACTIVE_CONTAINERS)" in " ".join(text.split())


def test_crds_prints_every_crd_as_yaml_documents() -> None:
    code, seen, out = run_cli(["crds"])
    assert code == 0 and not seen
    assert out.startswith("---\n")
    assert list(yaml.safe_load_all(out)) == all_crds()
    code, _, out = run_cli(["crds", "--app"])
    assert code == 0
    assert list(yaml.safe_load_all(out)) == [*all_crds(), app_crd()]


def fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **functions: Any) -> None:
    module = types.ModuleType(name)
    for key, value in functions.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)


def test_rbac_passes_every_argument_and_prints_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def rbac_manifests(**kwargs: Any) -> list[dict[str, Any]]:
        calls.append(kwargs)
        return [{"kind": "Role", "metadata": {"name": "r"}}, {"kind": "RoleBinding"}]

    fake_module(monkeypatch, "actors.domain.rbac", rbac_manifests=rbac_manifests)
    code, _, out = run_cli(
        [
            "rbac",
            "--namespace",
            "ns1",
            "--service-account",
            "sys/dm",
            "--admission",
            "webhook",
            "--skip-crd-install",
            "--app",
        ]
    )
    assert code == 0
    assert calls == [
        dict(
            namespace="ns1",
            user=None,
            service_account="sys/dm",
            admission="webhook",
            skip_crd_install=True,
            app=True,
        )
    ]
    assert list(yaml.safe_load_all(out)) == [
        {"kind": "Role", "metadata": {"name": "r"}},
        {"kind": "RoleBinding"},
    ]
    code, _, _ = run_cli(["rbac", "--user", "alice"])
    assert code == 0
    assert calls[-1] == dict(
        namespace="rancher-desktop",
        user="alice",
        service_account=None,
        admission="policy",
        skip_crd_install=False,
        app=False,
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["rbac", "--namespace", "n"], "one of the arguments --user --service-account is required"),
        (["rbac", "--user", "a", "--service-account", "x/y"], "not allowed with argument"),
        (["rbac", "--service-account", "nodash"], "expected NAMESPACE/NAME, got 'nodash'"),
        (["rbac", "--user", "a", "--admission", "auto"], "invalid choice: 'auto'"),
    ],
)
def test_rbac_bad_arguments_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        run_cli(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("dockmirror rbac: error: ") and expected in err[0]


def test_policy_prints_what_the_module_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_module(
        monkeypatch,
        "actors.domain.admission_policy",
        policy_manifests=lambda namespace: [{"kind": "ValidatingAdmissionPolicy", "ns": namespace}],
    )
    code, _, out = run_cli(["policy", "--namespace", "n2"])
    assert code == 0
    assert list(yaml.safe_load_all(out)) == [{"kind": "ValidatingAdmissionPolicy", "ns": "n2"}]


def test_a_value_error_of_the_builder_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def policy_manifests(namespace: str) -> list[dict[str, Any]]:
        raise ValueError(f"invalid namespace {namespace!r}")

    fake_module(monkeypatch, "actors.domain.admission_policy", policy_manifests=policy_manifests)
    code, _, out = run_cli(["policy", "--namespace", "Bad_NS"])
    assert (code, out) == (2, "")
    assert capsys.readouterr().err == "dockmirror policy: error: invalid namespace 'Bad_NS'\n"


def test_missing_module_is_one_line_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "actors.domain.rbac", None)  # import fails like a missing file
    with pytest.raises(SystemExit) as caught:
        run_cli(["rbac", "--user", "u"])
    assert caught.value.code == 1
    assert capsys.readouterr().err == (
        "dockmirror rbac: not available in this build (actors.domain.rbac is missing)\n"
    )


def test_json_log_lines_carry_time_level_logger_message_and_exception() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    log = logging.getLogger("dockmirror.test")
    log.debug("hidden")
    log.info("hello %s\nworld", "there")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "hello there\nworld"
    assert (first["level"], first["logger"]) == ("INFO", "dockmirror.test")
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert "exception" not in first
    assert second["level"] == "ERROR" and "RuntimeError: boom" in second["exception"]


def test_json_formatter_survives_odd_arguments() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "value %s", (object(),), None)
    assert json.loads(JsonFormatter().format(record))["message"].startswith("value <object")


def test_text_format_and_level_from_the_options() -> None:
    stream = io.StringIO()
    configure_logging("warning", "text", stream)
    logging.getLogger("dockmirror.t").info("quiet")
    logging.getLogger("dockmirror.t").warning("loud")
    assert stream.getvalue().endswith(" WARNING dockmirror.t: loud\n")
    with pytest.raises(ValueError):
        configure_logging("INFO", "xml", stream)
