"""SIP trunks, outbound routes, the dial policy and number routing on the command line (issue 12).

    callbridge trunks add NAME --host HOST [--port P] [--transport udp|tcp|tls] [--proxy H[:P]]
                              [--username U] [--auth-username U] [--password-stdin]
                              [--register] [--register-expires S] [--acl CIDR,…]
                              [--inbound-username U] [--codecs PCMU,PCMA] [--options-interval S]
                              [--max-calls N] [--calls-per-minute N] [--send-pai] [--privacy id]
    callbridge trunks list [--account ID]          (with the registration and health state)
    callbridge trunks remove NAME|ID
    callbridge outbound add PREFIX --trunks A,B      (failover order)
    callbridge outbound list | remove PREFIX
    callbridge outbound policy [--allow P,… | --no-allow-list] [--deny P,…]
                             [--user-max-calls N] [--user-calls-per-minute N]
    callbridge numbers add +E164 [--user NAME | --application ID | --conference NAME |
                                  --queue NAME] [--allow-outbound]

Every command takes ``--account ID`` (default: the default account). Passwords are read from
standard input (``--password-stdin``: the carrier password on the first line, the inbound one on
the second when ``--inbound-username`` is given), never from the command line, so that they do
not show in the process list or the shell history; listings never show them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from callbridge.cli import EXIT_OK, CommandError, _command, _with_store
from callbridge.cli_accounts import account_of_args, add_account_option
from callbridge.store import Store
from callbridge.store.trunks import TrunkNotFound
from callbridge.trunks import NUMBER_TARGETS, PRIVACY_VALUES, TRANSPORTS, OutboundRoute, Trunk

__all__ = [
    "add_number",
    "add_number_target_options",
    "add_trunk_commands",
    "number_target",
]


def _limit(text: str) -> int | None:
    if text.lower() in ("none", "unlimited"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use a whole number, or 'none'") from None


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_trunk_commands(commands: Any, database: argparse.ArgumentParser) -> None:
    """Add ``trunks`` and ``routes`` to the ``callbridge`` subcommands."""
    trunks = commands.add_parser(
        "trunks", help="SIP trunks: carriers and PBXs calls go out through and come in from"
    ).add_subparsers(dest="trunks_command", required=True, metavar="ACTION")
    add = trunks.add_parser(
        "add",
        parents=[database],
        help="add a trunk",
        description="Add a SIP trunk (see docs/sip.md, Trunks). Passwords come from standard "
        "input with --password-stdin.",
    )
    add.add_argument("name", help="a name, unique in the account, e.g. telnyx")
    add.add_argument("--host", required=True, help="the carrier's SIP host (DNS name or IP)")
    add.add_argument("--port", type=int, help="its port (default 5060, 5061 for tls)")
    add.add_argument("--transport", choices=TRANSPORTS, default="udp")
    add.add_argument("--proxy", metavar="HOST[:PORT]", help="an outbound proxy to send through")
    add.add_argument("--username", help="the carrier account's user name (From, REGISTER)")
    add.add_argument("--auth-username", help="the digest user name, if not --username")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the carrier password (and, with --inbound-username, the inbound one on a "
        "second line) from standard input",
    )
    add.add_argument("--register", action="store_true", help="register to the carrier")
    add.add_argument("--register-expires", type=int, default=3600, metavar="SECONDS")
    add.add_argument(
        "--acl",
        type=_list,
        default=[],
        metavar="CIDR,…",
        help="addresses inbound calls from this trunk may come from",
    )
    add.add_argument("--inbound-username", help="digest user the carrier answers us with")
    add.add_argument("--codecs", type=_list, metavar="C,…", help="default PCMU,PCMA")
    add.add_argument("--options-interval", type=int, default=30, metavar="SECONDS")
    add.add_argument("--max-calls", type=_limit, default=10, metavar="N|none")
    add.add_argument("--calls-per-minute", type=_limit, default=60, metavar="N|none")
    add.add_argument("--send-pai", action="store_true", help="send P-Asserted-Identity")
    add.add_argument("--privacy", choices=PRIVACY_VALUES, default="none")
    add_account_option(add, "the trunk")
    add.set_defaults(run=_trunks_add)

    listing = trunks.add_parser(
        "list", parents=[database], help="list trunks and their registration state"
    )
    listing.add_argument("--account", metavar="ID", help="only this account's trunks")
    listing.set_defaults(run=_trunks_list)

    remove = trunks.add_parser("remove", parents=[database], help="remove a trunk")
    remove.add_argument("trunk", help="its name or id")
    add_account_option(remove, "the trunk")
    remove.set_defaults(run=_trunks_remove)

    routes = commands.add_parser(
        "outbound", help="outbound routes (destination prefixes to trunks) and the dial policy"
    ).add_subparsers(dest="outbound_command", required=True, metavar="ACTION")
    route_add = routes.add_parser(
        "add",
        parents=[database],
        help="send a destination prefix to trunks",
        description="E.164 destinations that start with PREFIX (the longest matching prefix "
        "wins; '+' alone matches all) go out through TRUNKS, tried in order on 503, 408 or "
        "no answer. Replaces the account's route for the same prefix.",
    )
    route_add.add_argument("prefix", help="e.g. +1, +4420, or + for everything")
    route_add.add_argument("--trunks", type=_list, required=True, metavar="A,B")
    route_add.add_argument("--name", default="", help="a label")
    add_account_option(route_add, "the route")
    route_add.set_defaults(run=_routes_add)
    route_list = routes.add_parser("list", parents=[database], help="list outbound routes")
    route_list.add_argument("--account", metavar="ID", help="only this account's routes")
    route_list.set_defaults(run=_routes_list)
    route_remove = routes.add_parser("remove", parents=[database], help="remove a route")
    route_remove.add_argument("prefix", help="the route's prefix (or id)")
    add_account_option(route_remove, "the route")
    route_remove.set_defaults(run=_routes_remove)
    policy = routes.add_parser(
        "policy",
        parents=[database],
        help="show or change the account's toll-fraud dial policy",
        description="Without options, show it. Destinations starting with a denied prefix "
        "never reach a trunk; with an allow-list, only those starting with one of its "
        "prefixes do.",
    )
    allow = policy.add_mutually_exclusive_group()
    allow.add_argument("--allow", type=_list, metavar="P,…", help="the allow-list")
    allow.add_argument("--no-allow-list", action="store_true", help="remove the allow-list")
    policy.add_argument("--deny", type=_list, metavar="P,…", help="the deny-list ('' for none)")
    policy.add_argument("--user-max-calls", type=int, metavar="N")
    policy.add_argument("--user-calls-per-minute", type=int, metavar="N")
    add_account_option(policy, "the policy")
    policy.set_defaults(run=_routes_policy)


def add_number_target_options(parser: argparse.ArgumentParser) -> None:
    """``numbers add``'s routing options."""
    target = parser.add_mutually_exclusive_group()
    for kind in NUMBER_TARGETS:
        target.add_argument(
            f"--{kind}",
            metavar="ID" if kind == "application" else "NAME",
            help=f"inbound calls to the number go to this {kind}",
        )
    parser.add_argument(
        "--allow-outbound",
        action="store_true",
        help="a call arriving on this number may be sent on through a trunk (toll-fraud "
        "safety: off unless asked for)",
    )


def number_target(args: argparse.Namespace) -> tuple[str, str] | None:
    for kind in NUMBER_TARGETS:
        value = getattr(args, kind, None)
        if value is not None:
            return kind, value
    return None


async def add_number(store: Store, args: argparse.Namespace) -> str:
    """``numbers add``: the account owns the number (it may already) and inbound calls to it
    go where the options say (the target is checked first: nothing changes if it is wrong).
    What to print."""
    account = account_of_args(args)
    target = number_target(args)
    if target is not None:
        await store.check_number_target(account, *target)
    routing = target is not None or args.allow_outbound
    said = []
    if not (routing and await store.number_owner(args.number) == account):
        number = await store.add_number(args.number, account)
        said.append(f"account {number.account_id} now owns {number.number}")
    if not routing:
        return "\n".join([*said, "caller ID only: inbound calls to it are refused until routed"])
    kind, target_id = target if target is not None else (None, None)
    route = await store.route_number(
        args.number, account, kind, target_id, True if args.allow_outbound else None
    )
    where = f"{route.target_kind} {route.target_id}" if route.target_kind else "nowhere yet"
    said.append(
        f"{route.e164}: inbound calls go to {where}"
        + ("; they may be sent on through a trunk" if route.allow_outbound else "")
    )
    return "\n".join(said)


def _read_passwords(count: int) -> list[str]:
    lines = [sys.stdin.readline().rstrip("\r\n") for _ in range(count)]
    if any(not line for line in lines):
        raise CommandError(
            f"--password-stdin: expected {count} non-empty line(s) on standard input"
        )
    return lines


def _trunks_add(args: argparse.Namespace) -> int:
    password = inbound_password = None
    if args.password_stdin:
        lines = _read_passwords(2 if args.inbound_username else 1)
        password = lines[0]
        inbound_password = lines[1] if len(lines) > 1 else None
    elif args.inbound_username:
        raise CommandError("--inbound-username needs --password-stdin for its password")
    values: dict[str, Any] = {
        "name": args.name,
        "host": args.host,
        "transport": args.transport,
        "port": args.port,
        "outbound_proxy": args.proxy,
        "username": args.username,
        "auth_username": args.auth_username,
        "password": password,
        "register": args.register,
        "register_expires": args.register_expires,
        "inbound_acl": args.acl,
        "inbound_username": args.inbound_username,
        "inbound_password": inbound_password,
        "options_interval": args.options_interval,
        "max_calls": args.max_calls,
        "calls_per_minute": args.calls_per_minute,
        "send_pai": args.send_pai,
        "privacy": args.privacy,
    }
    if args.codecs:
        values["codecs"] = args.codecs
    trunk = _with_store(args, lambda store: store.add_trunk(account_of_args(args), **values))
    print(f"added trunk {trunk.name!r} ({trunk.transport} {trunk.host}:{trunk.port}); its id:")
    print(trunk.id)
    if not trunk.inbound_acl and not trunk.inbound_username:
        print("note: no --acl nor --inbound-username: inbound calls from it are refused")
    return EXIT_OK


def _limits(trunk: Trunk) -> str:
    calls = "-" if trunk.max_calls is None else str(trunk.max_calls)
    rate = "-" if trunk.calls_per_minute is None else str(trunk.calls_per_minute)
    return f"{calls}/{rate}"


def _trunks_list(args: argparse.Namespace) -> int:
    trunks = _with_store(args, lambda store: store.list_trunks(args.account))
    if not trunks:
        print("no trunks yet; add one with: " + _command(args, "trunks add NAME --host HOST"))
        return EXIT_OK
    rows = [("NAME", "ACCOUNT", "ADDRESS", "REGISTRATION", "HEALTH", "CALLS/MIN", "ID")]
    for t in trunks:
        registration = t.registration_state
        if t.registration_detail:
            registration += f" ({t.registration_detail})"
        rows.append(
            (
                t.name,
                t.account_id,
                f"{t.transport}:{t.host}:{t.port}",
                registration,
                t.health,
                _limits(t),
                t.id,
            )
        )
    _table(rows)
    return EXIT_OK


def _trunks_remove(args: argparse.Namespace) -> int:
    trunk = _with_store(args, lambda store: store.remove_trunk(args.trunk, account_of_args(args)))
    print(f"removed trunk {trunk.name!r} ({trunk.id}) and dropped it from the routes")
    return EXIT_OK


def _routes_add(args: argparse.Namespace) -> int:
    async def add(store: Store) -> OutboundRoute:
        try:
            return await store.set_outbound_route(
                args.prefix, args.trunks, account_of_args(args), args.name
            )
        except TrunkNotFound as exc:
            hint = _command(args, "trunks list")
            raise CommandError(f"{exc} in account {account_of_args(args)} (see: {hint})") from exc

    route = _with_store(args, add)
    print(f"{route.prefix}… goes out through {', '.join(args.trunks)} (route {route.id})")
    return EXIT_OK


def _routes_list(args: argparse.Namespace) -> int:
    async def both(store: Store) -> list[tuple[str, ...]]:
        names = {t.id: t.name for t in await store.list_trunks(args.account)}
        return [
            (r.prefix, r.account_id, ", ".join(names.get(i, i) for i in r.trunk_ids) or "-", r.id)
            for r in await store.list_outbound_routes(args.account)
        ]

    rows = _with_store(args, both)
    if not rows:
        print(
            "no outbound routes yet; add one with: "
            + _command(args, "outbound add + --trunks NAME")
        )
        return EXIT_OK
    _table([("PREFIX", "ACCOUNT", "TRUNKS (in order)", "ID"), *rows])
    return EXIT_OK


def _routes_remove(args: argparse.Namespace) -> int:
    route = _with_store(
        args, lambda store: store.remove_outbound_route(args.prefix, account_of_args(args))
    )
    print(f"removed the route for {route.prefix}")
    return EXIT_OK


def _routes_policy(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.allow is not None:
        changes["allow_prefixes"] = args.allow
    if args.no_allow_list:
        changes["allow_prefixes"] = None
    if args.deny is not None:
        changes["deny_prefixes"] = args.deny
    if args.user_max_calls is not None:
        changes["user_max_calls"] = args.user_max_calls
    if args.user_calls_per_minute is not None:
        changes["user_calls_per_minute"] = args.user_calls_per_minute
    account = account_of_args(args)

    async def apply(store: Store) -> Any:
        if changes:
            return await store.set_dial_policy(account, **changes)
        return await store.dial_policy(account)

    policy = _with_store(args, apply)
    allow = "none (every destination not denied)"
    if policy.allow_prefixes is not None:
        allow = ", ".join(policy.allow_prefixes) or "empty (nothing may be dialled out)"
    print(f"account {account}")
    print(f"allow:                  {allow}")
    print(f"deny:                   {', '.join(policy.deny_prefixes) or 'none'}")
    print(f"user max calls:         {policy.user_max_calls}")
    print(f"user calls per minute:  {policy.user_calls_per_minute}")
    return EXIT_OK


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        print("  ".join([*padded, row[-1]]))
