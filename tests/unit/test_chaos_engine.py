"""The Docker engine a chaos run attacks: ``scripts/chaos --engine NAME`` selects an
extra engine of scripts/devenv, and every stop, start, restart, SIGSTOP and SIGCONT of
dockerd acts on the selected engine only. Driven by fakes (no devenv, no engine)."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

import scripts.chaos as chaos
from scripts.chaoslib import campaigns
from scripts.chaoslib.campaigns import hang_engine
from scripts.chaoslib.harness import DockerEngine
from tests.support.wait import wait_for


# --- the engine under attack ---------------------------------------------------------------
class Devenv:
    """Records scripts/devenv commands; answers engine-env like the real script."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args: str) -> str:
        self.calls.append(args)
        if args[0] == "engine-env":
            return f"export DOCKER_HOST=unix://{self.root}/.devenv/engines/{args[1]}/docker.sock\n"
        return ""


def test_an_extra_engine_is_started_and_only_it_is_stopped_and_restarted(tmp_path: Path) -> None:
    devenv = Devenv(tmp_path)
    engine = DockerEngine(tmp_path, "chaos", "unix:///var/run/docker.sock", devenv=devenv)
    host = engine.prepare()
    assert host == f"unix://{tmp_path}/.devenv/engines/chaos/docker.sock"
    assert engine.docker_host == host and engine.owned()
    engine.stop()
    engine.start()
    engine.restart()
    assert devenv.calls == [
        ("engine-up", "chaos"),
        ("engine-env", "chaos"),
        ("engine-down", "chaos"),
        ("engine-up", "chaos"),
        ("engine-down", "chaos"),
        ("engine-up", "chaos"),
    ]
    assert engine.state_dir == tmp_path / ".devenv" / "engines" / "chaos"


def test_the_main_engine_is_the_default_and_restarted_only_when_devenv_started_it(
    tmp_path: Path,
) -> None:
    devenv = Devenv(tmp_path)
    engine = DockerEngine(tmp_path, None, "unix:///var/run/docker.sock", devenv=devenv)
    assert engine.prepare() == "unix:///var/run/docker.sock" and devenv.calls == []
    assert not engine.owned()  # no .devenv/docker.owner
    (tmp_path / ".devenv").mkdir()
    (tmp_path / ".devenv" / "docker.owner").write_text("external\n")
    assert not engine.owned()
    (tmp_path / ".devenv" / "docker.owner").write_text("devenv\n")
    assert engine.owned()
    engine.restart()
    assert devenv.calls == [("stop-docker",), ("start-docker",)]


def test_a_bad_engine_name_is_refused() -> None:
    with pytest.raises(ValueError):
        DockerEngine(Path("/nowhere"), "Bad_Name")
    assert chaos.parse_args(["--engine", "chaos"]).engine == "chaos"
    assert chaos.parse_args([]).engine is None
    with pytest.raises(SystemExit):
        chaos.parse_args(["--engine", "../x"])


def _exec_done(proc: subprocess.Popen[bytes], comm: str) -> subprocess.Popen[bytes]:
    """``proc`` once it runs ``comm`` (just after the fork, /proc still shows python)."""
    wait_for(
        lambda: Path(f"/proc/{proc.pid}/comm").read_text().strip() == comm,
        timeout=10,
        interval=0.01,
        message=f"pid {proc.pid} to exec {comm}",
    )
    return proc


def _fake_dockerd(tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """A process whose comm is ``dockerd`` (a shell started through a link of that name)."""
    link = tmp_path / "dockerd"
    link.symlink_to(shutil.which("sh") or "/bin/sh")
    proc = subprocess.Popen([str(link), "-c", "sleep 30; true", "dockerd", *args])
    return _exec_done(proc, "dockerd")


def test_dockerd_pid_signals_only_the_selected_engines_dockerd(tmp_path: Path) -> None:
    engine = DockerEngine(tmp_path, "chaos")
    with pytest.raises(RuntimeError, match="no running dockerd"):
        engine.dockerd_pid()
    engine.state_dir.mkdir(parents=True)
    pidfile = engine.state_dir / "dockerd.pid"
    stranger = _exec_done(subprocess.Popen(["sleep", "30"]), "sleep")
    other = _fake_dockerd(tmp_path, "--data-root", str(tmp_path / "elsewhere"))
    (tmp_path / "dockerd").unlink()
    ours = _fake_dockerd(tmp_path, "--data-root", str(engine.state_dir / "data"))
    try:
        pidfile.write_text(f"{stranger.pid}\n")
        with pytest.raises(RuntimeError, match="not dockerd"):
            engine.dockerd_pid()
        pidfile.write_text(f"{other.pid}\n")
        with pytest.raises(RuntimeError, match="not the one of extra engine 'chaos'"):
            engine.dockerd_pid()
        pidfile.write_text(f"{ours.pid}\n")
        assert engine.dockerd_pid() == ours.pid
    finally:
        for proc in (stranger, other, ours):
            proc.kill()
            proc.wait()


def test_the_hang_freezes_the_selected_engine_and_always_thaws_it() -> None:
    signals: list[tuple[int, int]] = []
    env = SimpleNamespace(engine=SimpleNamespace(dockerd_pid=lambda: 4242))
    svc = SimpleNamespace(engine_ready=lambda: ("False", "Disconnected"))
    reported = hang_engine(env, svc, 0.6, kill=lambda pid, sig: signals.append((pid, sig)))
    assert reported is not None and reported < 0.6
    assert signals == [(4242, signal.SIGSTOP), (4242, signal.SIGCONT)]

    def interrupted() -> None:
        raise KeyboardInterrupt

    signals.clear()
    with pytest.raises(KeyboardInterrupt):
        hang_engine(
            env, SimpleNamespace(engine_ready=interrupted), 5, kill=lambda *a: signals.append(a)
        )
    assert signals == [(4242, signal.SIGSTOP), (4242, signal.SIGCONT)]


def test_campaigns_act_on_the_engine_object_not_on_devenv_commands() -> None:
    # The Docker side of every outage, freeze and teardown restart is env.engine; only the
    # apiserver outage still calls devenv directly.
    source = Path(campaigns.__file__).read_text()
    assert "stop-docker" not in source and "start-docker" not in source
    assert "dockerd.pid" not in source
