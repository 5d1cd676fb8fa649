"""``callbridge forwarding show|set|dnd|clear NAME``: a user's forwarding rules from the
command line (issue 16; the model is :mod:`callbridge.forwarding`, docs/routing.md).

``set`` changes only what it is given. A step is ``--step TARGETS[@SECONDS]``: targets
separated by commas, each ``devices``, ``user:NAME``, ``number:+E164`` (``!`` after it:
screened, the answerer must press 1), ``queue:NAME``, ``application:ID`` or
``conference:NAME``. ``--step`` given at least once replaces every step; ``--no-steps`` removes
them. Examples::

    callbridge forwarding set alice --step devices@15 --step 'number:+14155550100!@25'
    callbridge forwarding set alice --on-busy user:bob --ring-seconds 20
    callbridge forwarding dnd alice on
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from callbridge.cli import EXIT_OK, CommandError, _with_store
from callbridge.forwarding import Forwarding
from callbridge.store import Store

__all__ = ["add_forwarding_commands", "parse_step"]

_KEEP: Any = object()  # --ring-seconds not given (none is given as "none")


def parse_step(text: str) -> dict[str, Any]:
    """``--step`` text as a step: ``devices,user:bob@15``."""
    targets_text, at, seconds_text = text.rpartition("@") if "@" in text else (text, "", "")
    seconds: int | None = None
    if at:
        if not seconds_text.isdigit():
            raise argparse.ArgumentTypeError(
                f"invalid step {text!r}: after '@' comes whole seconds, e.g. devices@15"
            )
        seconds = int(seconds_text)
    targets: list[Any] = []
    for item in filter(None, (t.strip() for t in targets_text.split(","))):
        if item.endswith("!"):
            kind, _, value = item[:-1].partition(":")
            targets.append({"type": kind, "value": value, "screening": True})
        else:
            targets.append(item)
    if not targets:
        raise argparse.ArgumentTypeError(f"invalid step {text!r}: name at least one target")
    return {"targets": targets, "seconds": seconds}


def _seconds(text: str) -> int | None:
    if text.lower() == "none":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"invalid seconds {text!r}: a whole number or none")
    return int(text)


def add_forwarding_commands(commands: Any, database: argparse.ArgumentParser) -> None:
    """Add ``forwarding`` to the ``callbridge`` subcommands."""
    forwarding = commands.add_parser(
        "forwarding", help="a user's forwarding rules (find-me/follow-me) and do-not-disturb"
    ).add_subparsers(dest="forwarding_command", required=True, metavar="ACTION")
    show = forwarding.add_parser("show", parents=[database], help="show a user's rules")
    show.add_argument("name", help="the user's login name")
    show.add_argument("--json", action="store_true", help="as JSON (the REST shape)")
    show.set_defaults(run=_show)
    change = forwarding.add_parser(
        "set",
        parents=[database],
        help="change a user's rules (what is not given is kept)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    change.add_argument("name", help="the user's login name")
    change.add_argument("--ring-seconds", type=_seconds, default=_KEEP, metavar="N|none")
    change.add_argument(
        "--step", type=parse_step, action="append", metavar="TARGETS[@SECONDS]", default=None
    )
    change.add_argument("--no-steps", action="store_true", help="remove every step")
    for outcome in ("busy", "no-answer", "offline", "dnd"):
        change.add_argument(
            f"--on-{outcome}",
            metavar="ACTION",
            help="next, end, end:REASON, or a destination such as user:NAME or number:+E164",
        )
    change.set_defaults(run=_set)
    dnd = forwarding.add_parser("dnd", parents=[database], help="turn do-not-disturb on or off")
    dnd.add_argument("name", help="the user's login name")
    dnd.add_argument("state", choices=("on", "off"))
    dnd.set_defaults(run=_dnd)
    clear = forwarding.add_parser(
        "clear", parents=[database], help="remove a user's rules (ring all devices again)"
    )
    clear.add_argument("name", help="the user's login name")
    clear.set_defaults(run=_clear)


def _print(name: str, rules: Forwarding, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(rules.as_dict(), indent=2))
        return
    ring = f"{rules.ring_seconds} s" if rules.ring_seconds else "the server's ring timeout"
    print(f"{name}: DND {'on' if rules.dnd else 'off'}; a step rings {ring} unless it says")
    if not rules.steps:
        print("  no steps: every device of the user rings")
    for n, step in enumerate(rules.steps, 1):
        targets = ", ".join(
            t.describe() + (" (screened)" if t.screening else "") for t in step.targets
        )
        seconds = f" for {step.seconds} s" if step.seconds else ""
        print(f"  step {n}: {targets}{seconds}")
    print(f"  on busy: {rules.on_busy}; no answer: {rules.on_no_answer}; "
          f"offline: {rules.on_offline}; DND: {rules.on_dnd}")  # fmt: skip


def _show(args: argparse.Namespace) -> int:
    rules = _with_store(args, lambda store: store.get_forwarding(args.name))
    _print(args.name, rules, args.json)
    return EXIT_OK


def _set(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.ring_seconds is not _KEEP:
        changes["ring_seconds"] = args.ring_seconds
    if args.no_steps and args.step:
        raise CommandError("--no-steps and --step together: pick one")
    if args.no_steps:
        changes["steps"] = []
    elif args.step:
        changes["steps"] = args.step
    for outcome in ("busy", "no_answer", "offline", "dnd"):
        value = getattr(args, f"on_{outcome}")
        if value is not None:
            changes[f"on_{outcome}"] = value
    if not changes:
        raise CommandError("nothing to change: give --step, --ring-seconds or --on-… options")

    async def update(store: Store) -> Forwarding:
        return await store.update_forwarding(args.name, changes)

    _print(args.name, _with_store(args, update))
    return EXIT_OK


def _dnd(args: argparse.Namespace) -> int:
    async def update(store: Store) -> Forwarding:
        return await store.update_forwarding(args.name, {"dnd": args.state == "on"})

    rules = _with_store(args, update)
    print(f"{args.name}: do-not-disturb {'on' if rules.dnd else 'off'}")
    return EXIT_OK


def _clear(args: argparse.Namespace) -> int:
    _with_store(args, lambda store: store.clear_forwarding(args.name))
    print(f"{args.name}: no forwarding rules; calls ring every device")
    return EXIT_OK
