"""Request and response bodies shared by the REST endpoints (pydantic; they make the OpenAPI).

Field names and shapes are Telnyx's, so that the official SDK's models parse our answers.
Request models accept fields they do not know (the SDK may send more than callbridge uses);
fields that would change what a command does and that callbridge cannot do are refused with a
422 that names them (:func:`refuse_unsupported`), rather than silently ignored.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from callbridge.api.errors import invalid
from callbridge.api.pagination import PageMeta

__all__ = [
    "CommandResult",
    "Data",
    "ErrorItem",
    "ErrorSource",
    "Errors",
    "ListOf",
    "Params",
    "check_client_state",
    "iso",
    "ok",
    "refuse_unsupported",
]

T = TypeVar("T")


class Data(BaseModel, Generic[T]):
    """``{"data": ...}``: every single-resource answer."""

    data: T


class ListOf(BaseModel, Generic[T]):
    """``{"data": [...], "meta": {...}}``: every list answer."""

    data: list[T]
    meta: PageMeta


class ErrorSource(BaseModel):
    """Where the problem is: a JSON pointer into the body, or a query or path parameter."""

    pointer: str | None = Field(None, description='e.g. "/to": the body field at fault')
    parameter: str | None = Field(None, description='e.g. "page[size]": the parameter at fault')


class ErrorItem(BaseModel):
    """One problem of a refused request (Telnyx's error object)."""

    code: str = Field(description='Telnyx\'s error code where it has one, e.g. "10015"')
    title: str = Field(description='The kind of problem, e.g. "Invalid value"')
    detail: str = Field(description="What exactly was wrong, and how to fix it")
    source: ErrorSource | None = None


class Errors(BaseModel):
    """``{"errors": [...]}``: the body of every refused request (see ``api.errors``)."""

    errors: list[ErrorItem] = Field(min_length=1)


class CommandResult(BaseModel):
    result: Literal["ok"] = "ok"


def ok() -> Data[CommandResult]:
    return Data[CommandResult](data=CommandResult())


class Params(BaseModel):
    """Base of request bodies: unknown fields are accepted (and ignored)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    command_id: str | None = Field(
        None, description="Commands with a command_id already used on this call are skipped."
    )


def refuse_unsupported(params: BaseModel, names: Iterable[str]) -> None:
    """422 for each field in ``names`` that the request set to something other than a default."""
    extra = params.model_extra or {}
    for name in names:
        value = extra.get(name)
        if value not in (None, False, "", [], {}):
            raise invalid(
                f"{name} is not supported by callbridge; leave it out", pointer=f"/{name}"
            )


def check_client_state(value: str | None, pointer: str = "/client_state") -> str | None:
    """client_state must be base64 (Telnyx's rule); it comes back as given."""
    if value is None:
        return None
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(
            "client_state must be base64 (e.g. base64 of your JSON); it is sent back as given",
            pointer=pointer,
        ) from None
    return value


def iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at is not None else None
