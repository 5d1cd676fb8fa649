"""Every wrong thing a peer can send gets a specific `error`, and the connection stays usable."""

from __future__ import annotations

import json
from datetime import timedelta

from callbridge.store import Store
from conftest import Connect, MakeUser, RawClient, make_offer


async def assert_usable(client: RawClient) -> None:
    """The connection still answers after an error."""
    await client.send({"type": "call.hangup", "req_id": "probe", "call_id": "nope"})
    err = await client.expect("error", req_id="probe")
    assert err["code"] in {"call_not_found", "not_logged_in"}


async def test_a_frame_that_is_not_json_gets_invalid_json_and_the_connection_lives(
    raw: Connect, make_user: MakeUser
) -> None:
    c = await raw()
    await c.send("this is not json")
    err = await c.expect("error")
    assert err["code"] == "invalid_json"
    assert "not valid JSON" in err["message"]
    assert err["cause"] and err["resolution"]
    user = await make_user()
    ready = await c.login(user.token)
    assert ready["session_id"] and ready["user"]["name"] == user.name


async def test_binary_frames_and_non_objects_are_refused(raw: Connect) -> None:
    c = await raw()
    await c.send(b"\x00\x01")
    assert (await c.expect("error"))["code"] == "invalid_json"
    await c.send(json.dumps([1, 2, 3]))
    err = await c.expect("error")
    assert err["code"] == "invalid_json" and "JSON object" in err["message"]
    await assert_usable(c)


async def test_unknown_or_missing_type_names_the_valid_types(raw: Connect) -> None:
    c = await raw()
    await c.send({"type": "call.teleport", "req_id": "t1"})
    err = await c.expect("error", req_id="t1")
    assert err["code"] == "unknown_type"
    assert "call.create" in err["message"]
    await c.send({"req_id": "t2"})
    assert (await c.expect("error", req_id="t2"))["code"] == "unknown_type"


async def test_calls_before_login_are_refused(raw: Connect) -> None:
    c = await raw()
    _, sdp = await make_offer()
    await c.send({"type": "call.create", "req_id": "c1", "destination": "100", "sdp": sdp})
    err = await c.expect("error", req_id="c1")
    assert err["code"] == "not_logged_in"
    assert "session.login" in err["message"]


async def test_bad_expired_and_repeated_logins(
    raw: Connect, make_user: MakeUser, store: Store
) -> None:
    c = await raw()
    await c.send({"type": "session.login", "req_id": "l1", "token": "forged"})
    assert (await c.expect("error", req_id="l1"))["code"] == "invalid_token"
    user = await make_user()
    expired, _ = await store.create_token(user.name, timedelta(seconds=-1))
    await c.send({"type": "session.login", "req_id": "l2", "token": expired})
    assert (await c.expect("error", req_id="l2"))["code"] == "token_expired"
    await c.login(user.token)
    await c.send({"type": "session.login", "req_id": "l3", "token": user.token})
    assert (await c.expect("error", req_id="l3"))["code"] == "already_logged_in"


async def test_missing_and_invalid_fields_are_named(raw: Connect, make_user: MakeUser) -> None:
    c = await raw()
    await c.login((await make_user()).token)
    await c.send({"type": "call.create", "req_id": "m1", "sdp": "v=0"})
    err = await c.expect("error", req_id="m1")
    assert err["code"] == "invalid_message"
    assert "destination" in err["message"] and "required" in err["message"]
    await c.send({"type": "call.reject", "req_id": "m2", "call_id": "x", "reason": "grumpy"})
    err = await c.expect("error", req_id="m2")
    assert err["code"] == "invalid_message" and "reason" in err["message"]
    await c.send({"type": "call.hold", "req_id": "m3", "call_id": 42})
    assert (await c.expect("error", req_id="m3"))["code"] == "invalid_message"


async def test_an_oversized_message_is_refused_and_the_connection_lives(
    raw: Connect, make_user: MakeUser
) -> None:
    c = await raw()
    await c.login((await make_user()).token)
    await c.send({"type": "call.create", "destination": "1", "sdp": "x" * 70_000})
    err = await c.expect("error")
    assert err["code"] == "message_too_large"
    await assert_usable(c)


async def test_sdp_that_cannot_be_used(raw: Connect, make_user: MakeUser) -> None:
    callee = await make_user()
    c = await raw()
    await c.login((await make_user()).token)
    await c.send({"type": "call.create", "req_id": "s1", "destination": callee.extension,
                  "sdp": "v=0\r\nthis is not sdp\r\n"})  # fmt: skip
    err = await c.expect("error", req_id="s1")
    assert err["code"] == "invalid_sdp"
    pc, sdp = await make_offer(data_only=True)
    await c.send(
        {"type": "call.create", "req_id": "s2", "destination": callee.extension, "sdp": sdp}
    )
    err = await c.expect("error", req_id="s2")
    assert err["code"] == "invalid_sdp" and "audio" in err["message"]
    await pc.close()
    pc, sdp = await make_offer(codecs=["G722"])
    await c.send(
        {"type": "call.create", "req_id": "s3", "destination": callee.extension, "sdp": sdp}
    )
    err = await c.expect("error", req_id="s3")
    assert err["code"] == "unsupported_codec"
    await pc.close()
    await assert_usable(c)


async def test_unknown_destination_fails_with_a_reason(raw: Connect, make_user: MakeUser) -> None:
    c = await raw()
    await c.login((await make_user()).token)
    pc, sdp = await make_offer()
    await c.send({"type": "call.create", "req_id": "d1", "destination": "99999", "sdp": sdp})
    trying = await c.expect("call.trying", req_id="d1")
    err = await c.expect("error", call_id=trying["call_id"])
    assert err["code"] == "destination_not_found" and "99999" in err["message"]
    ended = await c.expect("call.ended", call_id=trying["call_id"])
    assert ended["reason"] == "failed"
    await pc.close()


async def test_acting_on_unknown_or_someone_elses_call(raw: Connect, make_user: MakeUser) -> None:
    alice, bob, mallory = await make_user(), await make_user(), await make_user()
    a, b, m = await raw(), await raw(), await raw()
    await a.login(alice.token)
    await b.login(bob.token)
    await m.login(mallory.token)
    pc, sdp = await make_offer()
    await a.send({"type": "call.create", "req_id": "x", "destination": bob.extension, "sdp": sdp})
    call_id = (await a.expect("call.trying", req_id="x"))["call_id"]
    await b.expect("call.incoming")
    await m.send({"type": "call.hangup", "req_id": "h", "call_id": call_id})
    err = await m.expect("error", req_id="h")
    assert err["code"] == "not_your_call"
    await m.send({"type": "call.hangup", "req_id": "h2", "call_id": "no-such-call"})
    assert (await m.expect("error", req_id="h2"))["code"] == "call_not_found"
    # Hold needs an answered call.
    await a.send({"type": "call.hold", "req_id": "h3", "call_id": call_id})
    err = await a.expect("error", req_id="h3")
    assert err["code"] == "invalid_state" and "answered" in err["message"]
    # The call is unharmed by all that: the caller can still cancel it.
    await a.send({"type": "call.hangup", "req_id": "bye", "call_id": call_id})
    assert (await a.expect("call.ended", req_id="bye"))["reason"] == "hangup"
    assert (await b.expect("call.ended"))["reason"] == "canceled"
    await pc.close()


async def test_bad_and_mdns_ice_candidates(raw: Connect, make_user: MakeUser) -> None:
    callee = await make_user()
    await (await raw()).login(callee.token)  # so the call stays up, ringing
    c = await raw()
    await c.login((await make_user()).token)
    pc, sdp = await make_offer()
    await c.send(
        {"type": "call.create", "req_id": "i", "destination": callee.extension, "sdp": sdp}
    )
    call_id = (await c.expect("call.trying", req_id="i"))["call_id"]
    await c.send({"type": "ice.candidate", "req_id": "i1", "call_id": call_id,
                  "candidate": "candidate:garbage", "sdp_mid": "0"})  # fmt: skip
    assert (await c.expect("error", req_id="i1"))["code"] == "invalid_candidate"
    mdns = "candidate:1 1 udp 2122260223 3f1c9a.local 54321 typ host"
    await c.send({"type": "ice.candidate", "req_id": "i2", "call_id": call_id,
                  "candidate": mdns, "sdp_mid": "0", "sdp_m_line_index": 0})  # fmt: skip
    err = await c.expect("error", req_id="i2")
    assert err["code"] == "invalid_candidate" and ".local" in err["message"]
    await assert_usable(c)
    await pc.close()
