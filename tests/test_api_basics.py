"""The REST API's frame with the official telnyx SDK as the client: API keys, call control
applications (create, list with paging and filters, retrieve, update, delete), routes, the
public key, OpenAPI and /docs, and a clear error for every kind of bad request."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import pytest
import telnyx

from api_helpers import Api, api_fixture  # noqa: F401  (the "api" fixture)
from callbridge.testing.server import Server

pytestmark = pytest.mark.timeout(60)


async def test_applications_are_created_listed_paged_updated_and_deleted(api: Api) -> None:
    client = api.client
    made: list[str] = []
    for name in ("support desk", "sales desk", "billing"):
        app = await client.call_control_applications.create(
            application_name=name, webhook_event_url=api.sink.url, webhook_timeout_secs=5
        )
        assert app.data is not None and app.data.record_type == "call_control_application"
        assert app.data.application_name == name and app.data.active is True
        assert app.data.webhook_api_version == "2" and app.data.webhook_timeout_secs == 5
        assert app.data.id is not None
        made.append(app.data.id)

    desks = client.call_control_applications.list(
        filter={"application_name": {"contains": "DESK"}}, page_size=1
    )
    names = [a.application_name async for a in desks]  # the SDK pages through, one by one
    assert sorted(names, key=str) == ["sales desk", "support desk"]
    # The SDK's Literal has only the ascending sorts; the API (as Telnyx's) takes "-" for
    # descending.
    first = await client.call_control_applications.list(page_size=2, sort="-created_at")  # type: ignore[arg-type]
    assert first.meta is not None and first.meta.page_number == 1
    assert [a.id for a in first.data][:1] == [made[-1]]

    got = await client.call_control_applications.retrieve(made[0])
    assert got.data is not None and got.data.application_name == "support desk"
    changed = await client.call_control_applications.update(
        made[0],
        application_name="support desk 2",
        webhook_event_url=api.sink.url,
        active=False,
        webhook_event_failover_url="http://127.0.0.1:9/failover",
    )
    assert changed.data is not None and changed.data.active is False
    assert changed.data.webhook_event_failover_url == "http://127.0.0.1:9/failover"
    deleted = await client.call_control_applications.delete(made[0])
    assert deleted.data is not None and deleted.data.id == made[0]
    with pytest.raises(telnyx.NotFoundError) as err:
        await client.call_control_applications.retrieve(made[0])
    assert made[0] in str(err.value.body)


async def test_bad_application_fields_point_at_the_field(api: Api) -> None:
    apps = api.client.call_control_applications
    cases: list[tuple[dict[str, Any], str]] = [
        ({"application_name": "x", "webhook_event_url": "ftp://nowhere"}, "/webhook_event_url"),
        ({"application_name": "", "webhook_event_url": api.sink.url}, "/application_name"),
        (
            {
                "application_name": "x",
                "webhook_event_url": api.sink.url,
                "webhook_api_version": "1",
            },
            "/webhook_api_version",
        ),
        (
            {
                "application_name": "x",
                "webhook_event_url": api.sink.url,
                "webhook_timeout_secs": 99,
            },
            "/webhook_timeout_secs",
        ),
    ]
    for fields, pointer in cases:
        with pytest.raises(telnyx.UnprocessableEntityError) as err:
            await apps.create(**fields)
        error = err.value.body["errors"][0]  # type: ignore[index]
        assert error["source"] == {"pointer": pointer}, error
        assert error["detail"] and error["code"] == "10015"
    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        await api.client.post("/call_control_applications", body={}, cast_to=object)
    assert "application_name is required" in str(err.value.body)
    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        await apps.list(sort="name")  # type: ignore[arg-type]
    assert err.value.body["errors"][0]["source"] == {"parameter": "sort"}  # type: ignore[index]


async def test_api_keys_are_checked_and_every_refusal_says_what_is_wrong(api: Api) -> None:
    base = f"{api.http}/v2"
    async with httpx.AsyncClient() as http:
        missing = await http.get(f"{base}/call_control_applications")
        assert missing.status_code == 401
        assert "Authorization: Bearer" in missing.json()["errors"][0]["detail"]
        basic = await http.get(
            f"{base}/call_control_applications", headers={"authorization": "Basic eDp5"}
        )
        assert basic.status_code == 401 and "Bearer" in basic.json()["errors"][0]["detail"]
        key = {"authorization": f"Bearer {api.client.api_key}"}
        malformed = await http.post(
            f"{base}/calls",
            content=b"{not json",
            headers={**key, "content-type": "application/json"},
        )
        assert malformed.status_code == 400
        assert "not valid JSON" in malformed.json()["errors"][0]["detail"]
        nowhere = await http.get(f"{base}/no_such_thing", headers=key)
        assert nowhere.status_code == 404 and "no_such_thing" in nowhere.text
        wrong_method = await http.put(f"{base}/calls", headers=key)
        assert wrong_method.status_code == 405
    stranger = telnyx.AsyncTelnyx(api_key="KEY" + "x" * 40, base_url=base, max_retries=0)
    with pytest.raises(telnyx.AuthenticationError) as err:
        await stranger.call_control_applications.list()
    assert "unknown or revoked" in str(err.value.body)
    await stranger.close()

    client = api.client
    for call in (
        client.calls.actions.answer("no-such-call"),
        client.calls.retrieve_status("no-such-call"),
        client.conferences.retrieve("no-such-conference"),
        client.conferences.actions.mute("no-such-conference"),
        client.queues.retrieve("no-such-queue"),
        client.recordings.retrieve("no-such-recording"),
        client.media.retrieve("no-such-media"),
    ):
        with pytest.raises(telnyx.NotFoundError) as missing_err:
            await call
        assert "no-such" in str(missing_err.value.body)
    with pytest.raises(telnyx.UnprocessableEntityError) as bad_page:
        await client.call_control_applications.list(page_number=0)
    assert bad_page.value.body["errors"][0]["source"] == {"parameter": "page[number]"}  # type: ignore[index]


async def test_routes_send_a_destination_to_an_application(api: Api) -> None:
    ext = await api.line()
    listed = await api.client.get(
        "/routes", options={"params": {"filter[application_id]": api.app_id}}, cast_to=object
    )
    assert isinstance(listed, dict)
    assert [r["destination"] for r in listed["data"]] == [ext]
    for body, pointer in (
        ({"destination": "12ab", "application_id": api.app_id}, "/destination"),
        ({"destination": "7999", "application_id": "999"}, "/application_id"),
    ):
        with pytest.raises(telnyx.UnprocessableEntityError) as err:
            await api.client.post("/routes", body=body, cast_to=object)
        assert err.value.body["errors"][0]["source"] == {"pointer": pointer}  # type: ignore[index]
    await api.client.delete(f"/routes/{ext}", cast_to=object)
    with pytest.raises(telnyx.NotFoundError):
        await api.client.delete(f"/routes/{ext}", cast_to=object)


async def test_openapi_and_docs_describe_the_api(api: Api) -> None:
    async with httpx.AsyncClient() as http:
        spec = (await http.get(f"{api.http}/openapi.json")).json()
        docs = await http.get(f"{api.http}/docs")
    paths = spec["paths"]
    for path in (
        "/v2/calls",
        "/v2/calls/{call_control_id}/actions/bridge",
        "/v2/conferences/{id}/actions/update",
        "/v2/queues/{queue_name}/calls",
        "/v2/recordings/{recording_id}",
        "/v2/media",
        "/v2/call_control_applications/{id}",
    ):
        assert path in paths, path
    assert "ApiKey" in spec["components"]["securitySchemes"]
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert len(api.public_key) == 44  # base64 of 32 bytes


def test_routes_from_the_command_line(api: Api, server: Server) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "callbridge",
                "routes",
                *args,
                "--data-dir",
                str(server.data_dir),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )

    added = cli("add", "7998", api.app_id)
    assert added.returncode == 0 and "7998" in added.stdout
    assert f"7998  ->  {api.app_id} (test app)" in cli("list").stdout
    refused = cli("add", "7997", "123")
    assert refused.returncode == 2 and "123" in refused.stderr
    assert cli("remove", "7998").returncode == 0
    missing = cli("remove", "7998")
    assert missing.returncode == 2 and "7998" in missing.stderr
