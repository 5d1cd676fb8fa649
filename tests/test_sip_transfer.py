"""Attended transfer with SIP phones (RFC 3891 Replaces, RFC 5589 §7), against the real server.

- A SIPp phone (``uac_attended_refer.xml``) in two calls through the server, with /ws users X
  and Y, holds X, consults Y and REFERs with Replaces: X and Y then hear each other's tones,
  both of the phone's dialogs get BYE, and no leg is left. The same run proves the error paths
  (a Replaces naming no dialog: NOTIFY 481; a malformed one: 400).
- A SIPp phone's INVITE with Replaces (``uac_replaces.xml``) takes over another of the same
  user's calls (the far /ws party keeps talking, now to the new dialog), after the refusals the
  RFC gives (481, 400, 486).
- A /ws user attended-transfers its call to a SIP phone (SIPp ``uas_echo.xml`` echoing RTP): the
  far /ws party hears its own tone come back through the phone.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callbridge.client import BufferSink, Phone, ToneSource
from callbridge.media.players import HOLD_MUSIC_NOTES
from callbridge.store.sip import BindingUpdate, Origin
from callbridge.testing.server import Server, running
from parties import HEARD, SILENT, level
from sip_peers import LOOPBACK, PASSWORD, Sipp, missing_tools, sip_user

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason="needs sipp")

X_TONE, Y_TONE = 440.0, 1000.0
CID = ["-cid_str", "%u-%p-sipp"]  # no "@" in the Call-ID: it goes into a URI's Replaces


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("sipxfer"), sip_port=True, ring_timeout=10.0) as srv:
        yield srv


async def _user(server: Server, sip: bool = False) -> tuple[str, str, str]:
    return await sip_user(server, "sx", 5200, sip)


async def _ws_user(server: Server, phones: list[Phone]) -> tuple[str, Phone]:
    _, ext, token = await _user(server)
    phone = Phone(server.ws_url, token)
    await phone.login()
    phones.append(phone)
    return ext, phone


def _answering(phone: Phone, tone: float, sink: BufferSink, calls: list[Any]) -> None:
    """``phone`` answers its calls with ``tone``, hearing into ``sink``."""

    async def answer(call: Any) -> None:
        calls.append(call)
        await call.answer(source=ToneSource(tone), sink=sink)

    tasks: set[asyncio.Task[None]] = set()

    def incoming(call: Any) -> None:
        task = asyncio.create_task(answer(call))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    phone.on("incoming", incoming)


async def _idle(server: Server, phones: list[Phone]) -> dict[str, Any]:
    for phone in phones:
        await phone.logout()
    phones.clear()
    return dict(await asyncio.to_thread(server.wait_idle, 15.0))


async def test_a_phone_refers_with_replaces_and_its_two_far_parties_talk(
    server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """uac_attended_refer.xml: the phone calls X, holds, calls Y, then REFERs dialog 1 to Y with
    Replaces naming dialog 2. First a wrong to-tag (202, NOTIFY 481) and a Replaces without
    from-tag (400): both calls stay. Then the right one: NOTIFY 200, BYE on both dialogs, and
    X and Y hear each other (no more hold music for X), each told ``transferred``."""
    phone_user, _, _ = await _user(server, sip=True)
    x_ext, x_phone = await _ws_user(server, phones)
    y_ext, y_phone = await _ws_user(server, phones)
    x_sink, y_sink = BufferSink(), BufferSink()
    x_calls: list[Any] = []
    y_calls: list[Any] = []
    _answering(x_phone, X_TONE, x_sink, x_calls)
    _answering(y_phone, Y_TONE, y_sink, y_calls)
    uac = Sipp(
        tmp_path / "uac",
        "uac_attended_refer.xml",
        remote=f"{LOOPBACK}:{server.sip_port}",
        service=x_ext,
        user=phone_user,
        password=PASSWORD,
        keys={"refer_to": y_ext},
        extra=CID,
        deadline=30,
    )
    async with uac:
        result = await uac.wait(30)
    assert result.ok and result.successful == 1, result.explain()
    log = result.messages
    assert "SIP/2.0 400 Bad Request (Replaces in the Refer-To" in log, log[-3000:]
    assert "SIP/2.0 481 Call/Transaction Does Not Exist" in log
    byes = re.findall(r"^BYE sip:.*$\s+(?:.*\n)*?Call-ID: (\S+)", log, re.MULTILINE)
    assert len(set(byes)) == 2, byes  # both dialogs ended by the server
    (at_x,), (at_y,) = x_calls, y_calls
    assert (await at_x.wait_for("transferred", timeout=5)).data["peer"]
    assert (await at_y.wait_for("transferred", timeout=5)).data["peer"]
    assert await level(x_sink, Y_TONE) > HEARD
    assert await level(y_sink, X_TONE) > HEARD
    assert await level(x_sink, HOLD_MUSIC_NOTES[0]) < SILENT
    await at_x.hangup()
    assert (await at_y.wait_for("ended", timeout=5)).data["reason"] == "hangup"
    health = await _idle(server, phones)
    assert health["legs"] == 0 and health["media_endpoints"] == 0, health


async def _register(server: Server, name: str, port: int) -> None:
    """A binding of ``name`` to a SIPp callee at ``port`` (as its REGISTER would leave it)."""
    async with server.store() as store:
        creds = await store.sip_credentials(name)
        assert creds is not None
        await store.register_bindings(
            creds.user.id,
            call_id=f"reg-{name}-{port}",
            cseq=1,
            origin=Origin(LOOPBACK, port, "UDP"),
            updates=[BindingUpdate(f"b{port}", f"<sip:{name}@{LOOPBACK}:{port}>", 300)],
        )


async def test_a_ws_user_attended_transfers_its_caller_to_a_sip_phone(
    server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """/ws A calls /ws B; B consults the SIP user Y (its registered phone: SIPp uas_echo.xml,
    echoing RTP) and completes the transfer. A then hears its own tone come back through Y's
    phone (A -> server -> Y -> server -> A: both directions of the new bridge), and not B; A's
    hangup reaches Y's phone as BYE."""
    _, a_phone = await _ws_user(server, phones)
    b_ext, b_phone = await _ws_user(server, phones)
    y_name, y_ext, _ = await _user(server, sip=True)
    uas = Sipp(tmp_path / "uas", "uas_echo.xml", service=y_name, rtp_echo=True, deadline=25)
    await _register(server, y_name, uas.port)
    b_calls: list[Any] = []
    _answering(b_phone, Y_TONE, BufferSink(), b_calls)
    a_sink = BufferSink()
    async with uas:
        to_b = await a_phone.call(b_ext, source=ToneSource(X_TONE), sink=a_sink)
        await to_b.wait_for("answered", timeout=10)
        (from_a,) = b_calls
        consult = await from_a.attended_transfer(y_ext, source=ToneSource(Y_TONE))
        await consult.wait_for("answered", timeout=10)
        await from_a.complete_transfer()
        assert (await from_a.wait_for("ended", timeout=5)).data["reason"] == "transferred"
        assert (await consult.wait_for("ended", timeout=5)).data["reason"] == "transferred"
        assert (await to_b.wait_for("transferred", timeout=5)).data["peer"]
        assert await level(a_sink, X_TONE) > HEARD  # the echo of A's own tone, through Y
        assert await level(a_sink, Y_TONE) < SILENT  # B is gone
        await to_b.hangup()
        callee = await uas.wait(15)
    assert callee.ok and callee.successful == 1, callee.explain()
    health = await _idle(server, phones)
    assert health["legs"] == 0 and health["media_endpoints"] == 0, health


async def test_an_invite_with_replaces_takes_over_a_call_of_the_same_user(
    server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """uac_replaces.xml: the user's phone is in a call with the /ws user X; INVITEs with
    Replaces naming that dialog get 481 (wrong to-tag), 400 (no from-tag), 486 (early-only),
    then one takes the call over: 200, the old dialog gets BYE, and X (who noticed nothing)
    hears its own tone echoed by the new dialog's media (SIPp -rtp_echo). X's hangup reaches
    the new dialog as BYE; no leg is left."""
    phone_user, _, _ = await _user(server, sip=True)
    x_ext, x_phone = await _ws_user(server, phones)
    x_sink = BufferSink()
    x_calls: list[Any] = []
    _answering(x_phone, X_TONE, x_sink, x_calls)
    uac = Sipp(
        tmp_path / "uac",
        "uac_replaces.xml",
        remote=f"{LOOPBACK}:{server.sip_port}",
        service=x_ext,
        user=phone_user,
        password=PASSWORD,
        rtp_echo=True,
        extra=CID,
        deadline=30,
    )
    async with uac:
        async with asyncio.timeout(15):  # until the new dialog's echo reaches X
            while await level(x_sink, X_TONE, 0.4) < HEARD:
                pass
        (at_x,) = x_calls
        await at_x.hangup()
        result = await uac.wait(20)
    assert result.ok and result.successful == 1, result.explain()
    log = result.messages
    assert "SIP/2.0 481 Call/Transaction Does Not Exist (Replaces" in log, log[-3000:]
    assert "SIP/2.0 400 Bad Request (Replaces in the INVITE" in log
    assert "SIP/2.0 486 Busy Here (Replaces is early-only" in log
    health = await _idle(server, phones)
    assert health["legs"] == 0 and health["media_endpoints"] == 0, health
