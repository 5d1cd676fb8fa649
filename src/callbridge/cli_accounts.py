"""``callbridge accounts`` and ``callbridge numbers``: tenants and the numbers they own.

    callbridge accounts add NAME [--no-recording-notice]     (prints the new id last)
    callbridge accounts list
    callbridge accounts remove ID
    callbridge numbers add NUMBER [--account ID]
    callbridge numbers list [--account ID]
    callbridge numbers remove NUMBER

and ``--account ID`` for ``users add`` and ``apikey create`` (with ``--read-only`` and
``--admin`` there). A single-account install never needs any of it: everything belongs to the
``default`` account unless ``--account`` says otherwise. ``accounts remove`` deletes what the
account owns (users, keys, applications, routes, numbers, media and recording files, queues);
its CDRs are kept.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from callbridge.cli import EXIT_OK, CommandError, _command, _with_store
from callbridge.store import Store
from callbridge.store.accounts import DEFAULT_ACCOUNT_ID, AccountNotFound

__all__ = ["account_of_args", "add_account_commands", "add_account_option"]

T = TypeVar("T")


def add_account_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--account ID``: the account ``what`` belongs to (default: the default account)."""
    parser.add_argument(
        "--account",
        metavar="ID",
        default=DEFAULT_ACCOUNT_ID,
        help=f"the account {what} belongs to (default: %(default)s; see: accounts list)",
    )


def account_of_args(args: argparse.Namespace) -> str:
    account: str = getattr(args, "account", None) or DEFAULT_ACCOUNT_ID
    return account


def add_account_commands(commands: Any, database: argparse.ArgumentParser) -> None:
    """Add ``accounts`` and ``numbers`` to the ``callbridge`` subcommands (``database``: the
    shared ``--data-dir`` / ``--database-url`` options)."""
    accounts = commands.add_parser(
        "accounts", help="add, list and remove accounts (tenants)"
    ).add_subparsers(dest="accounts_command", required=True, metavar="ACTION")
    add = accounts.add_parser(
        "add",
        parents=[database],
        help="add an account",
        description="Add an account and print its id on the last line (for --account).",
    )
    add.add_argument("name", help="a name, unique among accounts, e.g. the customer's")
    add.add_argument(
        "--no-recording-notice",
        action="store_true",
        help="recording a call does not tell its parties (call.recording on /ws)",
    )
    add.set_defaults(run=_accounts_add)
    listing = accounts.add_parser(
        "list", parents=[database], help="list accounts", description="List accounts."
    )
    listing.set_defaults(run=_accounts_list)
    remove = accounts.add_parser(
        "remove",
        parents=[database],
        help="remove an account and everything it owns",
        description="Remove an account and everything it owns (users, API keys, "
        "applications, routes, numbers, media and recordings, queues); its CDRs are kept. "
        "This changes the database only: a running server's calls and sessions of the "
        "account go on until they end (DELETE /v2/accounts/ID with an admin key ends them "
        "at once).",
    )
    remove.add_argument("id", help="the account's id (see: accounts list)")
    remove.set_defaults(run=_accounts_remove)

    numbers = commands.add_parser(
        "numbers", help="numbers an account owns (its caller IDs)"
    ).add_subparsers(dest="numbers_command", required=True, metavar="ACTION")
    from callbridge import cli_trunks  # here: it imports this module

    number_add = numbers.add_parser(
        "add",
        parents=[database],
        help="an account owns a number",
        description="The account owns NUMBER: its users and applications may show it as "
        "caller ID. A number is owned by one account at most.",
    )
    number_add.add_argument("number", help="E.164, e.g. +14155550100")
    add_account_option(number_add, "the number")
    cli_trunks.add_number_target_options(number_add)  # where its inbound calls go (issue 12)
    number_add.set_defaults(run=_numbers_add)
    number_list = numbers.add_parser(
        "list", parents=[database], help="list owned numbers", description="List owned numbers."
    )
    number_list.add_argument("--account", metavar="ID", help="only this account's numbers")
    number_list.set_defaults(run=_numbers_list)
    number_remove = numbers.add_parser(
        "remove",
        parents=[database],
        help="an account no longer owns a number",
        description="The account that owns NUMBER no longer does.",
    )
    number_remove.add_argument("number")
    number_remove.set_defaults(run=_numbers_remove)


def _accounts_add(args: argparse.Namespace) -> int:
    account = _with_store(
        args,
        lambda store: store.create_account(
            args.name, recording_notice=not args.no_recording_notice
        ),
    )
    print(f"added account {account.name!r}; its id (for --account):")
    print(account.id)
    return EXIT_OK


def _accounts_list(args: argparse.Namespace) -> int:
    async def both(store: Store) -> list[tuple[str, str, str, str]]:
        users = await store.list_users()
        rows = []
        for a in await store.list_accounts():
            count = sum(1 for u in users if u.account_id == a.id)
            notice = "on" if a.recording_notice else "off"
            rows.append((a.id, str(count), notice, a.name))
        return rows

    rows = [("ID", "USERS", "RECORDING NOTICE", "NAME"), *_with_store(args, both)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        print("  ".join([*padded, row[-1]]))
    return EXIT_OK


def _accounts_remove(args: argparse.Namespace) -> int:
    deleted = _with_store(args, lambda store: _known(args, store.delete_account(args.id)))
    for path in deleted.files:
        Path(path).unlink(missing_ok=True)
    files = len(deleted.files)
    print(
        f"removed account {deleted.account.name!r} ({deleted.account.id}) and everything it "
        f"owned ({files} media and recording file{'s' if files != 1 else ''} deleted)"
    )
    return EXIT_OK


def _numbers_add(args: argparse.Namespace) -> int:
    from callbridge import cli_trunks

    print(_with_store(args, lambda store: _known(args, cli_trunks.add_number(store, args))))
    return EXIT_OK


def _numbers_list(args: argparse.Namespace) -> int:
    numbers = _with_store(args, lambda store: store.list_number_routes(args.account))
    if not numbers:
        print("no owned numbers yet; add one with: " + _command(args, "numbers add +E164"))
        return EXIT_OK
    width = max(len(n.e164) for n in numbers)
    account_width = max(len(n.account_id) for n in numbers)
    for n in numbers:
        # Where its inbound calls go (issue 12): "-" for a caller-ID-only number.
        target = f"{n.target_kind} {n.target_id}" if n.target_kind else "-"
        target += " (may go out through a trunk)" if n.allow_outbound else ""
        print(f"{n.e164.ljust(width)}  {n.account_id.ljust(account_width)}  {target}")
    return EXIT_OK


def _numbers_remove(args: argparse.Namespace) -> int:
    number = _with_store(args, lambda store: store.remove_number(args.number))
    print(f"account {number.account_id} no longer owns {number.number}")
    return EXIT_OK


async def _known(args: argparse.Namespace, action: Awaitable[T]) -> T:
    """``action``, with a hint where to find account ids when the one given is unknown."""
    try:
        return await action
    except AccountNotFound as exc:
        raise CommandError(f"{exc} (see: {_command(args, 'accounts list')})") from exc
