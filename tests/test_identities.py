"""Identities over REST and in the CLI (issue 14): telephony credentials (users) through the
official telnyx SDK with only ``base_url`` changed, login tokens a backend mints for its
browser, token revoke and expiry, API keys, accounts kept apart, and the data directory."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import telnyx
from telnyx import AsyncTelnyx

from callbridge.cli import main
from callbridge.client import Phone
from callbridge.errors import RemoteError
from callbridge.store import Store
from callbridge.testing.server import Server

pytestmark = pytest.mark.timeout(60)

_n = itertools.count(1)


def _unique() -> tuple[str, str]:
    """A login name and an extension no other test of the run uses."""
    i = next(_n)
    return f"ident-{int(time.time() * 1000) % 10**9}-{i}", f"86{int(time.time()) % 1000:03d}{i:02d}"


@pytest.fixture
async def client(server: Server, store: Store) -> AsyncIterator[AsyncTelnyx]:
    key = await store.create_api_key("identities")
    sdk = AsyncTelnyx(api_key=key, base_url=f"{server.url}/v2", max_retries=0)
    yield sdk
    await sdk.close()


async def _create(client: AsyncTelnyx, **extra: object) -> str:
    name, ext = _unique()
    made = await client.telephony_credentials.create(
        connection_id="unused",
        name=name,
        tag="agents",
        extra_body={"extension": ext, **extra},
    )
    assert made.data is not None and made.data.id is not None
    return made.data.id


async def test_credentials_crud_through_the_sdk(client: AsyncTelnyx) -> None:
    name, ext = _unique()
    made = await client.telephony_credentials.create(
        connection_id="unused",
        name=name,
        tag="agents",
        extra_body={
            "extension": ext,
            "display_name": "Agent One",
            "sip_password": "correct horse",
        },
    )
    cred = made.data
    assert cred is not None and cred.id is not None
    assert (cred.name, cred.sip_username, cred.record_type) == (name, name, "credential")
    assert cred.sip_password is None and cred.expired is False and cred.user_id == "default"
    extra = cred.model_extra or {}
    assert extra["extension"] == ext and extra["sip_password_set"] is True

    got = await client.telephony_credentials.retrieve(cred.id)
    assert got.data is not None and got.data.name == name

    listed = await client.telephony_credentials.list(filter={"name": name, "tag": "agents"})
    assert [c.id for c in listed.data or []] == [cred.id]

    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    changed = await client.telephony_credentials.update(
        cred.id, tag="night", expires_at=later, extra_body={"display_name": "Agent 1"}
    )
    assert changed.data is not None and changed.data.expires_at is not None
    assert (changed.data.model_extra or {})["display_name"] == "Agent 1"

    gone = await client.telephony_credentials.delete(cred.id)
    assert gone.data is not None and gone.data.id == cred.id
    with pytest.raises(telnyx.NotFoundError):
        await client.telephony_credentials.retrieve(cred.id)


async def test_bad_credential_fields_are_422_naming_the_field(
    client: AsyncTelnyx, server: Server
) -> None:
    name, _ = _unique()
    cases = [
        ({"name": name, "extension": "12a"}, "/extension"),
        ({"name": "bad name", "extension": "1234"}, "/name"),
        ({"name": name, "extension": "1234", "number": "12"}, "/number"),
        ({"name": name, "extension": "1234", "sip_password": "short"}, "/sip_password"),
        ({"name": name, "extension": "1234", "expires_at": "2030-01-01T00:00:00"}, "/expires_at"),
    ]
    for body, pointer in cases:
        with pytest.raises(telnyx.UnprocessableEntityError) as refused:
            await client.post("/telephony_credentials", body=body, cast_to=object)
        error = refused.value.body["errors"][0]  # type: ignore[index]
        assert error["source"]["pointer"] == pointer, (body, error)
    cred_id = await _create(client)
    with pytest.raises(telnyx.UnprocessableEntityError) as refused:
        await client.post(
            f"/telephony_credentials/{cred_id}/token",
            body={"ttl_seconds": 10**9},
            cast_to=str,
        )
    assert "ttl_seconds" in str(refused.value.body)
    await client.telephony_credentials.delete(cred_id)


async def test_a_rest_token_logs_a_phone_in_and_revoked_or_expired_ones_are_refused(
    client: AsyncTelnyx, server: Server, store: Store
) -> None:
    cred_id = await _create(client)
    token = await client.telephony_credentials.create_token(cred_id)
    assert isinstance(token, str) and len(token) > 20

    phone = Phone(server.ws_url, token)
    expired = asyncio.Event()
    phone.on("session-expired", expired.set)
    try:
        session = await phone.login()
        got = (await client.telephony_credentials.retrieve(cred_id)).data
        assert got is not None and session.user["name"] == got.name

        # Revoking all of a credential's tokens ends its signed-in session at once.
        revoked = await client.post(
            f"/telephony_credentials/{cred_id}/token/revoke", body={}, cast_to=object
        )
        assert revoked["data"]["revoked"] == 1 and revoked["data"]["sessions_ended"] == 1  # type: ignore[index]
        await asyncio.wait_for(expired.wait(), 10)
    finally:
        await phone.close()

    with pytest.raises(RemoteError) as refused:
        await Phone(server.ws_url, token).login()
    assert refused.value.code == "invalid_token" and "revoked" in str(refused.value)

    # One token revoked by its value; another stays good.
    one = await client.telephony_credentials.create_token(cred_id)
    other = await client.telephony_credentials.create_token(cred_id)
    await client.post(
        f"/telephony_credentials/{cred_id}/token/revoke", body={"token": one}, cast_to=object
    )
    with pytest.raises(RemoteError, match="revoked"):
        await Phone(server.ws_url, one).login()
    async with Phone(server.ws_url, other):
        pass

    # An expired token, and a credential past its expires_at: token_expired, saying which.
    name = (await client.telephony_credentials.retrieve(cred_id)).data.name  # type: ignore[union-attr]
    assert name is not None
    stale, _ = await store.create_token(name, timedelta(0))
    with pytest.raises(RemoteError) as refused:
        await Phone(server.ws_url, stale).login()
    assert refused.value.code == "token_expired"
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    await client.telephony_credentials.update(cred_id, expires_at=past)
    with pytest.raises(RemoteError) as refused:
        await Phone(server.ws_url, other).login()
    assert refused.value.code == "token_expired" and "credential expired" in str(refused.value)
    with pytest.raises(telnyx.UnprocessableEntityError):
        await client.telephony_credentials.create_token(cred_id)
    await client.telephony_credentials.delete(cred_id)


async def test_accounts_are_kept_apart_and_read_only_keys_cannot_write(
    client: AsyncTelnyx, server: Server, store: Store
) -> None:
    cred_id = await _create(client)
    other = await store.create_account(f"ident-b-{time.time()}")
    b = AsyncTelnyx(
        api_key=await store.create_api_key("b", account_id=other.id),
        base_url=f"{server.url}/v2",
        max_retries=0,
    )
    reader = AsyncTelnyx(
        api_key=await store.create_api_key("r", scope="read"),
        base_url=f"{server.url}/v2",
        max_retries=0,
    )
    try:
        with pytest.raises(telnyx.NotFoundError):
            await b.telephony_credentials.retrieve(cred_id)
        with pytest.raises(telnyx.NotFoundError):
            await b.telephony_credentials.create_token(cred_id)
        with pytest.raises(telnyx.NotFoundError):
            await b.telephony_credentials.delete(cred_id)
        assert cred_id not in [c.id for c in (await b.telephony_credentials.list()).data or []]

        assert (await reader.telephony_credentials.retrieve(cred_id)).data is not None
        with pytest.raises(telnyx.PermissionDeniedError):
            await reader.telephony_credentials.create_token(cred_id)
        with pytest.raises(telnyx.PermissionDeniedError):
            await reader.post("/api_keys", body={"name": "x"}, cast_to=object)
    finally:
        await b.close()
        await reader.close()
        await client.telephony_credentials.delete(cred_id)


async def test_revoking_one_token_ends_only_the_sessions_signed_in_with_it(
    client: AsyncTelnyx, server: Server
) -> None:
    """Before, revoking one token left the sessions signed in with it running until their
    token expired (only revoking all of them ended sessions)."""
    cred_id = await _create(client)
    one = await client.telephony_credentials.create_token(cred_id)
    other = await client.telephony_credentials.create_token(cred_id)
    first, second = Phone(server.ws_url, one), Phone(server.ws_url, other)
    expired = asyncio.Event()
    first.on("session-expired", expired.set)
    try:
        await first.login()
        await second.login()
        revoked = await client.post(
            f"/telephony_credentials/{cred_id}/token/revoke", body={"token": one}, cast_to=object
        )
        assert revoked["data"] == {  # type: ignore[index]
            "record_type": "token_revocation",
            "credential_id": cred_id,
            "revoked": 1,
            "sessions_ended": 1,
        }
        await asyncio.wait_for(expired.wait(), 5)
        # The device signed in with the other token goes on.
        assert (await second.call_history()).entries == []

        # Removing the user (REST DELETE) ends its remaining sessions at once.
        removed = asyncio.Event()
        second.on("session-expired", removed.set)
        await client.telephony_credentials.delete(cred_id)
        await asyncio.wait_for(removed.wait(), 5)
    finally:
        await first.close()
        await second.close()


async def test_api_keys_are_listed_created_once_and_revoked(
    client: AsyncTelnyx, server: Server
) -> None:
    made = await client.post("/api_keys", body={"name": "backend"}, cast_to=object)
    new = made["data"]  # type: ignore[index]
    assert new["api_key"].startswith(new["prefix"]) and new["revoked"] is False

    async with httpx.AsyncClient(
        base_url=f"{server.url}/v2", headers={"Authorization": f"Bearer {new['api_key']}"}
    ) as http:
        assert (await http.get("/telephony_credentials")).status_code == 200
        listed = await client.get(
            "/api_keys", options={"params": {"page[size]": 250}}, cast_to=object
        )
        mine = [k for k in listed["data"] if k["id"] == new["id"]]  # type: ignore[index]
        assert len(mine) == 1 and "api_key" not in mine[0]
        assert mine[0]["last_used_at"] is not None  # it was just used

        gone = await client.delete(f"/api_keys/{new['id']}", cast_to=object)
        assert gone["data"]["revoked"] is True  # type: ignore[index]
        refused = await http.get("/telephony_credentials")
        assert refused.status_code == 401 and "revoked" in refused.text

    with pytest.raises(telnyx.PermissionDeniedError):
        await client.post("/api_keys", body={"admin": True}, cast_to=object)
    with pytest.raises(telnyx.NotFoundError):
        await client.delete("/api_keys/99999999", cast_to=object)


# the CLI ----------------------------------------------------------------------------------
def test_cli_users_remove_and_apikey_list_and_revoke(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["users", "add", "dora", "--extension", "1001", *data]) == 0
    assert main(["apikey", "create", "--name", "ci", *data]) == 0
    capsys.readouterr()

    assert main(["apikey", "list", *data]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["ID", "PREFIX", "ACCOUNT"]
    key_id = row.split()[0]
    assert row.split()[-2:] == ["active", "ci"]

    assert main(["apikey", "revoke", key_id, *data]) == 0
    assert f"revoked API key {key_id} 'ci'" in capsys.readouterr().out
    assert main(["apikey", "list", *data]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["apikey", "revoke", "42", *data]) == 2
    assert "no API key with id '42'" in capsys.readouterr().err

    assert main(["users", "remove", "dora", *data]) == 0
    assert "removed user dora" in capsys.readouterr().out
    assert main(["users", "remove", "dora", *data]) == 2
    assert "no user named 'dora'" in capsys.readouterr().err


def test_commands_refuse_a_new_database_at_the_default_location_without_init(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CALLBRIDGE_DATA_DIR", raising=False)
    assert main(["users", "list"]) == 1
    err = capsys.readouterr().err
    expected = tmp_path / "callbridge-data" / "callbridge.db"
    assert f"there is no database at {expected}" in err and "--init" in err
    assert not expected.exists()

    assert main(["users", "add", "erin", "--extension", "1001", "--init"]) == 0
    assert expected.exists()
    capsys.readouterr()
    assert main(["users", "list"]) == 0  # it exists now: no --init needed
    assert "erin" in capsys.readouterr().out

    # The environment variable names the data directory when no option does.
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("CALLBRIDGE_DATA_DIR", str(elsewhere))
    assert main(["users", "add", "finn", "--extension", "1002"]) == 0
    assert (elsewhere / "callbridge.db").exists()
