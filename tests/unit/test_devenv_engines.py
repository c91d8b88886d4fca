"""scripts/devenv's extra-engine commands: parsing, layout and safety checks (no engine run)."""

from __future__ import annotations

import importlib.util
import itertools
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_devenv() -> ModuleType:
    """Import scripts/devenv (no .py suffix) as a module without running main()."""
    loader = SourceFileLoader("devenv_script", str(REPO / "scripts" / "devenv"))
    spec = importlib.util.spec_from_loader("devenv_script", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


devenv = _load_devenv()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["up"], ("up", [])),
        (["down"], ("down", [])),
        (["engines"], ("engines", [])),
        (["engine-up", "a"], ("engine-up", ["a"])),
        (["engine-up", "a", "b-2", "a"], ("engine-up", ["a", "b-2"])),
        (["engine-down", "c"], ("engine-down", ["c"])),
        (["engine-rm", "a", "b"], ("engine-rm", ["a", "b"])),
        (["engine-env", "a"], ("engine-env", ["a"])),
    ],
)
def test_parse_command_accepts(argv, expected):
    assert devenv.parse_command(argv) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no command"),
        (["frobnicate"], "unknown command"),
        (["up", "extra"], "takes no arguments"),
        (["engines", "a"], "takes no arguments"),
        (["engine-up"], "at least one engine name"),
        (["engine-env"], "one engine name"),
        (["engine-env", "a", "b"], "one engine name"),
        (["engine-up", "A"], "bad engine name"),
        (["engine-up", "-a"], "bad engine name"),
        (["engine-up", "a/b"], "bad engine name"),
        (["engine-up", "../x"], "bad engine name"),
        (["engine-up", "a" * 17], "bad engine name"),
    ],
)
def test_parse_command_rejects_with_a_reason(argv, message):
    with pytest.raises(devenv.UsageError, match=message):
        devenv.parse_command(argv)


def test_main_prints_usage_and_exits_2_on_bad_arguments(capsys):
    assert devenv.main(["devenv", "engine-up"]) == 2
    err = capsys.readouterr().err
    assert "takes at least one engine name" in err
    assert "engine-up|engine-down|engine-rm NAME..." in err


def test_engine_layout_is_private_to_the_engine(tmp_path):
    e = devenv.engine_paths("b", base=tmp_path)
    assert e.host == f"unix://{tmp_path}/b/docker.sock"
    argv = e.dockerd_argv("/usr/sbin/dockerd")
    flags = dict(itertools.pairwise(argv))
    assert flags["-H"] == e.host
    assert flags["--data-root"] == str(tmp_path / "b" / "data")
    assert flags["--exec-root"] == str(tmp_path / "b" / "exec")
    assert flags["--pidfile"] == str(tmp_path / "b" / "dockerd.pid")
    assert flags["--config-file"] == str(tmp_path / "b" / "daemon.json")
    for flag in ("--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false"):
        assert flag in argv
    # No TCP listener, no shared containerd: only the unix socket, dockerd manages its own.
    assert not any(a.startswith("tcp://") for a in argv)
    assert "--containerd" not in argv
    # The /proc check that tells this engine's dockerd from every other one.
    assert e.needle in " ".join(argv)
    assert devenv.engine_paths("c", base=tmp_path).needle not in " ".join(argv)


def test_a_socket_path_too_long_for_unix_sockets_is_refused(tmp_path):
    deep = tmp_path / ("d" * 80)
    with pytest.raises(devenv.UsageError, match="more than a unix socket allows"):
        devenv.engine_paths("a", base=deep)


def test_engine_names_lists_only_valid_engine_directories(tmp_path):
    assert devenv.engine_names(tmp_path / "absent") == []
    for d in ("b", "a", "Bad", "x.y"):
        (tmp_path / d).mkdir()
    (tmp_path / "file").write_text("")
    assert devenv.engine_names(tmp_path) == ["a", "b"]


def test_mounts_under_finds_mounts_below_the_engine_only():
    mountinfo = "\n".join(
        [
            "22 1 8:0 / / rw - ext4 /dev/vda rw",
            "40 22 0:50 / /r/.devenv/engines/a/data/overlay2/x/merged rw - overlay o rw",
            "41 22 0:4 / /r/.devenv/engines/a/exec/netns/y rw - nsfs nsfs rw",
            "42 22 0:51 / /r/.devenv/engines/ab/data rw - tmpfs t rw",
            "43 22 0:52 / /r/.devenv/engines/a\\040b rw - tmpfs t rw",
        ]
    )
    assert devenv.mounts_under(Path("/r/.devenv/engines/a"), mountinfo) == [
        "/r/.devenv/engines/a/data/overlay2/x/merged",
        "/r/.devenv/engines/a/exec/netns/y",
    ]
    assert devenv.mounts_under(Path("/r/.devenv/engines/a b"), mountinfo) == [
        "/r/.devenv/engines/a b"
    ]
    assert devenv.mounts_under(Path("/elsewhere"), mountinfo) == []


def test_remove_engine_refuses_while_something_is_mounted_below(tmp_path, monkeypatch):
    e = devenv.engine_paths("a", base=tmp_path)
    e.data.mkdir(parents=True)
    monkeypatch.setattr(devenv, "engine_pid", lambda _e: None)
    monkeypatch.setattr(devenv, "mounts_under", lambda root: [str(root / "data/m")])
    with pytest.raises(devenv.DevenvError, match="still mounted below it"):
        devenv.remove_engine(e)
    assert e.data.exists()  # nothing deleted
    monkeypatch.setattr(devenv, "mounts_under", lambda root: [])
    devenv.remove_engine(e)
    assert not e.root.exists()
