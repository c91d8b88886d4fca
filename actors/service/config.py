"""The service's settings: one table, from which the options and variables come.

Each field of :class:`Config` is one option of ``dockmirror run`` (see
:mod:`actors.service.options`): ``webhook_port`` is ``--webhook-port`` on the command line and
``DOCKMIRROR_WEBHOOK_PORT`` in the environment, its annotation is its type, and its
``option(...)`` call holds the default, the help text, the help group and the checks.

Adding an option is adding one field here, in the section of its feature (or a new
section at the end for a new feature), then reading ``config.<field>`` where it is used;
``--help``, the environment variable and the error messages follow by themselves, and
``tests/unit/test_config.py`` checks every field's help, variable and default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from actors.domain.log_stream import DEFAULT_MAX_LOG_STREAMS
from actors.domain.names import ACTION_ANNOTATION, APP_GROUP, APP_NAME
from actors.infra.http_endpoint import DEFAULT_HTTP_ADDRESS, AddressError, parse_http_address
from actors.runtime.leader import LeaseTiming
from actors.service.admission import MODES as ADMISSION_MODES
from actors.service.options import (
    OneLineParser,
    OptionError,
    add_options,
    option,
    options_of,
    parse_into,
)


def _http_address(text: str) -> str:
    """Validates ``--http-address`` and keeps it as given (empty: off)."""
    try:
        parse_http_address(text)
    except AddressError as exc:
        raise OptionError(str(exc)) from None
    return text


KUBE = "Kubernetes"
DOCKER = "Docker engine"
STATE = "state and journal"
ACTORS = "actors and supervision"
WEBHOOK = "admission webhook"
ADMISSION = "admission"
PROBES = "probes and metrics"
LEADER = "leader election"
LOGGING = "logging"
APP = "App mode"


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/dockmirror``, else ``~/.local/state/dockmirror``."""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local/state")
    return Path(base) / "dockmirror"


@dataclass
class Config:
    """Settings of one service run; the main thread builds it once at start."""

    # --- Kubernetes -------------------------------------------------------------------
    namespace: str = option(
        "rancher-desktop", "Kubernetes namespace of the mirrors (created if missing)", group=KUBE
    )
    kubeconfig: str | None = option(
        None,
        "kubeconfig file",
        group=KUBE,
        metavar="PATH",
        default_text="$KUBECONFIG, then ~/.kube/config",
    )
    startup_timeout: float = option(
        60.0,
        "seconds to wait for an unreachable apiserver at start before giving up",
        group=KUBE,
        minimum=0,
    )
    resync_interval: float = option(
        600.0,
        "seconds between safety-net checks of pending annotations, terminating mirrors and "
        "ContainerNamespace/moby (0: off)",
        group=KUBE,
        minimum=0,
    )

    # --- Docker engine ----------------------------------------------------------------
    docker_host: str | None = option(
        None,
        "Docker endpoint (unix://PATH or tcp://HOST:PORT)",
        group=DOCKER,
        metavar="URL",
        default_text="like the docker CLI: $DOCKER_HOST, $DOCKER_CONTEXT, the current "
        "docker context, the local socket",
    )

    # --- state and journal ------------------------------------------------------------
    state_dir: Path = option(
        help="certificates and the default journal location",
        group=STATE,
        default_factory=default_state_dir,
        metavar="DIR",
        default_text="$XDG_STATE_HOME/dockmirror, else ~/.local/state/dockmirror",
    )
    trace_file: str = option(
        "",
        "journal path ('-': no journal)",
        group=STATE,
        metavar="PATH",
        default_text="<state-dir>/trace.jsonl",
    )
    trace_max_mb: int = option(64, "rotate the journal at this size (MiB)", group=STATE, minimum=1)
    trace_backups: int = option(3, "rotated journal files kept", group=STATE, minimum=0)

    # --- actors and supervision -------------------------------------------------------
    max_active_containers: int = option(
        128, "container actors alive at once (threads)", group=ACTORS, minimum=1
    )
    idle_timeout: float = option(
        10.0, "seconds before an idle container actor retires", group=ACTORS, minimum=0
    )
    restart_budget: int = option(
        10, "top-level actor restarts allowed per window", group=ACTORS, minimum=0
    )
    restart_window: float = option(
        60.0, "seconds of the restart budget window", group=ACTORS, minimum=0
    )

    skip_crd_install: bool = option(
        False,
        "never write CRDs (no CRD permission needed): only check that they are installed "
        "and served; an admin installs them with: dockmirror crds | kubectl apply -f -",
        group=KUBE,
    )

    # --- admission (docs/admission.md) --------------------------------------------------
    admission: str = option(
        "auto",
        "how invalid action annotations are rejected: a ValidatingAdmissionPolicy (policy), "
        "the service's webhook (webhook), nothing (none); auto: policy if the apiserver "
        "serves it, else webhook",
        group=ADMISSION,
        choices=ADMISSION_MODES,
        normalize=str.lower,
    )
    skip_admission_install: bool = option(
        False,
        "policy mode: do not apply the policy, only check that an admin did "
        "(dockmirror policy | kubectl apply -f -)",
        group=ADMISSION,
    )
    admission_timeout: float = option(
        30.0,
        "seconds to wait at start until the policy or webhook denies a probe",
        group=ADMISSION,
        minimum=0,
    )

    # --- admission webhook ------------------------------------------------------------
    webhook_host: str = option(
        "127.0.0.1",
        "webhook mode: address to listen on, put in the registered URL and the certificate",
        group=WEBHOOK,
    )
    webhook_url: str | None = option(
        None,
        "webhook mode: URL the apiserver uses to reach the webhook (registered as is)",
        group=WEBHOOK,
    )
    webhook_port: int = option(
        0,
        "admission webhook port on 127.0.0.1 (0: pick a free one)",
        group=WEBHOOK,
        minimum=0,
        maximum=65535,
    )
    webhook_recheck: float = option(
        30.0,
        "seconds between checks that the webhook configuration exists",
        group=WEBHOOK,
        minimum=0,
    )

    # --- leader election (actors/runtime/leader.py) ----------------------------------------------
    leader_elect: bool = option(
        True,
        "hold the namespace's Lease: one active instance per namespace, others wait as hot "
        "standbys (--no-leader-elect: run active even if another instance is)",
        group=LEADER,
    )
    lease_duration: float = option(
        15.0,
        "seconds a standby waits, after the Lease last changed, before taking it",
        group=LEADER,
    )
    renew_deadline: float = option(
        10.0,
        "seconds without a successful renewal after which the leader stops acting",
        group=LEADER,
    )
    retry_period: float = option(
        2.0, "seconds between Lease renewals and a standby's attempts", group=LEADER
    )

    # --- probes and metrics -------------------------------------------------------------
    http_address: str = option(
        DEFAULT_HTTP_ADDRESS,
        "HOST:PORT of the /healthz, /readyz and /metrics endpoint (port 0: pick a free one; "
        "empty: off)",
        group=PROBES,
        normalize=_http_address,
    )
    max_log_streams: int = option(
        DEFAULT_MAX_LOG_STREAMS,
        "WebSocket log streams (/passthrough/engine/logs/ID on --http-address) served at "
        "once; more are answered 429 (each holds a Docker connection and 4 threads)",
        group=PROBES,
        minimum=1,
    )

    # --- logging ----------------------------------------------------------------------
    log_level: str = option(
        "INFO",
        "log level",
        group=LOGGING,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        normalize=str.upper,
    )
    log_format: str = option(
        "text",
        "log line format: text, or json (one object per line)",
        group=LOGGING,
        choices=("text", "json"),
        normalize=str.lower,
    )

    # --- App mode (docs/contract.md §3.1, §3.5) -----------------------------------------
    app: bool = option(
        False,
        f"follow the cluster-scoped App '{APP_NAME}' ({APP_GROUP}) like rancher-desktop-"
        "daemon: its spec.namespace replaces --namespace, mirroring runs only while it is "
        "Running on moby, ContainerEngineReady is written on it, and when it stops every "
        "mirror in the namespace is deleted (--no-app: standalone)",
        group=APP,
    )

    # --- derived values (not options) ---------------------------------------------------
    def journal_file(self) -> Path | None:
        """Where the journal goes: ``None`` for ``--trace-file -``."""
        if self.trace_file == "-":
            return None
        if self.trace_file:
            return Path(self.trace_file).expanduser()
        return self.state_dir / "trace.jsonl"


RUN_DESCRIPTION = (
    "Mirror a Docker engine's containers into Kubernetes Container resources and run "
    f"{ACTION_ANNOTATION} requests."
)


def build_run_parser(prog: str = "dockmirror", epilog: str | None = None) -> OneLineParser:
    """The parser of ``dockmirror [run]``: every :class:`Config` field, grouped."""
    parser = OneLineParser(
        prog=prog,
        usage=f"{prog} [run] [options]",
        description=RUN_DESCRIPTION,
        epilog=epilog,
        formatter_class=_Formatter,
    )
    add_options(parser, options_of(Config))
    return parser


def load_config(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    parser: OneLineParser | None = None,
) -> Config:
    """Parse the ``run`` options; bad values exit 2 with one line (see actors.service.options)."""
    parser = parser or build_run_parser()
    config = parse_into(Config, parser, argv, env)
    if config.leader_elect:
        timing = LeaseTiming(config.lease_duration, config.renew_deadline, config.retry_period)
        if (problem := timing.problem()) is not None:
            parser.error(problem)
    return config


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's line breaks (the subcommand list); wider help column."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=36)
