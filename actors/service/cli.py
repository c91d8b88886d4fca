"""The ``dockmirror`` command: subcommand dispatch, ``--version``, the printing subcommands.

* ``dockmirror [run] [options]``: parse the service's options (the :class:`Config`
  table, command line then ``DOCKMIRROR_*`` then defaults), configure logging, call
  ``run(config)`` (the composition root in ``supervisor.py``) and return its exit code;
* ``dockmirror crds``: the CustomResourceDefinitions as YAML documents, for
  ``kubectl apply -f -`` by an admin (the service then runs without CRD write access);
* ``dockmirror rbac --namespace NS (--user NAME | --service-account NS/NAME)``: the RBAC
  objects the service needs, from :func:`actors.domain.rbac.rbac_manifests`;
* ``dockmirror policy --namespace NS``: the admission policy objects, from
  :func:`actors.domain.admission_policy.policy_manifests`.

The printing subcommands import their module only when called (the service never
needs them) and take command-line options only: the ``DOCKMIRROR_*`` variables
configure the service. Every error is one line on stderr: exit 2 for bad input, 1 when
a subcommand's module is missing. Main thread only.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TextIO

from actors.domain.names import APP_GROUP, GROUP
from actors.infra.logsetup import configure_logging
from actors.service.config import Config, build_run_parser, load_config
from actors.service.options import OneLineParser

PROG = "dockmirror"
ADMISSION_MODES = ("policy", "webhook", "none")

SUBCOMMANDS_EPILOG = f"""\
subcommands (each has --help):
  {PROG} [run] [options]    run the service (the default)
  {PROG} crds               print the CRDs (YAML) for kubectl apply -f -
  {PROG} rbac               print the RBAC objects the service needs
  {PROG} policy             print the ValidatingAdmissionPolicy objects

Every option can also be set by the environment variable shown with it; the command
line wins. Booleans accept 1/0, true/false, yes/no, on/off."""


def package_version() -> str:
    """The installed distribution's version (``pyproject.toml``), or ``unknown``."""
    try:
        return version("dockmirror")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(
    argv: Sequence[str] | None,
    *,
    run: Callable[[Config], int],
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
) -> int:
    """Dispatch ``argv`` (without the program name); returns the exit code.

    Bad options raise ``SystemExit(2)`` after printing one line (argparse's exit).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    out = sys.stdout if out is None else out
    if args and args[0] in PRINTERS:
        return PRINTERS[args[0]](args[1:], out)
    if args and args[0] == "run":
        args = args[1:]
    parser = build_run_parser(PROG, epilog=SUBCOMMANDS_EPILOG)
    parser.add_argument("--version", action="version", version=f"{PROG} {package_version()}")
    config = load_config(args, env, parser=parser)
    configure_logging(config.log_level, config.log_format)
    return run(config)


# --- printing subcommands ---------------------------------------------------------------
def print_manifests(manifests: Sequence[dict[str, Any]], out: TextIO) -> int:
    """YAML documents (``---`` before each), keys in the manifests' own order."""
    import yaml  # local: only the printing subcommands need it

    try:
        yaml.safe_dump_all(
            list(manifests), out, sort_keys=False, explicit_start=True, default_flow_style=False
        )
        out.flush()
    except BrokenPipeError:
        # `dockmirror crds | head`: the reader left; stop quietly and keep the final
        # flush of stdout from complaining a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0


def _subparser(name: str, description: str) -> OneLineParser:
    return OneLineParser(
        prog=f"{PROG} {name}",
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def _load(module: str, prog: str) -> Any:
    """Import ``module`` (written by another part of the project) or exit 1 with a line."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        print(f"{prog}: not available in this build ({module} is missing)", file=sys.stderr)
        raise SystemExit(1) from None


def _call(prog: str, build: Callable[[], list[dict[str, Any]]], out: TextIO) -> int:
    """Print what ``build`` returns; its ValueError (bad input) is one line, exit 2."""
    try:
        manifests = build()
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return print_manifests(manifests, out)


def crds_command(argv: Sequence[str], out: TextIO) -> int:
    parser = _subparser(
        "crds",
        f"Print the CustomResourceDefinitions of {GROUP} as YAML "
        f"documents: `{PROG} crds | kubectl apply -f -` (needs CRD write access).",
    )
    parser.add_argument(
        "--app",
        action="store_true",
        help=f"also the App CRD ({APP_GROUP}), for a service run with --app "
        "--skip-crd-install where no App CRD is installed yet",
    )
    args = parser.parse_args(list(argv))
    from actors.domain.crds import all_crds

    manifests = all_crds()
    if args.app:
        from actors.domain.app_mode import app_crd

        manifests = [*manifests, app_crd()]
    return print_manifests(manifests, out)


def service_account(text: str) -> str:
    """``NS/NAME`` with both parts non-empty (argparse type)."""
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"expected NAMESPACE/NAME, got {text!r}")
    return text


def rbac_command(argv: Sequence[str], out: TextIO) -> int:
    parser = _subparser(
        "rbac",
        "Print the ClusterRole, Role and bindings the service needs, as YAML documents "
        "for kubectl apply -f -.",
    )
    parser.add_argument(
        "--namespace", default=Config.namespace, help="namespace the service mirrors into"
    )
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="NAME", help="bind to this user (e.g. a certificate CN)")
    who.add_argument(
        "--service-account",
        metavar="NS/NAME",
        type=service_account,
        help="bind to this ServiceAccount",
    )
    parser.add_argument(
        "--admission",
        choices=ADMISSION_MODES,
        default="policy",
        help="admission mode the service runs with (its permissions differ)",
    )
    parser.add_argument(
        "--skip-crd-install",
        action="store_true",
        help="the service runs with --skip-crd-install (no CRD write access needed)",
    )
    parser.add_argument(
        "--app",
        action="store_true",
        help="the service runs with --app (the App and the cleanup; --namespace must be "
        "the App's spec.namespace)",
    )
    args = parser.parse_args(list(argv))
    rbac = _load("actors.domain.rbac", parser.prog)
    return _call(
        parser.prog,
        lambda: rbac.rbac_manifests(
            namespace=args.namespace,
            user=args.user,
            service_account=args.service_account,
            admission=args.admission,
            skip_crd_install=args.skip_crd_install,
            app=args.app,
        ),
        out,
    )


def policy_command(argv: Sequence[str], out: TextIO) -> int:
    parser = _subparser(
        "policy",
        "Print the ValidatingAdmissionPolicy and its binding for a namespace, as YAML "
        "documents for kubectl apply -f -.",
    )
    parser.add_argument(
        "--namespace", default=Config.namespace, help="namespace the policy is bound to"
    )
    args = parser.parse_args(list(argv))
    policy = _load("actors.domain.admission_policy", parser.prog)
    return _call(parser.prog, lambda: policy.policy_manifests(args.namespace), out)


PRINTERS: dict[str, Callable[[Sequence[str], TextIO], int]] = {
    "crds": crds_command,
    "rbac": rbac_command,
    "policy": policy_command,
}
