"""``callbridge cdrs``: the call detail records, as CSV or JSON, for reports and billing.

    callbridge cdrs [--since WHEN] [--until WHEN] [--account ID] [--format csv|json]

``WHEN`` is an ISO 8601 instant with a zone (``2026-12-01T09:00Z``), a date (``2026-12-01``,
midnight UTC) or a span back from now (``90m``, ``24h``, ``7d``). The records are those that
started in ``[since, until)``, oldest first, every account's unless ``--account`` names one.
Each record has the fields of ``GET /v2/detail_records`` (:mod:`callbridge.api.detail_records`);
in CSV, ``call_quality_stats`` is a JSON cell. JSON output is one array (``[]`` when none).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import UTC, date, datetime
from typing import Any

from callbridge.api.detail_records import CdrFilterError, detail_record, parse_instant, since_until
from callbridge.cli import EXIT_OK, CommandError, _with_store, parse_ttl
from callbridge.store import MAX_PAGE_SIZE, Cdr, Store
from callbridge.store.calls import CdrQuery

__all__ = ["add_cdrs_command", "parse_when"]

_FIELDS = (
    "id",
    "cli",
    "cld",
    "callee",
    "direction",
    "started_at",
    "answered_at",
    "finished_at",
    "call_sec",
    "end_reason",
    "hangup_cause",
    "hangup_source",
    "answered_user",
    "answered_device",
    "queue_name",
    "queue_wait_time_secs",
    "conference_id",
    "transferred_to",
    "call_quality_stats",
)


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """``--since`` / ``--until``: an instant with a zone, a date, or a span back from now."""
    text = text.strip()
    if text and text[0].isdigit() and text[-1].lower() in "smhd" and text[:-1].isdigit():
        try:
            return (now or datetime.now(UTC)) - parse_ttl(text)
        except argparse.ArgumentTypeError:
            pass
    if len(text) == 10:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            pass
        else:
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
    try:
        return parse_instant(text, "WHEN")
    except CdrFilterError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use an ISO 8601 instant with a zone "
            "(2026-12-01T09:00Z), a date (2026-12-01) or a span back from now (90m, 24h, 7d)"
        ) from None


def add_cdrs_command(commands: Any, database: argparse.ArgumentParser) -> None:
    """Add ``cdrs`` to the ``callbridge`` subcommands."""
    cdrs = commands.add_parser(
        "cdrs",
        parents=[database],
        help="print call detail records (CSV or JSON)",
        description="Print the CDRs of the calls that started in [--since, --until), oldest "
        "first, with the fields of GET /v2/detail_records.",
    )
    cdrs.add_argument("--since", type=parse_when, metavar="WHEN", help="from this time on")
    cdrs.add_argument("--until", type=parse_when, metavar="WHEN", help="before this time")
    cdrs.add_argument("--account", metavar="ID", help="only this account's records")
    cdrs.add_argument("--format", choices=("csv", "json"), default="csv", help="default: csv")
    cdrs.set_defaults(run=_cdrs)


async def _all(store: Store, query: CdrQuery) -> list[Cdr]:
    found: list[Cdr] = []
    number = 1
    while True:  # page by page: a big table is never one query's result in memory twice
        cdrs, total = await store.search_cdrs(query, number, MAX_PAGE_SIZE)
        found.extend(cdrs)
        if not cdrs or len(found) >= total:
            return found
        number += 1


def _cdrs(args: argparse.Namespace) -> int:
    if args.since is not None and args.until is not None and args.until <= args.since:
        raise CommandError(f"--until ({args.until.isoformat()}) must be after --since")
    query = since_until(args.since, args.until)
    if args.account:
        query = CdrQuery(account_id=args.account, ranges=query.ranges, sort=query.sort)
    records = [detail_record(cdr) for cdr in _with_store(args, lambda store: _all(store, query))]
    if args.format == "json":
        json.dump(records, sys.stdout, indent=1)
        print()
        return EXIT_OK
    writer = csv.DictWriter(sys.stdout, fieldnames=_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for record in records:
        quality = record["call_quality_stats"]
        cells = {**record, "call_quality_stats": "" if quality is None else json.dumps(quality)}
        writer.writerow({k: "" if v is None else v for k, v in cells.items()})
    return EXIT_OK
