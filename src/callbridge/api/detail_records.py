"""``GET /v2/detail_records``: search the CDRs (Telnyx's Detail Record Search).

Telnyx keeps one resource for the records of all its products and requires
``filter[record_type]``; callbridge keeps calls only, so ``call-control`` is the one record
type it accepts (another is a 422 saying so). Everything else follows Telnyx's shape: the
filters are ``filter[...]`` query parameters, the paging is ``page[number]`` / ``page[size]``
with ``meta``, and ``sort`` names an instant (``-`` first: newest first), so the official SDK
works as it is::

    client.detail_records.list(
        filter={"record_type": "call-control", "date_range": "today", "cli": "alice"},
        page_size=50, sort=["-started_at"])

A record (:func:`detail_record`) carries Telnyx's call fields (``id``, ``call_leg_id``,
``call_session_id``, ``cli``, ``cld``, ``direction``, ``started_at``, ``answered_at``,
``finished_at``, ``call_sec``, ``hangup_cause``, ``hangup_source``) and callbridge's own
(``callee``, ``end_reason``, ``answered_user``, ``answered_device``, ``queue_name``,
``queue_wait_time_secs``, ``conference_id``, ``transferred_to``, ``call_quality_stats`` per
leg). A key sees its own account's records only.

Filters (each one ``filter[NAME]=VALUE``; an unknown one is a 422 naming it):

- ``record_type`` (required): ``call-control``;
- ``date_range``: ``yesterday``, ``today``, ``tomorrow``, ``last_week``, ``this_week``,
  ``next_week``, ``last_month``, ``this_month``, ``next_month`` or ``last_N_days`` (UTC; weeks
  start on Monday), on ``started_at``;
- ``started_at``, ``answered_at``, ``finished_at`` with ``[gte]``, ``[gt]``, ``[lte]``,
  ``[lt]`` or ``[eq]`` (ISO 8601 with a zone, e.g. ``filter[started_at][gte]=2026-12-01T00:00Z``);
- equal to a value: ``id`` / ``call_leg_id`` / ``call_session_id`` (the call's id), ``cli``
  (the caller), ``cld`` (the number or extension dialled), ``callee``, ``direction``,
  ``end_reason`` (callbridge's reason), ``hangup_source``, ``answered_user``, ``queue_name``,
  ``conference_id``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request

from callbridge.api.context import Ctx, Principal
from callbridge.api.errors import invalid
from callbridge.api.pagination import MAX_PAGE_NUMBER, Page, PageMeta, meta
from callbridge.api.schemas import iso
from callbridge.cdr_details import stored_quality_stats
from callbridge.store import MAX_PAGE_SIZE, Cdr
from callbridge.store.calls import CdrQuery
from callbridge.vocabulary import EndReason
from callbridge.webhooks.telnyx import HANGUP_CAUSES

__all__ = ["CdrFilterError", "detail_record", "parse_instant", "router", "since_until"]

router = APIRouter(tags=["Detail records"])

RECORD_TYPE = "call-control"
# filter[NAME] -> the CDR column it compares with.
_EQUAL = {
    "id": "call_id",
    "call_leg_id": "call_id",
    "call_session_id": "call_id",
    "cli": "caller",
    "cld": "destination",
    "callee": "callee",
    "direction": "direction",
    "end_reason": "end_reason",
    "hangup_source": "hangup_source",
    "answered_user": "answered_user",
    "queue_name": "queue_name",
    "conference_id": "conference_id",
}
# filter[NAME][op] / sort NAME -> the CDR instant.
_INSTANTS = {"started_at": "started_at", "answered_at": "answered_at", "finished_at": "ended_at"}
_OPS = ("gte", "gt", "lte", "lt", "eq")
_TICK = timedelta(microseconds=1)  # the database's resolution: lte x == lt x + 1 µs
_FILTER = re.compile(r"^filter\[([a-z_]+)\](?:\[([a-z]+)\])?$")
_RANGES = (
    "yesterday",
    "today",
    "tomorrow",
    "last_week",
    "this_week",
    "next_week",
    "last_month",
    "this_month",
    "next_month",
)
_LAST_N_DAYS = re.compile(r"^last_(\d{1,4})_days$")


class CdrFilterError(ValueError):
    """A filter, sort or page parameter that cannot be used: ``parameter`` names it."""

    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(detail)
        self.parameter = parameter
        self.detail = detail


def parse_instant(text: str, parameter: str) -> datetime:
    """An ISO 8601 instant; one without a zone is refused (which zone would it be in?)."""
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CdrFilterError(
            parameter, f"{parameter}={text!r} is not an ISO 8601 instant, e.g. 2026-12-01T09:00Z"
        ) from None
    if at.tzinfo is None:
        raise CdrFilterError(
            parameter, f"{parameter}={text!r} has no time zone: add Z or an offset like +01:00"
        )
    return at.astimezone(UTC)


def _month_start(at: datetime, months: int) -> datetime:
    index = at.year * 12 + at.month - 1 + months
    return at.replace(year=index // 12, month=index % 12 + 1, day=1)


def date_range(name: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """Telnyx's ``filter[date_range]`` as ``[start, end)`` in UTC."""
    today = (now or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
    day = timedelta(days=1)
    week = today - timedelta(days=today.weekday())
    match = _LAST_N_DAYS.match(name)
    if match is not None:
        return today - int(match.group(1)) * day, today + day
    spans = {
        "yesterday": (today - day, today),
        "today": (today, today + day),
        "tomorrow": (today + day, today + 2 * day),
        "last_week": (week - 7 * day, week),
        "this_week": (week, week + 7 * day),
        "next_week": (week + 7 * day, week + 14 * day),
        "last_month": (_month_start(today, -1), _month_start(today, 0)),
        "this_month": (_month_start(today, 0), _month_start(today, 1)),
        "next_month": (_month_start(today, 1), _month_start(today, 2)),
    }
    if name not in spans:
        raise CdrFilterError(
            "filter[date_range]",
            f"filter[date_range]={name!r} is not a date range: use one of "
            f"{', '.join(_RANGES)} or last_N_days (e.g. last_7_days)",
        )
    return spans[name]


def _narrow(
    ranges: dict[str, tuple[datetime | None, datetime | None]],
    column: str,
    low: datetime | None,
    high: datetime | None,
) -> None:
    """Intersect the range kept for ``column`` with ``[low, high)``."""
    old_low, old_high = ranges.get(column, (None, None))
    if old_low is not None and (low is None or old_low > low):
        low = old_low
    if old_high is not None and (high is None or old_high < high):
        high = old_high
    ranges[column] = (low, high)


def since_until(since: datetime | None, until: datetime | None) -> CdrQuery:
    """The CDRs that started in ``[since, until)`` (``callbridge cdrs``), oldest first."""
    ranges: dict[str, tuple[datetime | None, datetime | None]] = {}
    if since is not None or until is not None:
        ranges["started_at"] = (since, until)
    return CdrQuery(ranges=ranges, sort="started_at")


def parse_query(params: list[tuple[str, str]], account_id: str) -> tuple[CdrQuery, Page]:
    """The search a ``/v2/detail_records`` query string asks for (:class:`CdrFilterError`
    naming the first parameter that cannot be used)."""
    equal: dict[str, str] = {}
    ranges: dict[str, tuple[datetime | None, datetime | None]] = {}
    record_type: str | None = None
    sort: list[str] = []
    number, size = 1, 20
    for key, value in params:
        if key in ("page[number]", "page[size]"):
            limit = MAX_PAGE_NUMBER if key == "page[number]" else MAX_PAGE_SIZE
            if not value.isdigit() or not 1 <= int(value) <= limit:
                raise CdrFilterError(key, f"{key}={value!r} must be a whole number, 1 to {limit}")
            number, size = (int(value), size) if key == "page[number]" else (number, int(value))
            continue
        if key in ("sort", "sort[]"):
            sort.extend(part for part in value.split(",") if part)
            continue
        match = _FILTER.match(key)
        if match is None:
            raise CdrFilterError(
                key,
                f"unknown query parameter {key!r}: use filter[...], sort, page[number], page[size]",
            )
        name, op = match.groups()
        if name == "record_type" and op is None:
            record_type = value
        elif name == "date_range" and op is None:
            _narrow(ranges, "started_at", *date_range(value))
        elif name in _INSTANTS and op in _OPS:
            at = parse_instant(value, key)
            low, high = {
                "gte": (at, None),
                "gt": (at + _TICK, None),
                "lte": (None, at + _TICK),
                "lt": (None, at),
                "eq": (at, at + _TICK),
            }[op]
            _narrow(ranges, _INSTANTS[name], low, high)
        elif name in _INSTANTS:
            raise CdrFilterError(
                key, f"{key}: an instant filter takes one of [{'], ['.join(_OPS)}] after its name"
            )
        elif name in _EQUAL and op is None:
            equal[_EQUAL[name]] = value
        else:
            names = sorted({"record_type", "date_range", *_INSTANTS, *_EQUAL})
            raise CdrFilterError(
                key,
                f"{key} is not a filter of {RECORD_TYPE} records; the filters are "
                + ", ".join(f"filter[{n}]" for n in names),
            )
    if record_type is None:
        raise CdrFilterError(
            "filter[record_type]",
            f"filter[record_type] is required (Telnyx's rule): callbridge keeps "
            f"filter[record_type]={RECORD_TYPE} records",
        )
    if record_type != RECORD_TYPE:
        raise CdrFilterError(
            "filter[record_type]",
            f"filter[record_type]={record_type!r}: callbridge keeps {RECORD_TYPE} records only",
        )
    if len(sort) > 1:
        raise CdrFilterError("sort", f"sort by one field at a time, not {', '.join(sort)}")
    order = sort[0] if sort else "-started_at"
    if order.lstrip("-") not in _INSTANTS:
        raise CdrFilterError(
            "sort",
            f"sort={order!r}: sort by {', '.join(_INSTANTS)} (a leading - for newest first)",
        )
    column = ("-" if order.startswith("-") else "") + _INSTANTS[order.lstrip("-")]
    query = CdrQuery(account_id=account_id, equal=equal, ranges=ranges, sort=column)
    return query, Page(number, size)


def _cause(reason: str) -> str:
    try:
        return HANGUP_CAUSES.get(EndReason(reason), "unspecified")
    except ValueError:
        return "unspecified"


def detail_record(cdr: Cdr) -> dict[str, Any]:
    """A CDR as a detail record (see the module docstring for its fields)."""
    return {
        "record_type": RECORD_TYPE,
        "id": cdr.call_id,
        "call_leg_id": cdr.call_id,
        "call_session_id": cdr.call_id,
        "cli": cdr.caller,
        "cld": cdr.destination,
        "callee": cdr.callee,
        "direction": cdr.direction,
        "started_at": iso(cdr.started_at),
        "answered_at": iso(cdr.answered_at),
        "finished_at": iso(cdr.ended_at),
        "call_sec": round(cdr.duration_seconds),
        "end_reason": cdr.end_reason,
        "hangup_cause": _cause(cdr.end_reason),
        "hangup_source": cdr.hangup_source or "unknown",
        "answered_user": cdr.answered_user,
        "answered_device": cdr.answered_device,
        "queue_name": cdr.queue_name,
        "queue_wait_time_secs": cdr.queue_wait_secs,
        "conference_id": cdr.conference_id,
        "transferred_to": cdr.transferred_to,
        "call_quality_stats": stored_quality_stats(cdr.quality),
    }


def _param(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string", **schema},
    }


# The query string is parsed by hand (filter[...] names are open-ended); these document the
# main ones in /openapi.json. The module docstring lists them all.
_PARAMETERS = [
    _param("filter[record_type]", "Required: call-control.", enum=[RECORD_TYPE]),
    _param("filter[date_range]", "today, yesterday, this_week, last_month, last_N_days ..."),
    _param("filter[started_at][gte]", "Started at or after this instant (ISO 8601, zoned)."),
    _param("filter[started_at][lt]", "Started before this instant (ISO 8601, zoned)."),
    _param("filter[cli]", "The caller (user name)."),
    _param("filter[answered_user]", "Who answered (for a queued call: the agent)."),
    _param("filter[queue_name]", "The queue the call waited in."),
    _param("sort", "started_at, answered_at or finished_at; - first: newest first."),
    _param("page[number]", "From 1.", pattern="^[0-9]+$"),
    _param("page[size]", f"1 to {MAX_PAGE_SIZE}.", pattern="^[0-9]+$"),
]


@router.get(
    "/detail_records",
    summary="Search the call detail records (filter[record_type]=call-control)",
    responses={200: {"description": "`{data: [detail record], meta}`"}},
    openapi_extra={"parameters": _PARAMETERS},
)
async def list_detail_records(request: Request, ctx: Ctx, who: Principal) -> dict[str, Any]:
    try:
        query, page = parse_query(list(request.query_params.multi_items()), who.account_id)
    except CdrFilterError as exc:
        raise invalid(exc.detail, parameter=exc.parameter) from None
    cdrs, total = await ctx.store.search_cdrs(query, page.number, page.size)
    page_meta: PageMeta = meta(page, total)
    return {"data": [detail_record(cdr) for cdr in cdrs], "meta": page_meta.model_dump()}
