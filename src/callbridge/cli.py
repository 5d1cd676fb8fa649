"""The ``callbridge`` command: run the server and manage users, login tokens and API keys.

    callbridge serve [--host 127.0.0.1] [--port 8080] [--data-dir DIR] ...  (cli_serve.py)
    callbridge users add NAME --extension EXT [--number E164] [--display-name TEXT]
    callbridge users list | remove NAME
    callbridge users sip-password NAME | registrations   (cli_sip.py)
    callbridge token NAME [--ttl 24h]
    callbridge apikey create [--name NAME] | list | revoke ID
    callbridge routes add DESTINATION APPLICATION_ID | routes list | routes remove DESTINATION
    callbridge backup DEST   (cli_backup.py; serve's settings file and CALLBRIDGE_*: settings.py)

Every command takes ``--data-dir`` (else ``$CALLBRIDGE_DATA_DIR``, else ``./callbridge-data``
in the current directory; resolved once to an absolute path, see :func:`resolve_data_dir`)
holding the SQLite database, or ``--database-url`` (any SQLAlchemy async URL; it wins over
``--data-dir``). Only ``serve`` and a command given ``--init`` create a new database at the
default location: anything else refuses, naming the path it tried (a second, empty database
made by running a command from another directory was a real trap).
Commands that print a secret print it alone on the last line, so scripts can take it with
``tail -n 1``.

Exit codes: 0 success, 1 the database could not be used, 2 bad arguments or a refused
request (user exists, unknown user, …), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import re
import shlex
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from callbridge import __version__
from callbridge.config import DEFAULT_DATA_DIR, database_url_for
from callbridge.store import SchemaError, Store, StoreError, User, UserNotFound
from callbridge.store.identities import ApiKeyInfo

__all__ = ["DATA_DIR_ENV", "build_parser", "main", "parse_ttl", "resolve_data_dir"]

DATA_DIR_ENV = "CALLBRIDGE_DATA_DIR"

PROG = "callbridge"
EXIT_OK = 0
EXIT_DATABASE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_TTL = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd]?)", re.ASCII)
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL = timedelta(days=3650)
PRIVATE_UMASK = 0o077
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

T = TypeVar("T")


class CommandError(Exception):
    """A request the CLI refuses or cannot carry out: printed as one line, no traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# argument types ---------------------------------------------------------------------------
def parse_ttl(text: str) -> timedelta:
    """``90s``, ``30m``, ``24h``, ``7d`` or plain seconds (``3600``) as a timedelta."""
    match = _TTL.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"invalid ttl {text!r}: use a number of seconds or e.g. 90s, 30m, 24h, 7d"
        )
    seconds = float(match[1]) * _TTL_UNITS[match[2]]
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"invalid ttl {text!r}: it must be more than 0")
    if seconds > MAX_TTL.total_seconds():
        raise argparse.ArgumentTypeError(
            f"invalid ttl {text!r}: at most {MAX_TTL.days}d; issue a new token instead"
        )
    return timedelta(seconds=seconds)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: use 1 to 65535")
    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use seconds, more than 0")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: use a whole number, 1 or more")
    return value


def _ip_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid address {text!r}: use an IP address of this machine, e.g. 192.0.2.10"
        ) from None


def _ice_url(*schemes: str) -> Callable[[str], str]:
    """An argument type for ICE server URLs (RFC 7064 stun:, RFC 7065 turn:)."""

    def parse(text: str) -> str:
        scheme, _, rest = text.partition(":")
        if scheme not in schemes or not rest:
            names = " or ".join(f"{s}:" for s in schemes)
            raise argparse.ArgumentTypeError(
                f"invalid URL {text!r}: it starts with {names}, e.g. {schemes[0]}:host:3478"
            )
        return text

    return parse


# parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    # Imported here: the command modules import this module's helpers and types.
    from callbridge import (
        cli_accounts,
        cli_backup,
        cli_cdrs,
        cli_devcert,
        cli_dialplan,
        cli_drain,
        cli_forwarding,
        cli_serve,
        cli_sip,
        cli_trunks,
    )

    database = argparse.ArgumentParser(add_help=False)
    group = database.add_argument_group("database")
    group.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,  # this very object: resolve_data_dir tells it from an option
        metavar="DIR",
        help=f"directory of the SQLite database (default: ${DATA_DIR_ENV}, else "
        f"./{DEFAULT_DATA_DIR} in the current directory)",
    )
    group.add_argument(
        "--init",
        action="store_true",
        help="create the database if there is none at the default location (serve always may)",
    )
    group.add_argument(
        "--database-url",
        metavar="URL",
        help="SQLAlchemy async URL, e.g. postgresql+asyncpg://user:pw@host/db "
        "(default: SQLite in --data-dir)",
    )

    parser = argparse.ArgumentParser(
        prog=PROG, description="callbridge: a self-hosted programmable voice platform."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # Each command module adds its subcommand (one line each).
    cli_serve.add_serve_command(commands, database)
    cli_drain.add_drain_command(commands, database)
    cli_accounts.add_account_commands(commands, database)
    cli_trunks.add_trunk_commands(commands, database)
    cli_cdrs.add_cdrs_command(commands, database)
    cli_dialplan.add_dialplan_commands(commands, database)  # issue 16
    cli_forwarding.add_forwarding_commands(commands, database)  # issue 16
    cli_devcert.add_dev_cert_command(commands, database)
    cli_backup.add_backup_command(commands, database)

    users = commands.add_parser("users", help="add and list users").add_subparsers(
        dest="users_command", required=True, metavar="ACTION"
    )
    add = users.add_parser("add", parents=[database], help="add a user", description="Add a user.")
    add.add_argument("name", help="login name: 1-64 letters, digits, '.', '_' or '-'")
    add.add_argument("--extension", required=True, help="2-8 digits, dialled to reach the user")
    add.add_argument("--number", help="E.164 number, e.g. +14155550100")
    add.add_argument("--display-name", help='name shown to callees, e.g. "Alice Smith"')
    cli_accounts.add_account_option(add, "the user")
    cli_sip.add_sip_password_option(add)
    add.set_defaults(run=_users_add)
    listing = users.add_parser(
        "list", parents=[database], help="list users", description="List users."
    )
    listing.set_defaults(run=_users_list)
    remove = users.add_parser(
        "remove",
        parents=[database],
        help="remove a user",
        description="Remove a user with their login tokens and SIP credentials. A running "
        "server refuses their tokens from now on; a session they have signed in is ended by "
        "the server at its next token check (see docs/operations.md).",
    )
    remove.add_argument("name", help="the user's name")
    remove.set_defaults(run=_users_remove)
    cli_sip.add_sip_commands(commands, users, database)

    token = commands.add_parser(
        "token",
        parents=[database],
        help="print a login token for a user",
        description="Print a login token (for session.login on /ws) on the last line.",
    )
    token.add_argument("name", help="the user's name")
    token.add_argument(
        "--ttl",
        type=parse_ttl,
        default=timedelta(hours=24),
        help="lifetime: 90s, 30m, 24h, 7d or seconds (default: 24h)",
    )
    token.set_defaults(run=_token)

    apikey = commands.add_parser("apikey", help="manage REST API keys").add_subparsers(
        dest="apikey_command", required=True, metavar="ACTION"
    )
    create = apikey.add_parser(
        "create",
        parents=[database],
        help="create an API key",
        description="Create a REST API key and print it on the last line.",
    )
    create.add_argument("--name", help="a label for the key, e.g. the app using it")
    cli_accounts.add_account_option(create, "the key")
    create.add_argument("--read-only", action="store_true", help="the key may only read (GET)")
    create.add_argument("--admin", action="store_true", help="the key also manages accounts")
    create.set_defaults(run=_apikey_create)
    keys = apikey.add_parser(
        "list",
        parents=[database],
        help="list API keys",
        description="List API keys (never their secret: only its first 8 characters).",
    )
    keys.add_argument("--account", metavar="ID", help="only this account's keys (default: all)")
    keys.set_defaults(run=_apikey_list)
    revoke = apikey.add_parser(
        "revoke",
        parents=[database],
        help="revoke an API key",
        description="Revoke an API key by its ID (from `apikey list`). A running server "
        "refuses it within 10 s (it caches a key's check that long).",
    )
    revoke.add_argument("id", type=_positive_int, help="the key's ID, from `apikey list`")
    revoke.set_defaults(run=_apikey_revoke)

    routes = commands.add_parser(
        "routes", help="send destinations to call control applications"
    ).add_subparsers(dest="routes_command", required=True, metavar="ACTION")
    route_add = routes.add_parser(
        "add",
        parents=[database],
        help="send calls to a destination to an application",
        description="Calls dialled to DESTINATION go to the application (it gets "
        "call.initiated and drives the call over the REST API). Replaces an existing route.",
    )
    route_add.add_argument("destination", help="an extension (2-8 digits) or an E.164 number")
    route_add.add_argument("application_id", help="the call control application's id")
    route_add.set_defaults(run=_routes_add)
    route_list = routes.add_parser(
        "list", parents=[database], help="list routes and applications", description="List routes."
    )
    route_list.set_defaults(run=_routes_list)
    route_remove = routes.add_parser(
        "remove", parents=[database], help="remove a route", description="Remove a route."
    )
    route_remove.add_argument("destination")
    route_remove.set_defaults(run=_routes_remove)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        resolve_data_dir(args)
        check: Callable[[argparse.ArgumentParser, argparse.Namespace], None] | None
        check = getattr(args, "check", None)  # checks across a command's options
        if check is not None:
            check(parser, args)
    except SystemExit as exc:  # --help, --version, usage errors: argparse has printed why
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    run: Callable[[argparse.Namespace], int] = args.run
    # Files the commands create (the data directory, the database with the webhook signing
    # key, recordings, media, logs) are the operator's alone: 0700 directories, 0600 files.
    umask = os.umask(PRIVATE_UMASK)
    try:
        return run(args)
    except CommandError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        os.umask(umask)  # main() may run inside another program (tests do)


# commands ---------------------------------------------------------------------------------
def _with_store(args: argparse.Namespace, body: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``body`` with the store open; store refusals and database failures become
    ``CommandError``s (one line, no traceback)."""

    _check_database_exists(args)
    _say_database(args)

    async def go() -> T:
        async with await Store.open(_database_url(args)) as store:
            return await body(store)

    try:
        return asyncio.run(go())
    except (SchemaError, SQLAlchemyError, OSError) as exc:
        message = f"cannot use the database {_shown_url(args)}: {_reason(exc)}"
        raise CommandError(message, EXIT_DATABASE) from exc
    except (StoreError, ValueError) as exc:  # their messages name the field and the rule
        raise CommandError(str(exc)) from exc


def _users_add(args: argparse.Namespace) -> int:
    from callbridge import cli_sip

    async def add(store: Store) -> User:
        user = await store.add_user(
            args.name,
            args.extension,
            number=args.number,
            display_name=args.display_name,
            account_id=args.account,
        )
        await cli_sip.set_password(store, user, args)  # --sip-password, if given
        return user

    user = _with_store(args, add)
    print(f"added user {_describe(user)}")
    return EXIT_OK


def _users_list(args: argparse.Namespace) -> int:
    users = _with_store(args, lambda store: store.list_users())
    if not users:
        print(f"no users yet; add one with: {_command(args, 'users add NAME --extension EXT')}")
        return EXIT_OK
    rows = [("NAME", "EXTENSION", "NUMBER", "DISPLAY NAME")]
    rows += [(u.name, u.extension, u.number or "-", u.display_name or "-") for u in users]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        print("  ".join([*padded, row[-1]]))
    return EXIT_OK


def _token(args: argparse.Namespace) -> int:
    async def create(store: Store) -> tuple[str, datetime]:
        try:
            return await store.create_token(args.name, args.ttl)
        except UserNotFound as exc:
            raise CommandError(f"{exc} (see: {_command(args, 'users list')})") from exc

    token, expires_at = _with_store(args, create)
    print(
        f"login token for {args.name}, valid until "
        f"{expires_at.strftime('%Y-%m-%d %H:%M:%S')} UTC (ttl {_ttl_text(args.ttl)}):"
    )
    print(token)
    return EXIT_OK


def _apikey_create(args: argparse.Namespace) -> int:
    key = _with_store(
        args,
        lambda store: store.create_api_key(
            args.name,
            account_id=args.account,
            scope="read" if args.read_only else "write",
            admin=args.admin,
        ),
    )
    label = f" {args.name!r}" if args.name else ""
    kind = ("read-only " if args.read_only else "") + ("admin " if args.admin else "")
    print(f"{kind}API key{label} created. It is shown only this once; keep it secret:")
    print(key)
    return EXIT_OK


def _routes_add(args: argparse.Namespace) -> int:
    route = _with_store(args, lambda store: store.set_route(args.destination, args.application_id))
    print(f"calls to {route.destination} now go to application {route.application_id}")
    return EXIT_OK


def _routes_list(args: argparse.Namespace) -> int:
    async def both(store: Store) -> tuple[list[Any], dict[str, str]]:
        apps, _ = await store.list_applications(1, 250)
        return await store.list_routes(), {a.id: a.application_name for a in apps}

    routes, names = _with_store(args, both)
    if not routes:
        print("no routes yet; add one with: " + _command(args, "routes add DEST APP_ID"))
        return EXIT_OK
    for route in routes:
        name = names.get(route.application_id, "?")
        print(f"{route.destination}  ->  {route.application_id} ({name})")
    return EXIT_OK


def _routes_remove(args: argparse.Namespace) -> int:
    route = _with_store(args, lambda store: store.delete_route(args.destination))
    print(f"removed the route of {route.destination}")
    return EXIT_OK


def _users_remove(args: argparse.Namespace) -> int:
    async def remove(store: Store) -> User:
        try:
            return await store.remove_user(args.name)
        except UserNotFound as exc:
            raise CommandError(f"{exc} (see: {_command(args, 'users list')})") from exc

    user = _with_store(args, remove)
    print(f"removed user {_describe(user)}; their tokens and SIP credentials are gone")
    return EXIT_OK


def _apikey_list(args: argparse.Namespace) -> int:
    keys, _ = _with_store(args, lambda store: store.list_api_keys(args.account, 1, 250))
    if not keys:
        print(f"no API keys yet; create one with: {_command(args, 'apikey create')}")
        return EXIT_OK
    rows: list[tuple[str, ...]] = [
        ("ID", "PREFIX", "ACCOUNT", "SCOPE", "CREATED", "LAST USED", "STATUS", "NAME")
    ]
    rows += [_key_row(k) for k in keys]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        print("  ".join([*padded, row[-1]]))
    return EXIT_OK


def _key_row(key: ApiKeyInfo) -> tuple[str, ...]:
    def when(at: datetime | None) -> str:
        return "-" if at is None else at.strftime("%Y-%m-%d %H:%M")

    status = f"revoked {when(key.revoked_at)}" if key.revoked else "active"
    scope = key.scope + ("+admin" if key.admin else "")
    return (
        str(key.id),
        key.prefix,
        key.account_id,
        scope,
        when(key.created_at),
        when(key.last_used_at),
        status,
        key.name or "-",
    )


def _apikey_revoke(args: argparse.Namespace) -> int:
    from callbridge.store.identities import ApiKeyNotFound

    async def revoke(store: Store) -> ApiKeyInfo:
        try:
            return await store.revoke_api_key(args.id)
        except ApiKeyNotFound as exc:
            raise CommandError(f"{exc} (see: {_command(args, 'apikey list')})") from exc

    key = _with_store(args, revoke)
    label = f" {key.name!r}" if key.name else ""
    print(f"revoked API key {key.id}{label} ({key.prefix}...)")
    return EXIT_OK


# data directory ---------------------------------------------------------------------------
def resolve_data_dir(args: argparse.Namespace) -> None:
    """Settle ``args.data_dir`` once, as an absolute path: ``--data-dir``, else
    ``$CALLBRIDGE_DATA_DIR``, else ``./callbridge-data`` in the current directory.
    ``args.data_dir_source`` says which (``option``, ``env``, ``default``)."""
    if not hasattr(args, "data_dir"):
        return
    if args.data_dir is not DEFAULT_DATA_DIR:
        source, path = "option", args.data_dir
    elif os.environ.get(DATA_DIR_ENV):
        source, path = "env", Path(os.environ[DATA_DIR_ENV])
    else:
        source, path = "default", DEFAULT_DATA_DIR
    args.data_dir = path.expanduser().absolute()
    args.data_dir_source = source


def _check_database_exists(args: argparse.Namespace) -> None:
    """Refuse to create a new database at the default location, except for ``serve`` and
    with ``--init``: a command run from another directory would otherwise make a second,
    empty database and its users would not exist for the server."""
    if args.database_url or getattr(args, "data_dir_source", "option") != "default":
        return
    if args.command == "serve" or getattr(args, "init", False):
        return
    database = args.data_dir / "callbridge.db"
    if database.exists():
        return
    raise CommandError(
        f"there is no database at {database} (the default data directory, "
        f"./{DEFAULT_DATA_DIR} in the current directory {Path.cwd()}). Run this from the "
        f"directory you run `callbridge serve` in, or pass --data-dir DIR (or set "
        f"{DATA_DIR_ENV}) to use the server's; add --init to create a new empty database here",
        EXIT_DATABASE,
    )


def _say_database(args: argparse.Namespace) -> None:
    """Which database a command opened: always for ``serve``, and for the other commands when
    a person watches (stderr is a terminal), so that scripts' output stays as it was."""
    if args.command == "serve" or sys.stderr.isatty():
        print(f"{PROG}: database {_shown_url(args)}", file=sys.stderr)


# helpers ----------------------------------------------------------------------------------
def _database_url(args: argparse.Namespace) -> str:
    url: str | None = args.database_url
    return url if url else database_url_for(args.data_dir)


def _shown_url(args: argparse.Namespace) -> str:
    """The database URL, safe to print: any password is masked."""
    url = _database_url(args)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparsable --database-url)"


def _command(args: argparse.Namespace, rest: str) -> str:
    """A ``callbridge`` command line that uses the same database as this one."""
    if args.database_url:
        where = f"--database-url {shlex.quote(_shown_url(args))}"
    else:
        where = f"--data-dir {shlex.quote(str(args.data_dir))}"
    return f"{PROG} {rest} {where}"


def _ws_url(host: str, port: int) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"ws://{host}:{port}/ws"
    if address.is_unspecified:  # listening everywhere: loopback works from this machine
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    shown = f"[{address}]" if address.version == 6 else str(address)
    return f"ws://{shown}:{port}/ws"


def _describe(user: User) -> str:
    parts = [f"extension {user.extension}"]
    if user.number:
        parts.append(f"number {user.number}")
    if user.display_name:
        parts.append(f"display name {user.display_name!r}")
    return f"{user.name}: {', '.join(parts)}"


def _ttl_text(ttl: timedelta) -> str:
    seconds = ttl.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return str(exc.orig)  # the driver's message, without SQLAlchemy's SQL dump
    return str(exc)
