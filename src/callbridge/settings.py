"""``callbridge serve`` settings from a TOML file and ``CALLBRIDGE_*`` environment variables.

Every ``serve`` option can be given three more ways than on the command line. Precedence,
highest first::

    command line  >  environment (CALLBRIDGE_*)  >  config file (--config)  >  built-in default

- **Config file**: ``--config PATH`` or ``$CALLBRIDGE_CONFIG``; there is no implicit location
  (a file read silently from /etc or the current directory would change dev servers and tests
  nobody configured). Flat TOML keys named like the options: ``ring_timeout = 45`` for
  ``--ring-timeout 45`` (``ring-timeout`` works too); repeatable options take an array
  (``stun = ["stun:a:3478", "stun:b:3478"]``); switches take ``true``/``false``.
- **Environment**: ``CALLBRIDGE_`` + the option in upper case with ``_``:
  ``CALLBRIDGE_RING_TIMEOUT=45``; repeatable options take a comma- or space-separated list;
  switches ``1/true/yes/on`` or ``0/false/no/off``. An empty variable counts as unset.
- **Secrets** (``--turn-password``, ``--database-url`` — it may hold a password — and any
  later option whose name ends in ``password`` or ``secret``) also take a ``_file`` variant,
  ``CALLBRIDGE_TURN_PASSWORD_FILE=/run/secrets/turn`` or ``turn_password_file = "..."``: the
  file's content (one trailing newline dropped) is the value, as systemd credentials
  (``LoadCredential``) and Docker/Podman secrets provide them. Given on the command line they
  still work, with a warning: every local user can read a command line (``ps``, /proc).

A repeatable option given on the command line replaces the list from the environment or file
(it does not add to it). Every value goes through the option's own parser, so a bad one is the
same one-line usage error (exit 2) as on the command line, naming the key and file line or the
variable. An unknown key in the file is an error; an unknown ``CALLBRIDGE_*`` variable is not
(other tools and tests use that prefix), but one a letter or two from a setting gets a warning.

The mechanism is generic over the parser's options: :func:`install` adds ``--config`` and
reads the file and environment whenever the parser parses, for whatever options it has then.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_ENV",
    "ENV_PREFIX",
    "Setting",
    "SettingsError",
    "install",
    "is_secret",
    "read_settings",
]

ENV_PREFIX = "CALLBRIDGE_"
CONFIG_ENV = "CALLBRIDGE_CONFIG"
FILE_SUFFIX = "_file"
# Secrets by name: explicit ones, and any option that says what it is in its name.
_SECRET_DESTS = frozenset({"turn_password", "database_url"})
_SECRET_SUFFIXES = ("password", "secret")
# Resolved elsewhere when it comes from the environment (cli.resolve_data_dir reads
# $CALLBRIDGE_DATA_DIR itself and records that the value came from there).
_ENV_RESOLVED_ELSEWHERE = frozenset({"data_dir"})
_NOT_SETTINGS = frozenset({"help", "config"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_LIST_SPLIT = re.compile(r"[\s,]+")


class SettingsError(ValueError):
    """A setting from the file or environment that cannot be used; the message names where."""


@dataclass(frozen=True)
class Setting:
    """One option's value from outside the command line, and where it came from."""

    dest: str
    value: Any
    source: str  # "CALLBRIDGE_PORT", "/etc/callbridge/callbridge.toml line 3 (port)"


def is_secret(dest: str) -> bool:
    """Whether an option holds a secret (it gets a ``_file`` variant and a warning in argv)."""
    return dest in _SECRET_DESTS or dest.endswith(_SECRET_SUFFIXES)


def install(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` to ``parser`` and make its parsing take defaults from the config file
    and the environment (module docstring).

    argparse has no hook for defaults that depend on the command line (here: which file), so
    the parser's ``parse_known_args`` is wrapped: it is what ``parse_args`` and a subcommand's
    parent call. The values go into the namespace before parsing, so the command line still
    overrides them, and argparse's ``%(default)s`` in ``--help`` stays the built-in default.
    """
    parser.add_argument(
        "--config",
        type=Path,
        metavar="TOML",
        help=f"read settings from this TOML file (default: ${CONFIG_ENV}, else none). Every "
        f"option can also be set there (ring_timeout = 45) or as {ENV_PREFIX}<OPTION> "
        f"({ENV_PREFIX}RING_TIMEOUT=45); the command line wins over the environment, which "
        "wins over the file. Secrets take a _file variant (docs/operations.md, Configuration)",
    )
    original = parser.parse_known_args

    def parse_known_args(
        args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        argv = list(sys.argv[1:] if args is None else args)
        config = _config_option(parser, argv)
        try:
            settings = read_settings(parser, config, os.environ)
        except SettingsError as exc:
            parser.error(str(exc))
        ns = argparse.Namespace() if namespace is None else namespace
        for setting in settings:
            if not hasattr(ns, setting.dest):
                setattr(ns, setting.dest, setting.value)
        ns, rest = original(argv, ns)
        _command_line_replaces_lists(ns, settings)
        if getattr(ns, "config", None) != config:  # --conf FILE: argparse took it, we did not
            parser.error("spell --config out in full (an abbreviation is not read early enough)")
        _warn_secrets_in_argv(parser, argv)
        _say_sources(settings)
        return ns, rest

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign,assignment]


def read_settings(
    parser: argparse.ArgumentParser, config: Path | None, environ: Mapping[str, str]
) -> list[Setting]:
    """The values the environment and the file give ``parser``'s options, the environment's
    winning; ``config`` falls back to ``$CALLBRIDGE_CONFIG``.

    :raises SettingsError: the file cannot be read or parsed, a key is unknown, a value is bad.
    """
    options = _options(parser)
    chosen: dict[str, Setting] = {}
    where = "--config"
    if config is None and environ.get(CONFIG_ENV):
        config, where = Path(environ[CONFIG_ENV]), CONFIG_ENV
    if config is not None:
        for setting in _from_file(options, config, where):
            chosen[setting.dest] = setting
    for setting in _from_environment(options, environ):
        if setting.dest in _ENV_RESOLVED_ELSEWHERE:
            chosen.pop(setting.dest, None)  # the environment wins; resolved by its owner
        else:
            chosen[setting.dest] = setting
    return list(chosen.values())


# options ----------------------------------------------------------------------------------
def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's settable options by ``dest``: those with a ``--long`` name."""
    return {
        action.dest: action
        for action in parser._actions  # argparse keeps them nowhere public
        if action.dest not in _NOT_SETTINGS
        and any(s.startswith("--") for s in action.option_strings)
        and not isinstance(action, argparse._SubParsersAction)
    }


def _flag(action: argparse.Action) -> str:
    return next(s for s in action.option_strings if s.startswith("--"))


def _convert(action: argparse.Action, raw: Any, from_env: bool) -> Any:
    """``raw`` (a TOML value, or an environment string) as the option's value.

    :raises SettingsError: what is wrong (without saying where: the caller adds that).
    """
    if action.nargs == 0:  # a switch (store_true, store_false, store_const)
        if from_env and isinstance(raw, str):
            word = raw.strip().lower()
            if word not in _TRUE | _FALSE:
                raise SettingsError(f"{raw!r} is not a switch: use 1/true/yes/on or 0/false/no/off")
            raw = word in _TRUE
        if not isinstance(raw, bool):
            raise SettingsError(f"{raw!r} is not true or false")
        return action.const if raw else action.default
    if isinstance(action, argparse._AppendAction):
        if from_env and isinstance(raw, str):
            items: list[Any] = [item for item in _LIST_SPLIT.split(raw) if item]
        elif isinstance(raw, list):
            items = raw
        else:
            items = [raw]
        return [_one(action, item) for item in items]
    if isinstance(raw, list | dict):
        raise SettingsError("takes one value, not an array or table")
    if not isinstance(action, argparse._StoreAction) or action.nargs is not None:
        raise SettingsError(f"{_flag(action)} can only be given on the command line")
    return _one(action, raw)


def _one(action: argparse.Action, raw: Any) -> Any:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise SettingsError(f"{raw!r} is not a value {_flag(action)} takes")
    text = str(raw)
    convert: Callable[[str], Any] | None = action.type  # type: ignore[assignment]
    try:
        value = text if convert is None else convert(text)
    except argparse.ArgumentTypeError as exc:
        raise SettingsError(str(exc)) from None
    except (TypeError, ValueError):
        raise SettingsError(f"invalid value {text!r} for {_flag(action)}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise SettingsError(f"invalid choice {text!r}: use one of {choices}")
    return value


# the file ---------------------------------------------------------------------------------
def _from_file(options: dict[str, argparse.Action], path: Path, where: str) -> list[Setting]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"{where} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{where} {path}: cannot read it: {exc}") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message ends "(at line N, column M)"
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    lines = text.splitlines()
    settings: list[Setting] = []
    has_secret = False
    seen: dict[str, str] = {}
    for key, raw in table.items():
        at = f"{path} line {_line_of(lines, key)} ({key})"
        dest = key.replace("-", "_")
        secret_file = dest.endswith(FILE_SUFFIX) and is_secret(dest[: -len(FILE_SUFFIX)])
        if secret_file:
            dest = dest[: -len(FILE_SUFFIX)]
        if isinstance(raw, dict):
            raise SettingsError(
                f"{at}: the file has no [sections]: put settings at the top (port = 8080)"
            )
        if dest not in options:
            raise SettingsError(f"{at}: unknown setting{_suggest(key, _file_keys(options))}")
        if dest in seen:
            raise SettingsError(f"{at}: {dest} is already set by {seen[dest]}; keep one")
        seen[dest] = key
        try:
            if secret_file:
                if not isinstance(raw, str):
                    raise SettingsError("takes the path of a file, as a string")
                secret = path.absolute().parent / raw  # relative to the config file
                value = _convert(options[dest], _read_secret(secret), from_env=False)
            else:
                value = _convert(options[dest], raw, from_env=False)
                if isinstance(value, Path) and not value.is_absolute():
                    # relative to the file, as secrets' paths
                    value = Path(os.path.normpath(path.absolute().parent / value))
        except SettingsError as exc:
            raise SettingsError(f"{at}: {exc}") from None
        has_secret |= is_secret(dest) and not secret_file
        settings.append(Setting(dest, value, at))
    if has_secret:
        _warn_if_readable(path)
    return settings


def _line_of(lines: list[str], key: str) -> int | str:
    name = re.escape(key)
    pattern = re.compile(rf"""\s*(?:(["']?){name}\1\s*=|\[\s*(["']?){name}\2\s*\])""")
    for number, line in enumerate(lines, 1):
        if pattern.match(line):
            return number
    return "?"


def _file_keys(options: dict[str, argparse.Action]) -> list[str]:
    keys = list(options)
    keys += [dest + FILE_SUFFIX for dest in options if is_secret(dest)]
    return keys


def _warn_if_readable(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & 0o044:
        print(
            f"callbridge: warning: {path} holds a secret and other users can read it: "
            f"chmod 600 {path}, or move the secret to a *_file setting",
            file=sys.stderr,
        )


# the environment --------------------------------------------------------------------------
def _from_environment(
    options: dict[str, argparse.Action], environ: Mapping[str, str]
) -> list[Setting]:
    settings: list[Setting] = []
    names = {ENV_PREFIX + dest.upper(): dest for dest in options}
    for dest in options:
        name = ENV_PREFIX + dest.upper()
        direct, file_name = environ.get(name, ""), name + FILE_SUFFIX.upper()
        from_file = environ.get(file_name, "") if is_secret(dest) else ""
        if direct and from_file:
            raise SettingsError(f"both {name} and {file_name} are set: keep one")
        try:
            if from_file:
                value = _convert(options[dest], _read_secret(Path(from_file)), from_env=False)
                settings.append(Setting(dest, value, file_name))
            elif direct:
                settings.append(Setting(dest, _convert(options[dest], direct, True), name))
        except SettingsError as exc:
            shown = from_file if from_file else ("(hidden)" if is_secret(dest) else direct)
            raise SettingsError(f"{file_name if from_file else name}={shown}: {exc}") from None
    known = set(names) | {n + FILE_SUFFIX.upper() for n, d in names.items() if is_secret(d)}
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known and name != CONFIG_ENV:
            hint = _suggest(name, sorted(known))
            if hint:
                print(f"callbridge: warning: {name} is not a setting{hint}", file=sys.stderr)
    return settings


def _read_secret(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"the secret file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read the secret file {path}: {exc}") from None
    value = text.removesuffix("\n").removesuffix("\r")
    if not value:
        raise SettingsError(f"the secret file {path} is empty")
    return value


# after parsing ----------------------------------------------------------------------------
def _config_option(parser: argparse.ArgumentParser, argv: list[str]) -> Path | None:
    """``--config`` from the command line, read before the real parse needs the defaults."""
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    early.add_argument("--config", type=Path)
    try:
        found, _ = early.parse_known_args(argv)
    except argparse.ArgumentError as exc:
        parser.error(str(exc))
    config: Path | None = found.config
    return config


def _command_line_replaces_lists(ns: argparse.Namespace, settings: list[Setting]) -> None:
    """argparse's ``append`` adds to the default; a list from the file or environment is
    replaced by the command line's instead (it is the same value given a higher way)."""
    for setting in settings:
        given = getattr(ns, setting.dest, None)
        before = setting.value
        if not (isinstance(before, list) and isinstance(given, list)) or given is before:
            continue
        if given[: len(before)] == before:
            setattr(ns, setting.dest, given[len(before) :])


def _warn_secrets_in_argv(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    for dest, action in _options(parser).items():
        if not is_secret(dest):
            continue
        for flag in action.option_strings:
            if any(arg == flag or arg.startswith(flag + "=") for arg in argv):
                name = ENV_PREFIX + dest.upper()
                print(
                    f"callbridge: warning: {flag} on the command line is visible to every "
                    f"local user (ps, /proc); use {name}, {name}{FILE_SUFFIX.upper()} or "
                    f"{dest} in the --config file (docs/operations.md, Secrets)",
                    file=sys.stderr,
                )


def _say_sources(settings: list[Setting]) -> None:
    """One line naming where settings came from (never their values)."""
    if not settings:
        return
    names = ", ".join(sorted({s.source.split(" line ")[0] for s in settings}))
    print(f"callbridge: settings from {names}", file=sys.stderr)


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.85)
    return f"; did you mean {close[0]}?" if close else ""
