"""schemathesis against ``/openapi.json`` (issue 10): every REST operation, a fixed number of
generated requests each, sent to a real server with a real API key.

Checks on every answer: no 5xx (``not_a_server_error``), the body matches the documented schema
(``response_schema_conformance``, error bodies included) and the status is one the document
lists for the operation (``status_code_conformance``: the error responses of api/openapi.py).

Deterministic and bounded: hypothesis is derandomized (the same requests every run), keeps no
example database, and makes :data:`EXAMPLES` requests per operation and generation mode
(positive: data the schema allows; negative: data it does not). No shrinking phase: a failure
is reported with the first request that failed (and a ``curl`` line to replay it).

Nothing is excluded. ``POST /v2/calls`` dials a user named in ``to``; this server has no users,
so it cannot ring anyone (a 422). URLs in bodies (``media_url``, ``audio_url``, webhook URLs)
are replaced by a loopback URL nobody listens on before sending, so a generated host name is
never looked up or fetched.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis import GenerationMode
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation

from callbridge.api import API_PREFIX
from callbridge.config import ServerConfig
from callbridge.server import create_app
from callbridge.testing.server import Server, free_port, running

pytestmark = pytest.mark.timeout(300)

# Requests per operation and generation mode; to explore: CALLBRIDGE_SCHEMATHESIS_EXAMPLES=500
EXAMPLES = int(os.environ.get("CALLBRIDGE_SCHEMATHESIS_EXAMPLES", "25"))
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
# The document /openapi.json serves (test_the_served_document_is_the_one_tested checks that
# the server's is this one): operations are known at collection, one test each.
DOCUMENT = create_app(ServerConfig()).openapi()
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
Operation = APIOperation[Any, Any, Any, Any]
OPERATIONS: list[Operation] = [r.ok() for r in SCHEMA.get_all_operations() if isinstance(r, Ok)]
NOWHERE = f"http://127.0.0.1:{free_port()}/nothing.wav"


@dataclass(frozen=True)
class Api:
    """The server under test, a key, and ids of things that exist there."""

    server: Server
    key: str  # an admin key (it may use every endpoint, /v2/accounts too)
    read_only: str  # a read-only key of the default account
    known: dict[str, dict[str, str]]  # path prefix -> path parameters naming a real resource


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A real server (its log at WARNING: access lines would quote generated paths), an API key,
    and an application, a route and a queue for path parameters to name."""
    data_dir = tmp_path_factory.mktemp("schemathesis")
    # hypothesis keeps caches (unicode data, schema constants) in ./.hypothesis otherwise
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    # check=False: the log is checked below for a real traceback, not for the word (a
    # generated query string once held "Traceback", and access lines quote it)
    with running(
        data_dir, log_level="warning", ring_timeout=2, session_grace=1, check=False
    ) as server:
        key, read_only = asyncio.run(keys(server))
        headers = {"Authorization": f"Bearer {key}"}
        base = server.url + API_PREFIX
        app = httpx.post(
            f"{base}/call_control_applications",
            json={"application_name": "fuzzed", "webhook_event_url": NOWHERE},
            headers=headers,
        )
        assert app.status_code == 200, app.text
        app_id = app.json()["data"]["id"]
        route = httpx.post(
            f"{base}/routes",
            json={"destination": "4242", "application_id": app_id},
            headers=headers,
        )
        assert route.status_code == 200, route.text
        queue = httpx.post(f"{base}/queues", json={"queue_name": "line"}, headers=headers)
        assert queue.status_code == 200, queue.text
        known = {
            "/v2/call_control_applications/": {"id": app_id},
            "/v2/routes/": {"destination": "4242"},
            "/v2/queues/": {"queue_name": "line"},
        }
        yield Api(server, key, read_only, known)
        live = server.wait_idle(5)
        server.stop()
    log = server.log()
    at = log.find("Traceback (most recent call last)")
    assert at < 0, log[max(0, at - 300) : at + 3000]
    assert live["legs"] == live["media_endpoints"] == live["sessions"] == 0, live


async def keys(server: Server) -> tuple[str, str]:
    async with server.store() as store:
        admin = await store.create_api_key("schemathesis", admin=True)
        return admin, await store.create_api_key("reader", scope="read")


def no_urls(value: Any) -> Any:
    """``value`` with every URL (and every field named like one) pointing nowhere on loopback."""
    if isinstance(value, dict):
        return {
            k: NOWHERE if k.endswith("url") and isinstance(v, str) else no_urls(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [no_urls(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return NOWHERE
    return value


def test_the_served_document_is_the_one_tested(api: Api) -> None:
    served = httpx.get(api.server.url + "/openapi.json").json()
    assert served == json.loads(json.dumps(DOCUMENT))


def test_every_operation_documents_its_error_responses() -> None:
    operations = [
        (path, method, op)
        for path, ops in DOCUMENT["paths"].items()
        if path.startswith(API_PREFIX + "/")
        for method, op in ops.items()
    ]
    assert len(operations) > 40
    error_ref = {"$ref": "#/components/schemas/Errors"}
    for path, method, op in operations:
        responses = op["responses"]
        where = f"{method.upper()} {path}"
        assert {"401", "422", "429", "503"} <= set(responses), where
        if "{" in path:
            assert "404" in responses, where
        if method != "get":
            assert "403" in responses, where
        if "requestBody" in op:
            assert {"400", "413"} <= set(responses), where
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert response["content"]["application/json"]["schema"] == error_ref, where
    assert len(OPERATIONS) == sum(len(ops) for ops in DOCUMENT["paths"].values())
    assert "HTTPValidationError" not in DOCUMENT["components"]["schemas"]
    errors = DOCUMENT["components"]["schemas"]["Errors"]
    assert errors["required"] == ["errors"]


def test_an_error_the_server_sends_matches_the_documented_schema(api: Api) -> None:
    # one of each kind the document promises, checked by schemathesis's own validator
    admin, reader = (
        {"Authorization": f"Bearer {api.key}"},
        {"Authorization": f"Bearer {api.read_only}"},
    )
    app = SCHEMA["/v2/call_control_applications/{id}"]
    accounts = SCHEMA["/v2/accounts"]["GET"]
    for case, headers, status in (
        (app["GET"].Case(path_parameters={"id": "nope"}), {}, 401),
        (app["GET"].Case(path_parameters={"id": "nope"}), {"Authorization": "Basic x"}, 401),
        (app["GET"].Case(path_parameters={"id": "nope"}), admin, 404),
        (app["DELETE"].Case(path_parameters={"id": "nope"}), reader, 403),
        (accounts.Case(), reader, 404),  # not an admin key: as if the path did not exist
        (accounts.Case(query={"page[number]": 0}), admin, 422),
    ):
        response = case.call(base_url=api.server.url, headers=headers)
        assert response.status_code == status, (case.path, response.text)
        case.validate_response(response, checks=CHECKS)


def _cases() -> list[Any]:
    """(operation, mode) pairs: negative data only where there is something to get wrong."""
    out = []
    for op in OPERATIONS:
        document = DOCUMENT["paths"][op.path][op.method.lower()]
        modes = [GenerationMode.POSITIVE]
        if document.get("parameters") or "requestBody" in document:
            modes.append(GenerationMode.NEGATIVE)
        out += [pytest.param(op, mode, id=f"{op.label} {mode.value}") for mode in modes]
    return out


@pytest.mark.parametrize(("operation", "mode"), _cases())
def test_generated_requests_get_no_5xx_and_answers_match_the_document(
    api: Api, operation: Operation, mode: GenerationMode
) -> None:
    real = next((p for prefix, p in api.known.items() if operation.path.startswith(prefix)), None)
    strategy = operation.as_strategy(mode)
    if real is not None and mode is GenerationMode.POSITIVE:
        strategy = st.one_of(strategy, operation.as_strategy(mode, path_parameters=real))
    headers = {"Authorization": f"Bearer {api.key}"}

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: schemathesis.Case[Operation]) -> None:
        if isinstance(case.body, dict | list):
            case.body = no_urls(case.body)
        response = case.call(base_url=api.server.url, headers=headers, timeout=15)
        case.validate_response(response, checks=CHECKS)

    check()


# -- what schemathesis found ---------------------------------------------------------------------
# Minimal reproductions of what schemathesis found, kept as regression tests. Each has a server
# of its own (had the defect come back, its log would hold a traceback the shared one must not).


def test_a_null_webhook_api_version_is_refused_with_a_422_not_a_500(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with running(
        tmp_path_factory.mktemp("nullversion"), log_level="warning", check=False
    ) as server:
        key, _ = asyncio.run(keys(server))
        headers = {"Authorization": f"Bearer {key}"}
        url = f"{server.url}{API_PREFIX}/call_control_applications"
        body = {"application_name": "a", "webhook_event_url": NOWHERE, "webhook_api_version": None}
        created = httpx.post(url, json=body, headers=headers)
        assert created.status_code == 422, created.text
        assert created.json()["errors"][0]["source"] == {"pointer": "/webhook_api_version"}
