"""Page-number pagination, as Telnyx's API and the ``telnyx`` SDK's auto-pagination expect.

A list endpoint takes ``page[number]`` (from 1) and ``page[size]`` (1 to 250, default 20) and
answers ``{"data": [...], "meta": {"page_number", "page_size", "total_pages",
"total_results"}}``. The SDK asks for ``page[number]=n+1`` until ``page_number >=
total_pages`` (or a page comes back empty). A page past the end is empty, not an error.

``page[number]`` is at most :data:`MAX_PAGE_NUMBER`: a larger one is a 422 pointing at
``page[number]``, because the row offset it implies would not fit SQLite's 64-bit integer
(2**60 gave an ``OverflowError``, a 500). Telnyx documents no upper bound; a million pages of
250 is far past any real list, so the bound refuses only nonsense.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

from callbridge.store import MAX_PAGE_SIZE

__all__ = [
    "MAX_PAGE_NUMBER",
    "Page",
    "PageMeta",
    "PageQuery",
    "meta",
    "page_params",
    "slice_page",
]

T = TypeVar("T")

MAX_PAGE_NUMBER = 1_000_000  # (MAX_PAGE_NUMBER - 1) * MAX_PAGE_SIZE fits any integer column


class PageMeta(BaseModel):
    page_number: int
    page_size: int
    total_pages: int
    total_results: int


@dataclass(frozen=True, slots=True)
class Page:
    number: int
    size: int


def page_params(
    number: Annotated[
        int,
        Query(
            alias="page[number]",
            ge=1,
            le=MAX_PAGE_NUMBER,
            description=f"The page to return, 1 to {MAX_PAGE_NUMBER}.",
        ),
    ] = 1,
    size: Annotated[
        int,
        Query(
            alias="page[size]",
            ge=1,
            le=MAX_PAGE_SIZE,
            description=f"Items per page, 1 to {MAX_PAGE_SIZE}.",
        ),
    ] = 20,
) -> Page:
    return Page(number, size)


PageQuery = Annotated[Page, Depends(page_params)]


def meta(page: Page, total: int) -> PageMeta:
    return PageMeta(
        page_number=page.number,
        page_size=page.size,
        total_pages=math.ceil(total / page.size),
        total_results=total,
    )


def slice_page(items: Sequence[T], page: Page) -> tuple[list[T], PageMeta]:
    """One page of an in-memory list, and its ``meta``."""
    start = (page.number - 1) * page.size
    return list(items[start : start + page.size]), meta(page, len(items))
