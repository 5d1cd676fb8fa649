"""SIP credentials and registrations on the command line (issue 11).

    callbridge users add NAME --extension EXT --sip-password PASS [--sip-domain DOMAIN]
    callbridge users sip-password NAME [--password PASS | --clear] [--sip-domain DOMAIN]
    callbridge registrations [--user NAME]

The SIP username is the user's name. A password is stored only as its digest HA1s in the SIP
domain (the realm), so ``--sip-domain`` here must be the server's (``serve --sip-domain``, by
default its ``--host``); after changing the server's domain, set every SIP password again.
Without ``--password``, ``users sip-password`` asks for it twice on a terminal, or reads one line
from standard input (``echo "$PASS" | callbridge users sip-password alice``), so that it does
not show in the process list or the shell history.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import sys
from typing import Any

from callbridge.cli import EXIT_OK, CommandError, _command, _with_store
from callbridge.config import ServerConfig
from callbridge.store import Store, User, UserNotFound
from callbridge.store.sip import Binding, validate_sip_password

__all__ = ["add_sip_commands", "add_sip_password_option", "default_sip_domain", "set_password"]


def default_sip_domain() -> str:
    """The SIP domain of a server started without ``--sip-domain``: its default ``--host``."""
    config = ServerConfig()
    return config.sip_domain or config.host


def _password(text: str) -> str:
    try:
        return validate_sip_password(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _domain(text: str) -> str:
    # The same normal form as `serve --sip-domain`: the realm is compared exactly.
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        name = text.strip().lower().rstrip(".")
    if not name or len(name) > 253 or not all(c.isalnum() or c in ".-" for c in name):
        raise argparse.ArgumentTypeError(
            f"invalid SIP domain {text!r}: use a host name (sip.example.org) or an IP address"
        )
    return name


def _add_domain_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sip-domain",
        type=_domain,
        default=default_sip_domain(),
        metavar="DOMAIN",
        help="the server's SIP domain, the digest realm (default: %(default)s, as serve's; "
        "must match serve --sip-domain)",
    )


def add_sip_password_option(add: argparse.ArgumentParser) -> None:
    """``--sip-password`` and ``--sip-domain`` for ``users add``."""
    add.add_argument(
        "--sip-password",
        type=_password,
        metavar="PASS",
        help="give the user SIP credentials (username: NAME); 8-128 characters",
    )
    _add_domain_option(add)


async def set_password(store: Store, user: User, args: argparse.Namespace) -> None:
    """Store ``args.sip_password`` for a user ``users add`` just made (if one was given)."""
    if args.sip_password is not None:
        await store.set_sip_password(user.name, args.sip_password, args.sip_domain)


def add_sip_commands(commands: Any, users: Any, database: argparse.ArgumentParser) -> None:
    """Add ``users sip-password`` and ``registrations`` (``users``: the ``users`` actions)."""
    change = users.add_parser(
        "sip-password",
        parents=[database],
        help="set, change or remove a user's SIP password",
        description="Set or change the SIP password of a user (the SIP username is the "
        "user's name). Without --password it is asked for on a terminal, or read as one line "
        "from standard input.",
    )
    change.add_argument("name", help="the user's name")
    which = change.add_mutually_exclusive_group()
    which.add_argument("--password", type=_password, metavar="PASS", help="the new password")
    which.add_argument(
        "--clear",
        action="store_true",
        help="remove the user's SIP credentials and registrations",
    )
    _add_domain_option(change)
    change.set_defaults(run=_sip_password)

    registrations = commands.add_parser(
        "registrations",
        parents=[database],
        help="list registered SIP contacts",
        description="List the live SIP registrations (bindings): user, contact, seconds "
        "left, where it registered from, user agent.",
    )
    registrations.add_argument("--user", metavar="NAME", help="only this user's")
    registrations.set_defaults(run=_registrations)


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("SIP password: ")
        if getpass.getpass("again: ") != first:
            raise CommandError("the passwords differ; nothing changed")
    else:
        first = sys.stdin.readline().rstrip("\r\n")
    try:
        return validate_sip_password(first)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def _sip_password(args: argparse.Namespace) -> int:
    password = None if args.clear else (args.password or _read_password())

    async def apply(store: Store) -> bool:
        try:
            if password is None:
                return await store.clear_sip_password(args.name)
            await store.set_sip_password(args.name, password, args.sip_domain)
            return True
        except UserNotFound as exc:
            raise CommandError(f"{exc} (see: {_command(args, 'users list')})") from exc

    changed = _with_store(args, apply)
    if password is None:
        said = "removed" if changed else "had no"
        print(f"{args.name}: {said} SIP credentials")
    else:
        print(f"{args.name}: SIP password set for domain {args.sip_domain}")
    return EXIT_OK


def _registrations(args: argparse.Namespace) -> int:
    async def listing(store: Store) -> list[Binding]:
        if args.user is not None and await store.get_user(args.user) is None:
            raise CommandError(f"no user named {args.user!r} (see: {_command(args, 'users list')})")
        return await store.bindings(args.user)

    bindings = _with_store(args, listing)
    if not bindings:
        whose = f" of {args.user}" if args.user else ""
        print(f"no live registrations{whose}")
        return EXIT_OK
    rows = [("USER", "CONTACT", "EXPIRES", "FROM", "USER AGENT")]
    rows += [
        (
            b.user_name,
            b.contact,
            f"{b.expires_in()}s",
            f"{b.transport} {_hostport(b.source_host, b.source_port)}",
            b.user_agent or "-",
        )
        for b in bindings
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        print("  ".join([*padded, row[-1]]))
    return EXIT_OK


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
