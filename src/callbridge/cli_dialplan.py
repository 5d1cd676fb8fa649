"""The dial plan and ring groups on the command line (issue 16; docs/routing.md).

    callbridge dialplan add PATTERN --to KIND[:TARGET] [--position N] [--strip N]
                            [--prepend DIGITS] [--days mon-fri] [--hours 09:00-17:00]
                            [--description TEXT]
    callbridge dialplan list
    callbridge dialplan remove ID
    callbridge dialplan settings [--time-zone ZONE] [--holidays 2026-12-25,…]
    callbridge ringgroups add NAME --members alice:15,bob:15 [--strategy sequential]
                              [--no-answer KIND[:TARGET]]
    callbridge ringgroups list
    callbridge ringgroups remove NAME|ID

KIND is user, ring_group, queue, conference, application or trunk (``--no-answer`` also
hangup). Every command takes ``--account ID`` (default: the default account).
"""

from __future__ import annotations

import argparse
from typing import Any

from callbridge.cli import EXIT_OK, CommandError, _command, _with_store
from callbridge.cli_accounts import account_of_args, add_account_option
from callbridge.dialplan_model import DAYS, GROUP_STRATEGIES, DialRule, RingGroupDef

__all__ = ["add_dialplan_commands"]


def _kind(text: str) -> tuple[str, str | None]:
    kind, _, target = text.partition(":")
    return kind.strip(), target.strip() or None


def _members(text: str) -> list[Any]:
    members: list[Any] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        user, _, seconds = part.partition(":")
        if not seconds:
            members.append(user)
            continue
        try:
            members.append({"user": user, "seconds": int(seconds)})
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r}: write USER or USER:SECONDS, e.g. alice:15"
            ) from None
    return members


def add_dialplan_commands(commands: Any, database: argparse.ArgumentParser) -> None:
    """Add ``dialplan`` and ``ringgroups`` to the ``callbridge`` subcommands."""
    plan = commands.add_parser(
        "dialplan", help="the account's dial plan: patterns that send destinations somewhere"
    ).add_subparsers(dest="dialplan_command", required=True, metavar="ACTION")
    add = plan.add_parser(
        "add",
        parents=[database],
        help="add a rule",
        description="Destinations matching PATTERN (2000-2099, 9XXX, +44*, an exact number or "
        "name) go to --to. Rules are tried by position; the first that matches wins.",
    )
    add.add_argument("pattern")
    add.add_argument(
        "--to", required=True, type=_kind, metavar="KIND[:TARGET]",
        help="user[:NAME], ring_group:NAME, queue:NAME, conference:NAME, application:ID, trunk",
    )  # fmt: skip
    add.add_argument("--position", type=int, help="default: after the last rule")
    add.add_argument("--strip", type=int, default=0, help="leading characters to drop")
    add.add_argument("--prepend", default="", help="what to put in front, e.g. +44")
    add.add_argument("--days", help="only on these days, e.g. mon-fri or sat,sun")
    add.add_argument("--hours", metavar="HH:MM-HH:MM", help="only in these hours")
    add.add_argument("--description", default="")
    add_account_option(add, "the rule")
    add.set_defaults(run=_add)
    listing = plan.add_parser("list", parents=[database], help="list the rules in order")
    add_account_option(listing, "the rules")
    listing.set_defaults(run=_list)
    remove = plan.add_parser("remove", parents=[database], help="remove a rule")
    remove.add_argument("id")
    add_account_option(remove, "the rule")
    remove.set_defaults(run=_remove)
    settings = plan.add_parser(
        "settings", parents=[database], help="show or change the time zone and holidays"
    )
    settings.add_argument("--time-zone", help="IANA name, e.g. Europe/London")
    settings.add_argument("--holidays", help="YYYY-MM-DD,… (replaces the list; '' clears it)")
    add_account_option(settings, "the settings")
    settings.set_defaults(run=_settings)

    groups = commands.add_parser(
        "ringgroups", help="ring groups: several users rung for one destination"
    ).add_subparsers(dest="ringgroups_command", required=True, metavar="ACTION")
    gadd = groups.add_parser("add", parents=[database], help="add a ring group")
    gadd.add_argument("name")
    gadd.add_argument(
        "--members", required=True, type=_members, metavar="USER[:SECONDS],…",
        help="in ring order; seconds each (default 20)",
    )  # fmt: skip
    gadd.add_argument("--strategy", choices=GROUP_STRATEGIES, default="simultaneous")
    gadd.add_argument(
        "--no-answer", type=_kind, default=("hangup", None), metavar="KIND[:TARGET]",
        help="where an unanswered call goes: hangup (default), queue:NAME, user:NAME, …",
    )  # fmt: skip
    add_account_option(gadd, "the group")
    gadd.set_defaults(run=_group_add)
    glist = groups.add_parser("list", parents=[database], help="list ring groups")
    add_account_option(glist, "the groups")
    glist.set_defaults(run=_group_list)
    gremove = groups.add_parser("remove", parents=[database], help="remove a ring group")
    gremove.add_argument("group", help="its name or id")
    add_account_option(gremove, "the group")
    gremove.set_defaults(run=_group_remove)


def _describe(rule: DialRule) -> str:
    to = rule.target_kind + (f":{rule.target}" if rule.target else "")
    when = ""
    if rule.days:
        when += " " + ",".join(DAYS[d] for d in rule.days)
    if rule.start and rule.end:
        when += f" {rule.start:%H:%M}-{rule.end:%H:%M}"
    rewrite = ""
    if rule.strip or rule.prepend:
        rewrite = f" (strip {rule.strip}, prepend {rule.prepend!r})"
    return f"{rule.position:>5}  {rule.pattern:<16} -> {to}{rewrite}{when}  [{rule.id}]"


def _add(args: argparse.Namespace) -> int:
    kind, target = args.to
    start = end = None
    if args.hours:
        start, sep, end = args.hours.partition("-")
        if not sep:
            raise CommandError(f"--hours {args.hours!r}: write HH:MM-HH:MM, e.g. 09:00-17:00")
    rule = _with_store(
        args,
        lambda store: store.add_dial_rule(
            account_of_args(args), args.pattern, kind, target, position=args.position,
            strip=args.strip, prepend=args.prepend, days=args.days, start=start, end=end,
            description=args.description,
        ),
    )  # fmt: skip
    print("added " + _describe(rule).strip())
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    rules = _with_store(args, lambda store: store.dial_rules(account_of_args(args)))
    if not rules:
        print("no dial plan rules: calls route as always; add one with: "
              + _command(args, "dialplan add PATTERN --to KIND:TARGET"))  # fmt: skip
        return EXIT_OK
    for rule in rules:
        print(_describe(rule))
    return EXIT_OK


def _remove(args: argparse.Namespace) -> int:
    rule = _with_store(args, lambda store: store.remove_dial_rule(args.id, account_of_args(args)))
    print("removed " + _describe(rule).strip())
    return EXIT_OK


def _settings(args: argparse.Namespace) -> int:
    holidays = None
    if args.holidays is not None:
        holidays = [d.strip() for d in args.holidays.split(",") if d.strip()]
    settings = _with_store(
        args,
        lambda store: store.set_dial_settings(
            account_of_args(args), time_zone=args.time_zone, holidays=holidays
        ),
    )
    days = ", ".join(d.isoformat() for d in settings.holidays) or "none"
    print(f"time zone {settings.time_zone}; holidays: {days}")
    return EXIT_OK


def _group_line(group: RingGroupDef) -> str:
    members = ", ".join(f"{m.user}:{m.seconds}" for m in group.members)
    after = group.no_answer_kind + (f":{group.no_answer_target}" if group.no_answer_target else "")
    return f"{group.name} ({group.strategy}): {members}; no answer -> {after}  [{group.id}]"


def _group_add(args: argparse.Namespace) -> int:
    kind, target = args.no_answer
    group = _with_store(
        args,
        lambda store: store.add_ring_group(
            account_of_args(args), args.name, args.members, strategy=args.strategy,
            no_answer_kind=kind, no_answer_target=target,
        ),
    )  # fmt: skip
    print("added ring group " + _group_line(group))
    return EXIT_OK


def _group_list(args: argparse.Namespace) -> int:
    groups = _with_store(args, lambda store: store.ring_groups(account_of_args(args)))
    if not groups:
        print("no ring groups; add one with: "
              + _command(args, "ringgroups add NAME --members USER,USER"))  # fmt: skip
    for group in groups:
        print(_group_line(group))
    return EXIT_OK


def _group_remove(args: argparse.Namespace) -> int:
    group = _with_store(
        args, lambda store: store.remove_ring_group(args.group, account_of_args(args))
    )
    print("removed ring group " + _group_line(group))
    return EXIT_OK
