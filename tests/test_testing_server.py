"""``callbridge.testing.server``: a real server for tests, started, used and checked."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

import callbridge.testing.server as kit
from callbridge.client import Phone
from callbridge.testing.server import Server, ServerError, free_port, serve


async def test_a_served_server_answers_healthz_rest_and_logins_then_stops_clean(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path, users=["alice"], ring_timeout=5) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.ws_url == f"ws://127.0.0.1:{server.port}/ws"
        assert server.data_dir == tmp_path and server.log_path == tmp_path / "server.log"
        async with httpx.AsyncClient(base_url=server.url) as http:
            health = (await http.get("/healthz")).json()
            assert (health["status"], health["sessions"], health["legs"]) == ("ok", 0, 0)
            key = await server.api_key("tests")
            apps = await http.get(
                "/v2/call_control_applications", headers={"authorization": f"Bearer {key}"}
            )
            assert apps.status_code == 200 and apps.json()["data"] == []
        alice = server.users["alice"]
        assert (alice.name, alice.extension) == ("alice", "1001")
        bob = await server.add_user("bob", number="+14155550102", display_name="Bob")
        assert (bob.extension, bob.number, server.users["bob"]) == ("1002", "+14155550102", bob)
        for token in (alice.token, await server.token("alice"), bob.token):
            async with Phone(server.ws_url, token) as phone:
                assert phone.session is not None
                assert phone.session.user["name"] in ("alice", "bob")
        assert "listening on" in server.log()
    assert server.proc.returncode is not None  # stopped on the way out


async def test_the_module_docstring_example_places_a_call(tmp_path: Path) -> None:
    doc = kit.__doc__
    assert doc is not None
    example = doc.split("::\n\n", 1)[1].split("\n\n``server.url``", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(textwrap.dedent(example), "callbridge.testing.server example", "exec"), namespace)
    await namespace["test_alice_calls_bob"](tmp_path)


async def test_a_session_left_behind_and_a_traceback_fail_the_check_on_the_way_out(
    tmp_path: Path,
) -> None:
    with pytest.raises(AssertionError, match="Traceback"):
        async with serve(tmp_path, users=["alice"], session_grace=1) as server:
            phone = Phone(server.ws_url, server.users["alice"].token)
            await phone.login()
            await phone.close()  # no logout: the session waits for the grace period
            live = await asyncio.to_thread(server.wait_idle, 0.3)
            assert live["sessions"] == 1
            with server.log_path.open("a") as log:  # as if the server had logged one
                log.write("Traceback (most recent call last):\n")
    assert server.proc.returncode is not None


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    server = Server(tmp_path, port=free_port(), args=["--stun", "not-a-url"])
    with pytest.raises(ServerError, match="invalid URL"):
        server.wait_ready()
    assert server.stop() == 2  # the CLI's exit code for a bad option
