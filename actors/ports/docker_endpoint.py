"""Which Docker engine to talk to, decided like the Docker CLI decides it.

Order (the CLI's ``resolveContextName`` and ``docker context use`` documentation: a
context applies only "when DOCKER_HOST, DOCKER_CONTEXT environment variables and
--host, --context global options are not set"):

1. ``--docker-host`` / ``DOCKMIRROR_DOCKER_HOST`` (our ``-H``);
2. ``DOCKER_HOST``;
3. the context named by ``DOCKER_CONTEXT``;
4. ``currentContext`` of ``$DOCKER_CONFIG/config.json`` (default ``~/.docker``), as
   ``docker context use`` writes it;
5. the local socket ``unix:///var/run/docker.sock`` (the ``default`` context).

TLS for 1 and 2 (a ``tcp://`` host) comes from the environment as in the CLI: on when
``DOCKER_TLS_VERIFY`` or ``DOCKER_TLS`` is non-empty, verifying the server only with
``DOCKER_TLS_VERIFY``; ``ca.pem``, ``cert.pem`` and ``key.pem`` are taken from
``DOCKER_CERT_PATH`` (default: the config directory) when they exist. A context keeps
its endpoint in ``contexts/meta/<sha256(name)>/meta.json`` and its TLS files in
``contexts/tls/<sha256(name)>/docker/``; TLS is on when that directory holds material
or the endpoint says ``SkipTLSVerify`` (the CLI's ``Endpoint.tlsConfig``).

Why not ``docker.context.ContextAPI`` / ``docker.utils.kwargs_from_env`` (docker SDK
7.1): the SDK ignores ``DOCKER_CONTEXT``; without a ``config.json`` it looks for
contexts in ``./contexts`` (relative to the working directory) instead of the config
directory; it drops a context's TLS material unless CA, certificate and key are all
present, and treats a missing ``SkipTLSVerify`` as true (the CLI: false);
``kwargs_from_env`` turns TLS on for ``DOCKER_CERT_PATH`` alone and fails on absent
client files, where the CLI skips them. We keep the SDK's ``TLSConfig`` (what its
``APIClient`` consumes) and ``parse_host`` (which validates the URL).

Pure apart from file reads; the main thread calls :func:`resolve_docker_endpoint` once
at start. Every problem raises :class:`DockerEndpointError` with one line to show.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors
import docker.utils
from docker.tls import TLSConfig

DEFAULT_HOST = "unix:///var/run/docker.sock"
DEFAULT_CONTEXT = "default"


class DockerEndpointError(ValueError):
    """The Docker endpoint cannot be determined or is invalid; ``str`` is one line."""


@dataclass(frozen=True)
class DockerEndpoint:
    """A Docker endpoint: ``host`` for ``docker.APIClient(base_url=...)`` and its TLS."""

    host: str
    source: str
    tls: TLSConfig | None = None

    def describe(self) -> str:
        """For the start log line: ``tcp://h:2376 (from DOCKER_HOST, TLS verified)``."""
        details = [f"from {self.source}"]
        if self.tls is not None:
            details.append("TLS verified" if self.tls.verify else "TLS without verification")
            if self.tls.cert:
                details.append("client certificate")
        return f"{self.host} ({', '.join(details)})"


def docker_config_dir(env: Mapping[str, str]) -> Path:
    """``$DOCKER_CONFIG``, else ``~/.docker`` (the CLI's ``config.Dir()``)."""
    configured = env.get("DOCKER_CONFIG")
    if configured:
        return Path(configured).expanduser()
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".docker"


def resolve_docker_endpoint(option: str | None, env: Mapping[str, str]) -> DockerEndpoint:
    """The endpoint in the Docker CLI's order (module docstring); raises DockerEndpointError."""
    config_dir = docker_config_dir(env)
    if option:
        return _from_host(option, "--docker-host", env, config_dir)
    if env.get("DOCKER_HOST"):
        return _from_host(env["DOCKER_HOST"], "DOCKER_HOST", env, config_dir)
    name = env.get("DOCKER_CONTEXT")
    source = "DOCKER_CONTEXT"
    if not name:
        name = _current_context(config_dir)
        source = f"currentContext of {config_dir / 'config.json'}"
    if name and name != DEFAULT_CONTEXT:
        return _from_context(name, source, config_dir)
    return DockerEndpoint(DEFAULT_HOST, "the default socket")


def _from_host(host: str, source: str, env: Mapping[str, str], config_dir: Path) -> DockerEndpoint:
    verify = bool(env.get("DOCKER_TLS_VERIFY"))
    use_tls = verify or bool(env.get("DOCKER_TLS"))
    tls = None
    if use_tls and _is_tcp(host):
        cert_dir = Path(env.get("DOCKER_CERT_PATH") or config_dir).expanduser()
        tls = _tls_config(cert_dir, verify=verify, where=f"DOCKER_CERT_PATH {cert_dir}")
    return DockerEndpoint(_checked(host, source, tls), source, tls)


def _current_context(config_dir: Path) -> str | None:
    path = config_dir / "config.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DockerEndpointError(f"cannot read the Docker CLI config {path}: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DockerEndpointError(f"invalid Docker CLI config {path}: {exc}") from None
    name = data.get("currentContext") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else None


def context_id(name: str) -> str:
    """The directory name of a context: the hex SHA-256 of its name (CLI's store)."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def _from_context(name: str, source: str, config_dir: Path) -> DockerEndpoint:
    digest = context_id(name)
    meta_path = config_dir / "contexts" / "meta" / digest / "meta.json"
    where = f"Docker context {name!r} (from {source})"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DockerEndpointError(
            f"{where} not found: no {meta_path} (see `docker context ls`)"
        ) from None
    except (OSError, ValueError) as exc:
        raise DockerEndpointError(f"{where}: cannot read {meta_path}: {exc}") from None
    endpoint: Any = (meta.get("Endpoints") or {}).get("docker") if isinstance(meta, dict) else None
    if not isinstance(endpoint, dict):
        raise DockerEndpointError(f"{where} has no docker endpoint in {meta_path}")
    host = endpoint.get("Host") or DEFAULT_HOST
    skip_verify = bool(endpoint.get("SkipTLSVerify", False))
    tls_dir = config_dir / "contexts" / "tls" / digest / "docker"
    tls = None
    has_material = tls_dir.is_dir() and any(tls_dir.iterdir())
    if _is_tcp(host) and (has_material or skip_verify):
        tls = _tls_config(tls_dir, verify=not skip_verify, where=f"{where} TLS files {tls_dir}")
    label = f"context {name!r} ({source})"
    return DockerEndpoint(_checked(str(host), label, tls), label, tls)


def _tls_config(cert_dir: Path, *, verify: bool, where: str) -> TLSConfig:
    """TLS from ``ca.pem``/``cert.pem``/``key.pem`` of ``cert_dir``, each used if present.

    Without ``ca.pem`` a verifying client trusts the system's CAs (as the CLI does);
    a certificate without its key (or the reverse) is an error, not silently dropped.
    """
    ca = cert_dir / "ca.pem"
    cert = cert_dir / "cert.pem"
    key = cert_dir / "key.pem"
    if cert.is_file() != key.is_file():
        missing = key if cert.is_file() else cert
        raise DockerEndpointError(f"{where}: {missing.name} is missing (need both cert and key)")
    client_cert = (str(cert), str(key)) if cert.is_file() else None
    ca_cert = str(ca) if ca.is_file() else None
    try:
        return TLSConfig(client_cert=client_cert, ca_cert=ca_cert, verify=verify)
    except docker.errors.TLSParameterError as exc:
        raise DockerEndpointError(f"{where}: {exc}") from None


def _is_tcp(host: str) -> bool:
    return host.startswith(("tcp://", "https://", "http://"))


def _checked(host: str, source: str, tls: TLSConfig | None) -> str:
    """Validate ``host`` as the SDK will parse it; ssh:// needs paramiko, which we omit."""
    if host.startswith("ssh://"):
        raise DockerEndpointError(
            f"Docker endpoint {host} (from {source}): ssh:// is not supported; forward the "
            "socket (ssh -L /tmp/docker.sock:/var/run/docker.sock HOST) and use unix://"
        )
    try:
        docker.utils.parse_host(host, os.name == "nt", tls=tls is not None)
    except docker.errors.DockerException as exc:
        raise DockerEndpointError(
            f"invalid Docker endpoint {host!r} (from {source}): {exc}"
        ) from None
    return host
