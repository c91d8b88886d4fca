"""Docker endpoint resolution in the Docker CLI's order, with temporary config dirs
(no engine needed), and DockerPort passing the TLS configuration to both its clients."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker
import pytest

from actors.ports import docker_port
from actors.ports.docker_endpoint import (
    DEFAULT_HOST,
    DockerEndpointError,
    context_id,
    resolve_docker_endpoint,
)
from actors.ports.docker_port import DockerPort


def write_context(
    config_dir: Path,
    name: str,
    host: str | None,
    *,
    skip_verify: bool | None = None,
    tls_files: tuple[str, ...] = (),
) -> None:
    """A context as `docker context create NAME --docker host=...,ca=...` stores it."""
    endpoint: dict[str, Any] = {}
    if host is not None:
        endpoint["Host"] = host
    if skip_verify is not None:
        endpoint["SkipTLSVerify"] = skip_verify
    meta_dir = config_dir / "contexts" / "meta" / context_id(name)
    meta_dir.mkdir(parents=True)
    (meta_dir / "meta.json").write_text(
        json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": endpoint}})
    )
    if tls_files:
        tls_dir = config_dir / "contexts" / "tls" / context_id(name) / "docker"
        tls_dir.mkdir(parents=True)
        for file in tls_files:
            (tls_dir / file).write_text("PEM")


def use_context(config_dir: Path, name: str) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config.json").write_text(json.dumps({"auths": {}, "currentContext": name}))


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return tmp_path / "docker-config"


def env_for(cfg: Path, **more: str) -> dict[str, str]:
    return {"DOCKER_CONFIG": str(cfg), **more}


def test_context_id_is_sha256_of_the_name() -> None:
    # `docker context create remote` stores it under contexts/meta/<this>/meta.json.
    assert (
        context_id("remote") == "b71199ebd070b36beab7317920c2c2f1d777df8d05e5527d8458fda57cb17a7a"
    )


def test_order_option_then_docker_host_then_docker_context_then_current(cfg: Path) -> None:
    write_context(cfg, "envctx", "unix:///env.sock")
    write_context(cfg, "current", "unix:///current.sock")
    use_context(cfg, "current")
    env = env_for(cfg, DOCKER_HOST="unix:///host.sock", DOCKER_CONTEXT="envctx")
    assert resolve_docker_endpoint("unix:///opt.sock", env).host == "unix:///opt.sock"
    assert resolve_docker_endpoint(None, env).host == "unix:///host.sock"
    del env["DOCKER_HOST"]
    assert resolve_docker_endpoint(None, env).host == "unix:///env.sock"
    del env["DOCKER_CONTEXT"]
    found = resolve_docker_endpoint(None, env)
    assert found.host == "unix:///current.sock"
    assert found.source == f"context 'current' (currentContext of {cfg / 'config.json'})"


def test_default_socket_without_anything(cfg: Path) -> None:
    found = resolve_docker_endpoint(None, env_for(cfg))
    assert (found.host, found.tls) == (DEFAULT_HOST, None)
    assert found.describe() == f"{DEFAULT_HOST} (from the default socket)"
    use_context(cfg, "default")  # `docker context use default`
    assert resolve_docker_endpoint(None, env_for(cfg)).host == DEFAULT_HOST
    assert resolve_docker_endpoint(None, env_for(cfg, DOCKER_CONTEXT="default")).host == (
        DEFAULT_HOST
    )


def test_home_docker_dir_when_docker_config_is_unset(tmp_path: Path) -> None:
    write_context(tmp_path / ".docker", "mine", "tcp://10.0.0.1:2375")
    use_context(tmp_path / ".docker", "mine")
    assert resolve_docker_endpoint(None, {"HOME": str(tmp_path)}).host == "tcp://10.0.0.1:2375"


def test_docker_context_without_config_json(cfg: Path) -> None:
    # The SDK would look in ./contexts here; the CLI (and we) use the config directory.
    write_context(cfg, "only", "unix:///only.sock")
    assert not (cfg / "config.json").exists()
    assert resolve_docker_endpoint(None, env_for(cfg, DOCKER_CONTEXT="only")).host == (
        "unix:///only.sock"
    )


def test_tls_from_the_environment_for_a_tcp_host(cfg: Path, tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (certs / name).write_text("PEM")
    env = env_for(
        cfg, DOCKER_HOST="tcp://h:2376", DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(certs)
    )
    found = resolve_docker_endpoint(None, env)
    assert found.tls is not None
    assert found.tls.verify is True
    assert found.tls.ca_cert == str(certs / "ca.pem")
    assert found.tls.cert == (str(certs / "cert.pem"), str(certs / "key.pem"))
    assert found.describe() == ("tcp://h:2376 (from DOCKER_HOST, TLS verified, client certificate)")


def test_tls_env_rules_match_the_cli(cfg: Path, tmp_path: Path) -> None:
    tcp = {"DOCKER_HOST": "tcp://h:2376"}
    # DOCKER_CERT_PATH alone does not turn TLS on (the SDK's kwargs_from_env would).
    assert resolve_docker_endpoint(None, env_for(cfg, **tcp, DOCKER_CERT_PATH="/x")).tls is None
    # DOCKER_TLS: TLS without verification; absent client files are skipped.
    found = resolve_docker_endpoint(None, env_for(cfg, **tcp, DOCKER_TLS="1"))
    assert found.tls is not None and found.tls.verify is False and found.tls.cert is None
    # The cert path defaults to the config directory.
    cfg.mkdir()
    (cfg / "ca.pem").write_text("PEM")
    found = resolve_docker_endpoint(None, env_for(cfg, **tcp, DOCKER_TLS_VERIFY="1"))
    assert found.tls is not None and found.tls.ca_cert == str(cfg / "ca.pem")
    # A unix socket never gets TLS.
    env = env_for(cfg, DOCKER_HOST="unix:///s.sock", DOCKER_TLS_VERIFY="1")
    assert resolve_docker_endpoint(None, env).tls is None
    # The option (our -H) takes TLS from the environment too.
    assert resolve_docker_endpoint("tcp://o:2376", env).tls is not None


def test_context_tls_material_and_skip_verify(cfg: Path) -> None:
    write_context(cfg, "secure", "tcp://s:2376", tls_files=("ca.pem", "cert.pem", "key.pem"))
    write_context(cfg, "ca-only", "tcp://c:2376", tls_files=("ca.pem",))
    write_context(cfg, "insecure", "tcp://i:2376", skip_verify=True)
    write_context(cfg, "plain", "tcp://p:2375")
    secure = resolve_docker_endpoint(None, env_for(cfg, DOCKER_CONTEXT="secure"))
    assert secure.tls is not None and secure.tls.verify is True and secure.tls.cert is not None
    ca_only = resolve_docker_endpoint(None, env_for(cfg, DOCKER_CONTEXT="ca-only"))
    assert ca_only.tls is not None and ca_only.tls.cert is None  # the SDK would drop it
    assert ca_only.tls.ca_cert is not None and ca_only.tls.ca_cert.endswith("/docker/ca.pem")
    insecure = resolve_docker_endpoint(None, env_for(cfg, DOCKER_CONTEXT="insecure"))
    assert insecure.tls is not None and insecure.tls.verify is False
    assert resolve_docker_endpoint(None, env_for(cfg, DOCKER_CONTEXT="plain")).tls is None


@pytest.mark.parametrize(
    ("setup", "env", "expected"),
    [
        (
            "none",
            {"DOCKER_CONTEXT": "ghost"},
            "Docker context 'ghost' (from DOCKER_CONTEXT) not found",
        ),
        ("badjson", {}, "invalid Docker CLI config"),
        ("none", {"DOCKER_HOST": "ssh://me@host"}, "ssh:// is not supported"),
        (
            "none",
            {"DOCKER_HOST": "bogus://x"},
            "invalid Docker endpoint 'bogus://x' (from DOCKER_HOST)",
        ),
        ("halfcert", {"DOCKER_CONTEXT": "half"}, "key.pem is missing"),
    ],
)
def test_errors_are_one_line(cfg: Path, setup: str, env: dict[str, str], expected: str) -> None:
    if setup == "badjson":
        cfg.mkdir()
        (cfg / "config.json").write_text("{not json")
    elif setup == "halfcert":
        write_context(cfg, "half", "tcp://h:2376", tls_files=("cert.pem",))
    with pytest.raises(DockerEndpointError) as caught:
        resolve_docker_endpoint(None, env_for(cfg, **env))
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_docker_port_passes_tls_to_the_api_and_the_events_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    made: list[dict[str, Any]] = []

    class FakeAPIClient:
        api_version = "1.41"

        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)
            self.timeout = kwargs.get("timeout")

        def _url(self, path: str) -> str:
            return path

        def _get(self, *args: Any, **kwargs: Any) -> Any:
            raise docker.errors.DockerException("stop here: the stream is not under test")

        def close(self) -> None:
            pass

    monkeypatch.setattr(docker_port.docker, "APIClient", FakeAPIClient)
    tls = docker.tls.TLSConfig(verify=False)
    port = DockerPort("tcp://h:2376", tls=tls)
    with pytest.raises(docker_port.DockerUnavailable):
        port.events()
    assert len(made) == 2  # the shared client (version negotiation) and the stream's
    assert all(kwargs["tls"] is tls for kwargs in made)
    assert all(kwargs["base_url"] == "tcp://h:2376" for kwargs in made)
