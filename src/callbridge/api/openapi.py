"""The error responses in ``/openapi.json``: every ``/v2`` operation lists the refusals it can
answer, each with the one error body (:class:`~callbridge.api.schemas.Errors`).

FastAPI documents only the success and a 422 with its own validation schema, which is not what
callbridge sends (``api.errors`` answers every refusal with Telnyx's ``{"errors": [...]}``).
Clients generated from the document, and schemathesis's status and schema checks
(tests/test_schemathesis.py), need the real ones. Which operation gets which status:

=====  ===================================================================================
400    operations with a request body: the body is not JSON
401    every operation: no API key, or an unknown or revoked one
403    operations that write (not GET): a read-only key, an inactive application
404    operations with a path parameter: the resource it names does not exist (or belongs to
       another account); and the admin-only operations (tag ``ADMIN_TAG``), which answer a
       key that is not an admin key as for a path that does not exist
413    operations with a request body: the body is over the size limit (``--max-body-bytes``,
       ``--max-upload-bytes`` for media uploads), refused before it is read
422    every operation: a field or parameter is missing or wrong, or the state forbids it
429    every operation: too many failed API-key checks from this address; ``Retry-After``
503    every operation: the server is draining or the database refuses writes; ``Retry-After``
=====  ===================================================================================

The document is built once, on first request, by FastAPI; this only rewrites its ``responses``
(the routers stay as they are).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from callbridge.api.context import ADMIN_TAG
from callbridge.api.schemas import Errors

__all__ = ["ERROR_SCHEMA", "error_responses", "install_openapi"]

ERROR_SCHEMA = "Errors"  # the component name of the error body
_REF = "#/components/schemas/"
_WRITES = {"post", "put", "patch", "delete"}
# FastAPI's own 422 schema, replaced by ours on every /v2 operation.
_FASTAPI_422 = ("HTTPValidationError", "ValidationError")

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
}
_DESCRIPTIONS = {
    400: "The body is not valid JSON.",
    401: "No `Authorization: Bearer KEY` header, or the key is unknown or revoked.",
    403: "The key may not do this (a read-only key), or the resource may not be used (an "
    "inactive application).",
    404: "The resource named in the path does not exist (or belongs to another account); an "
    "admin-only endpoint answers so to a key that is not an admin key.",
    413: "The request body is over the size limit; it was refused before it was read.",
    422: "A field or parameter is missing or wrong, a resource the body names does not exist, "
    "or the state of the resource does not allow the action.",
    429: "Too many failed API-key checks from this address; try again after `Retry-After`.",
    503: "The server is draining or its database refuses writes for now; try again after "
    "`Retry-After` (nothing was done).",
}


def error_responses(method: str, operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The error responses of one ``/v2`` operation (the table in the module docstring)."""
    statuses = [401, 422, 429, 503]
    if method in _WRITES:
        statuses.append(403)
    if ADMIN_TAG in operation.get("tags", ()) or any(
        p.get("in") == "path" for p in operation.get("parameters", ())
    ):
        statuses.append(404)
    if "requestBody" in operation:
        statuses += [400, 413]
    out: dict[str, dict[str, Any]] = {}
    for status in sorted(statuses):
        response: dict[str, Any] = {
            "description": _DESCRIPTIONS[status],
            "content": {"application/json": {"schema": {"$ref": _REF + ERROR_SCHEMA}}},
        }
        if status in (429, 503):
            response["headers"] = _RETRY_AFTER
        out[str(status)] = response
    return out


def _add_error_responses(document: dict[str, Any], prefix: str) -> dict[str, Any]:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    errors_schema = Errors.model_json_schema(ref_template=_REF + "{model}")
    schemas.update(errors_schema.pop("$defs", {}))  # ErrorItem, ErrorSource
    schemas[ERROR_SCHEMA] = errors_schema
    for path, operations in document.get("paths", {}).items():
        if not path.startswith(prefix + "/"):
            continue
        for method, operation in operations.items():
            responses = {**operation.get("responses", {}), **error_responses(method, operation)}
            operation["responses"] = dict(sorted(responses.items()))
    text = repr(document.get("paths", {}))
    for name in _FASTAPI_422:  # drop FastAPI's validation schemas once nothing refers to them
        if _REF + name not in text:
            schemas.pop(name, None)
    return document


def install_openapi(app: FastAPI, prefix: str) -> None:
    """Make ``app.openapi()`` (``/openapi.json``, ``/docs``) list the error responses of every
    operation under ``prefix``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
                servers=app.servers,
                separate_input_output_schemas=app.separate_input_output_schemas,
            )
            app.openapi_schema = _add_error_responses(document, prefix)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way
