"""Declarative command-line options: one dataclass field per option.

A settings dataclass (``actors.service.config.Config``) declares each option once, as a field
made by :func:`option`. From those fields come

* the argparse argument ``--max-active-containers`` (field ``max_active_containers``),
  in a help group, with its default and its environment variable in the help text;
* the environment variable ``DOCKMIRROR_MAX_ACTIVE_CONTAINERS``;
* the typed value in the dataclass: the field's annotation (``int``, ``float``, ``str``,
  ``bool``, ``Path``, or one of them ``| None``) picks the conversion.

Precedence: command line, then environment, then the field's default. Booleans are
``--flag/--no-flag`` on the command line and ``1/0/true/false/yes/no/on/off`` in the
environment. For an option whose default is ``None`` an empty environment variable
means "not set"; otherwise an empty value is converted like any other (and an empty
number is an error).

Bad values (not a number, below ``minimum``, not one of ``choices``) raise
:class:`OptionError` with one line naming the option, its variable and where the value
came from; :func:`parse_into` turns that into ``prog: error: ...`` on stderr and exit
code 2, never a traceback. Pure functions; called from the main thread at start.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")
ENV_PREFIX = "DOCKMIRROR_"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
_KINDS: tuple[type, ...] = (bool, int, float, str, Path)
_METAVARS: dict[type, str] = {int: "N", float: "NUM", str: "TEXT", Path: "PATH"}


class OptionError(ValueError):
    """An option's value is invalid; ``str(err)`` is the one line to show the user."""


@dataclass(frozen=True)
class OptionSpec:
    """What :func:`option` stores in a field's metadata (everything but name and type)."""

    help: str
    group: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    metavar: str | None = None
    #: Shown as the default in ``--help`` instead of the value (e.g. "$KUBECONFIG").
    default_text: str | None = None
    #: Applied to the text before conversion and the choices check (e.g. ``str.upper``).
    normalize: Callable[[str], str] | None = None


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    group: str = "general",
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
    choices: Sequence[str] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    metavar: str | None = None,
    default_text: str | None = None,
    normalize: Callable[[str], str] | None = None,
) -> Any:
    """A dataclass field that is also a command-line option and an environment variable."""
    spec = OptionSpec(
        help=help,
        group=group,
        choices=tuple(choices) if choices is not None else None,
        minimum=minimum,
        maximum=maximum,
        metavar=metavar,
        default_text=default_text,
        normalize=normalize,
    )
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata={"option": spec}
    )


@dataclass(frozen=True)
class Option:
    """One option as derived from a field: its names, type and spec."""

    name: str
    kind: type
    nullable: bool
    spec: OptionSpec
    field: dataclasses.Field[Any]

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()

    def default(self) -> Any:
        if self.field.default_factory is not dataclasses.MISSING:
            return self.field.default_factory()
        return self.field.default

    def convert(self, text: str) -> Any:
        """Text (from the command line or the environment) to the field's type.

        Raises :class:`OptionError` with the reason only; the caller adds where from.
        """
        spec = self.spec
        if spec.normalize is not None:
            text = spec.normalize(text)
        if spec.choices is not None and text not in spec.choices:
            raise OptionError(f"{text!r} is not one of {', '.join(spec.choices)}")
        value: Any
        if self.kind is bool:
            word = text.strip().lower()
            if word in TRUE_WORDS:
                return True
            if word in FALSE_WORDS:
                return False
            raise OptionError(f"{text!r} is not a boolean (1/0, true/false, yes/no, on/off)")
        if self.kind is int:
            try:
                value = int(text.strip())
            except ValueError:
                raise OptionError(f"{text!r} is not an integer") from None
        elif self.kind is float:
            try:
                value = float(text.strip())
            except ValueError:
                raise OptionError(f"{text!r} is not a number") from None
            if value != value or value in (float("inf"), float("-inf")):
                raise OptionError(f"{text!r} is not a finite number")
        elif self.kind is Path:
            if not text:
                raise OptionError("an empty path")
            value = Path(text).expanduser()
        else:
            value = text
        if spec.minimum is not None and value < spec.minimum:
            raise OptionError(f"{text!r} is below the minimum {_num(spec.minimum)}")
        if spec.maximum is not None and value > spec.maximum:
            raise OptionError(f"{text!r} is above the maximum {_num(spec.maximum)}")
        return value

    def help_text(self) -> str:
        """The field's help plus its default and environment variable (argparse-escaped)."""
        default = self.spec.default_text
        if default is None:
            value = self.default()
            if self.kind is bool:
                default = "on" if value else "off"
            elif value is None or value == "":
                default = "none"
            else:
                default = str(value)
        text = f"{self.spec.help} (default: {default}; env {self.env_var})"
        return text.replace("%", "%%")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def options_of(cls: type) -> list[Option]:
    """Every field of the dataclass ``cls`` made by :func:`option`, in declaration order."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        spec = field.metadata.get("option")
        if spec is None:
            continue
        kind, nullable = _kind_of(hints[field.name], field.name)
        found.append(Option(field.name, kind, nullable, spec, field))
    return found


def _kind_of(hint: Any, name: str) -> tuple[type, bool]:
    """``int`` -> (int, False); ``Path | None`` -> (Path, True); anything else: TypeError."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and rest[0] in _KINDS:
            return rest[0], True
    elif hint in _KINDS:
        return hint, False
    raise TypeError(
        f"option {name}: unsupported type {hint!r} (use one of bool/int/float/str/Path)"
    )


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (no usage block), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """Add one argument per option, in help groups named by ``OptionSpec.group``.

    Every argparse default is ``None`` ("not on the command line") so that the
    environment and the field default can apply afterwards; values stay text here and
    are converted by :func:`resolve` (one place for all error messages).
    """
    groups: dict[str, Any] = {}
    for opt in options:
        group = groups.get(opt.spec.group)
        if group is None:
            group = groups[opt.spec.group] = parser.add_argument_group(opt.spec.group)
        if opt.kind is bool:
            group.add_argument(
                opt.flag,
                dest=opt.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=opt.help_text(),
            )
            continue
        metavar = opt.spec.metavar
        if metavar is None and opt.spec.choices is not None:
            metavar = "{" + ",".join(opt.spec.choices) + "}"
        group.add_argument(
            opt.flag,
            dest=opt.name,
            default=None,
            metavar=metavar or _METAVARS[opt.kind],
            help=opt.help_text(),
        )


def resolve(
    options: Sequence[Option], args: argparse.Namespace, env: Mapping[str, str]
) -> dict[str, Any]:
    """Field values: command line, else environment, else default. Raises OptionError."""
    values: dict[str, Any] = {}
    for opt in options:
        given = getattr(args, opt.name, None)
        if given is not None:
            if isinstance(given, bool):  # BooleanOptionalAction already decided
                values[opt.name] = given
                continue
            where = f"{opt.flag} (env {opt.env_var})"
            text: str | None = given
        else:
            text = env.get(opt.env_var)
            where = f"{opt.env_var} (option {opt.flag})"
            if text is None or (text == "" and opt.nullable):
                continue  # the field default applies
        assert text is not None  # argparse gives a string for every option it saw
        try:
            values[opt.name] = opt.convert(text)
        except OptionError as exc:
            raise OptionError(f"invalid value for {where}: {exc}") from None
    return values


def parse_into(
    cls: type[T],
    parser: argparse.ArgumentParser,
    argv: Sequence[str],
    env: Mapping[str, str],
) -> T:
    """Parse ``argv`` with ``parser`` (built with :func:`add_options` for ``cls``) into ``cls``.

    Bad input exits with code 2 and one line on stderr (``parser.error``).
    """
    args = parser.parse_args(list(argv))
    try:
        values = resolve(options_of(cls), args, env)
    except OptionError as exc:
        parser.error(str(exc))
    return cls(**values)


def print_error(prog: str, message: str) -> None:
    """One line on stderr, the format every configuration error uses."""
    print(f"{prog}: {message}", file=sys.stderr)
