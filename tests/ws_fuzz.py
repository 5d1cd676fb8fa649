"""The /ws mutation fuzzer's generator: a corpus of valid messages built from the protocol's
models, and seeded mutations of them (tests/test_ws_fuzz.py sends them to a real server).

Everything here is a pure function of a ``random.Random`` and the ids the server has told the
fuzzer so far (:class:`Known`), so a seed gives the same mutations in the same order.

Nothing generated may make the server send a packet off this machine: ICE candidates, SDP
addresses and media URLs come only from curated loopback values (never from character-level
mutation, which could turn ``127.0.0.1`` into ``17.0.0.1``), and :func:`loopback_only` checks
each finished frame before it is sent.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args, get_origin

from pydantic import BaseModel

from callbridge.signalling.protocol import MAX_JSON_DEPTH, MAX_MESSAGE_BYTES, ClientMessage

__all__ = [
    "MODELS",
    "Frame",
    "Fuzzer",
    "Known",
    "answer_for",
    "loopback_only",
    "valid_message",
]

MODELS: dict[str, type[BaseModel]] = {
    get_args(m.model_fields["type"].annotation)[0]: m for m in get_args(ClientMessage)
}

# Strings that have broken parsers, loggers and databases elsewhere: bidi overrides, NUL and
# other controls, lone surrogates (valid JSON escapes that are no valid UTF-8), combining marks,
# emoji, a BOM, format strings, SQL and path syntax.
NASTY_STRINGS = [
    "",
    " ",
    "\u202eAlice",
    "\u0000",
    "a\u0000b",
    "\ud800",
    "\udfff\ud800",
    "e\u0301\u0301\u0301",
    "😀" * 3,
    "\ufeff",
    "%s%n%x",
    "{0}{1}",
    "'; DROP TABLE users; --",
    "../../etc/passwd",
    "\r\n\r\n",
    "\t",
    "null",
    "true",
    "-1",
    "0x10",
    "1e999",
    "ﷺ" * 50,
]
NASTY_NUMBERS: list[Any] = [
    0,
    -1,
    1,
    2**31,
    -(2**31) - 1,
    2**63,
    2**64 + 1,
    -(2**63) - 1,
    10**300,
    1e308,
    -1e308,
    0.5,
    float("nan"),
    float("inf"),
    float("-inf"),
]
WRONG_TYPES: list[Any] = [None, True, False, [], {}, [1, 2], {"a": 1}, "x", 0, -1, 1.5]

# ICE candidates (RFC 8839 section 5.1): only 127.0.0.1, ::1, localhost and mDNS names, which
# the server refuses without resolving them.
CANDIDATES = [
    "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
    "candidate:1 1 UDP 2130706431 127.0.0.1 9 typ host generation 0",
    "candidate:2 1 tcp 1518280447 127.0.0.1 9 typ host tcptype passive",
    "candidate:3 1 udp 2130706431 ::1 9 typ host",
    "candidate:4 1 udp 2130706431 127.0.0.1 0 typ host",
    "candidate:5 1 udp 2130706431 127.0.0.1 65536 typ host",
    "candidate:6 1 udp 2130706431 127.0.0.1 -1 typ host",
    "candidate:7 1 udp -5 127.0.0.1 9 typ host",
    "candidate:8 1 udp 99999999999999999999 127.0.0.1 9 typ host",
    "candidate:9 1 udp 2130706431 127.0.0.1 9 typ relay raddr 127.0.0.1 rport 9",
    "candidate:10 1 udp 2130706431 127.0.0.1 9 typ srflx",
    "candidate:11 1 udp 2130706431 127.0.0.1 9 typ nonsense",
    "candidate:12 1 sctp 2130706431 127.0.0.1 9 typ host",
    "candidate:13 99 udp 2130706431 127.0.0.1 9 typ host",
    "candidate:14 1 udp 2130706431 1f3a9c2e-0b7d-4c1e-9e2a-5d6f7a8b9c0d.local 9 typ host",
    "candidate:15 1 udp 2130706431 localhost 9 typ host",
    "candidate:16 1 udp 2130706431 127.0.0.1 9",
    "candidate:",
    "candidate",
    "",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
    "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host ufrag \u202e\u0000",
    "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host " + "x " * 400,
]


@dataclass
class Known:
    """What the server has told the fuzzer: ids worth aiming mutations at."""

    user: dict[str, str]  # the fuzzer's own user: name, extension, number, token
    target: dict[str, str]  # another logged-in user that answers calls
    audio_urls: list[str]  # loopback URLs: a real WAV, a 404, a closed port, ...
    offers: list[str]  # real SDP offers (audio; audio + video)
    session_id: str | None = None
    call_ids: list[str] = field(default_factory=list)
    conference_ids: list[str] = field(default_factory=list)
    participants: list[str] = field(default_factory=list)

    def learn(self, msg: dict[str, Any], own: bool = True) -> None:
        """Take the ids out of a server message (kept to the most recent few of each kind);
        the session id only from the fuzzer's ``own`` messages."""
        for key, pool in (
            ("call_id", self.call_ids),
            ("target_call_id", self.call_ids),
            ("conference_id", self.conference_ids),
        ):
            value = msg.get(key)
            if isinstance(value, str) and value not in pool:
                pool.append(value)
                del pool[:-12]
        for key in ("participants", "invitations"):
            members = msg.get(key)
            if isinstance(members, dict):
                for pid in members:
                    if pid not in self.participants:
                        self.participants.append(pid)
                        del self.participants[:-12]
        if own and msg.get("type") in ("session.ready", "session.resumed"):
            self.session_id = msg.get("session_id")


def _pick(rng: random.Random, pool: list[str], fallback: str) -> str:
    """Mostly one of the newest ids (likely still live), sometimes an older or unknown one."""
    if not pool or rng.random() < 0.1:
        return fallback
    return rng.choice(pool[-3:] if rng.random() < 0.7 else pool)


def _field_value(rng: random.Random, name: str, annotation: Any, known: Known) -> Any:
    """A valid value for a field of a client message, chosen by its name (the protocol's
    vocabulary), else by its type: a message type added to protocol.py gets a corpus entry."""
    user, target = known.user, known.target
    by_name: dict[str, Callable[[], Any]] = {
        "req_id": lambda: f"r{rng.randrange(10**6)}",
        "token": lambda: user["token"] if rng.random() < 0.9 else target["token"],
        "user_id": lambda: rng.choice([user["name"], user["extension"], user["number"]]),
        "e911_id": lambda: f"e911-{rng.randrange(100)}",
        "session_id": lambda: known.session_id or "s-unknown",
        "destination": lambda: rng.choice(
            [
                *[target["extension"], target["extension"], target["name"], target["number"]],
                *[user["extension"], "999", "+15550000000"],
            ]
        ),
        "to": lambda: rng.choice([target["extension"], target["name"], user["extension"], "999"]),
        "sdp": lambda: rng.choice(known.offers),
        "caller_id": lambda: rng.choice([user["extension"], user["number"], target["number"]]),
        "call_id": lambda: _pick(rng, known.call_ids, "c-unknown"),
        "target_call_id": lambda: _pick(rng, known.call_ids, "c-unknown"),
        "call_ids": lambda: [_pick(rng, known.call_ids, "c-x") for _ in range(rng.randint(1, 3))],
        "conference_id": lambda: _pick(rng, known.conference_ids, "conf-unknown"),
        "participant": lambda: _pick(rng, known.participants, target["extension"]),
        "participants": lambda: [_pick(rng, known.participants, target["extension"])],
        "whisper_to": lambda: [_pick(rng, known.participants, target["extension"])],
        "candidate": lambda: rng.choice(CANDIDATES[:3]),
        "sdp_mid": lambda: rng.choice(["0", "1", "audio"]),
        "sdp_m_line_index": lambda: rng.choice([0, 1]),
        "audio_url": lambda: rng.choice(known.audio_urls),
        "hold_audio_url": lambda: rng.choice(known.audio_urls),
        "loops": lambda: rng.choice([1, 2, 0]),
        "text": lambda: rng.choice(["hello", "one two three", "ok"]),
        "voice": lambda: rng.choice(["female", "male"]),
        "language": lambda: "en-US",
        "name": lambda: rng.choice(["standup", "room 1", "a.b_c:d@e+f-g"]),
        "limit": lambda: rng.choice([1, 20, 100]),  # history.list: 1-100
        "before": lambda: rng.choice(["2026-01-01T00:00:00+00:00|1", "x"]),  # a cursor (opaque)
        # forwarding.set (issue 16): seconds 1-600, steps of targets, outcome actions
        "ring_seconds": lambda: rng.choice([1, 15, 600]),
        "steps": lambda: rng.choice(
            [
                [],
                [{"targets": [{"type": "devices"}], "seconds": 2}],
                [{"targets": [{"type": "user", "value": target["name"]}]}],
            ]
        ),
        "on_busy": lambda: rng.choice(["next", "end:busy", f"user:{target['name']}"]),
        "on_no_answer": lambda: rng.choice(["next", "end"]),
        "on_offline": lambda: rng.choice(["next", "end:failed"]),
        "on_dnd": lambda: rng.choice(["next", "end:busy"]),
    }
    if name in by_name:
        return by_name[name]()
    return _by_type(rng, annotation)


def _by_type(rng: random.Random, annotation: Any) -> Any:
    origin = get_origin(annotation)
    args = [a for a in get_args(annotation) if a is not type(None)]
    if origin is Literal:
        return rng.choice(get_args(annotation))
    if origin in (typing.Union, types.UnionType) or origin is typing.Annotated:
        return _by_type(rng, args[0])
    if origin is list:
        return [_by_type(rng, args[0])] if args else []
    if annotation is bool:
        return rng.random() < 0.5
    if annotation is int:
        return rng.randint(0, 3)
    if annotation is str:
        return "x"
    return None


def valid_message(rng: random.Random, type_: str, known: Known) -> dict[str, Any]:
    """A message of ``type_`` that the protocol accepts (its ids may name nothing)."""
    msg: dict[str, Any] = {"type": type_}
    for name, info in MODELS[type_].model_fields.items():
        if name == "type" or (not info.is_required() and rng.random() < 0.4):
            continue
        msg[name] = _field_value(rng, name, info.annotation, known)
    return msg


# -- SDP ----------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[\s\"',;=/\\\[\]{}()<>]+")
_URL_HOST = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://\[?([^/\]:\s\"'\\?#]*)")
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", ""}


def loopback_only(text: str) -> bool:
    """Whether every IP address and URL host in ``text`` is on this machine (the server never
    resolves other host names for ICE: aioice takes only addresses, and mDNS names are refused
    before they reach it)."""
    for token in _TOKEN.split(text):
        try:
            ip = ipaddress.ip_address(token)
        except ValueError:
            continue
        if not (ip.is_loopback or ip.is_unspecified):
            return False
    return all(host.lower() in _LOOPBACK_HOSTS for host in _URL_HOST.findall(text))


def _sdp_lines(sdp: str) -> list[str]:
    return [line for line in sdp.replace("\r\n", "\n").split("\n") if line]


def _join(lines: list[str], rng: random.Random) -> str:
    sep = rng.choice(["\r\n"] * 8 + ["\n", "\r"])
    return sep.join(lines) + sep


def mutate_sdp(rng: random.Random, sdp: str) -> str:
    """Valid-looking SDP garbage (RFC 8866 syntax bent), addresses kept on loopback."""
    lines = _sdp_lines(sdp)
    media = [i for i, line in enumerate(lines) if line.startswith("m=")]
    for _ in range(rng.randint(1, 3)):
        lines = lines or ["v=0"]
        i = rng.randrange(len(lines))
        kind = rng.randrange(14)
        if kind == 0:
            del lines[i]
        elif kind == 1:
            lines.insert(i, lines[i])  # a duplicated line: a=mid twice, two fingerprints, ...
        elif kind == 2:
            mids = [j for j, line in enumerate(lines) if line.startswith("a=mid:")]
            if mids:
                lines.insert(mids[0], lines[mids[0]])
        elif kind == 3 and media:  # more m-sections: a copy of the first, k times
            start = media[0]
            end = media[1] if len(media) > 1 else len(lines)
            section = lines[start:end]
            lines += section * rng.choice([1, 2, 7, 40, 300])
        elif kind == 4 and media:
            port = rng.choice(["0", "-1", "65536", "99999999999999999999", "x"])
            parts = lines[media[0]].split(" ")
            lines[media[0]] = " ".join([parts[0], port, *parts[2:]])
        elif kind == 5:
            lines[i] = rng.choice(
                [
                    "a=rtpmap:111 opus/0/0",
                    "a=rtpmap:999999 x/1",
                    "a=fmtp:111 \u0000\u202e",
                    "a=fingerprint:sha-256 ZZ",
                    "a=fingerprint:md5 00",
                    "a=ice-ufrag:",
                    "a=ice-pwd:",
                    "a=setup:nonsense",
                    "a=ssrc:-1 cname:x",
                    "a=extmap:99999 urn:x",
                    "a=rtcp:0 IN IP4 127.0.0.1",
                    "a=mid:" + "m" * 300,
                    "a=group:BUNDLE 0 0 0",
                    "a=msid:\ud800 x",
                    "m=audio 9 UDP/TLS/RTP/SAVPF",
                    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101 102 103 104 105",
                    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
                    "m=audio 9 RTP/AVP 0",
                    "c=IN IP6 ::1",
                    "c=IN IP4 127.0.0.1/255",
                    "c=IN IP4 0.0.0.0",
                    "v=1",
                    "o=- 99999999999999999999999 2 IN IP4 127.0.0.1",
                    "t=-1 -1",
                    "b=AS:-1",
                    "x=garbage",
                    "=",
                    "a=" + "a" * 2000,
                ]
            )
        elif kind == 6:
            # no mDNS name in SDP: aiortc would resolve it by multicast on the LAN
            candidates = [c for c in CANDIDATES if ".local" not in c]
            lines.insert(i, "a=" + rng.choice(candidates)[:600])
        elif kind == 7:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == 8:
            lines = [line for line in lines if not line.startswith("a=candidate")]
        elif kind == 9:
            lines = [line for line in lines if not line.startswith(("a=fingerprint", "a=ice"))]
        elif kind == 10:
            lines = lines[: rng.randrange(1, len(lines) + 1)]
        elif kind == 11:
            lines = [
                line.replace("sendrecv", rng.choice(["inactive", "recvonly", "x"]))
                for line in lines
            ]
        elif kind == 12:
            lines = [line.replace("opus", "OPUS").replace("PCMU", "pcmu") for line in lines]
        else:
            lines[i] = lines[i] + rng.choice(NASTY_STRINGS)
    text = _join(lines, rng)
    if rng.random() < 0.1:
        text = text[: rng.randrange(len(text) + 1)]
    return text


def answer_for(offer: str, ufrag: str = "fuzz") -> str:
    """A plausible SDP answer (RFC 8829 section 5.3) to a server offer: same m-sections and
    mids, the first codec of each, a loopback candidate at a port nothing answers on (the media
    never connects; the calls exist for their signalling)."""
    lines = _sdp_lines(offer)
    out = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0"]
    mids = [line[6:] for line in lines if line.startswith("a=mid:")]
    if mids:
        out.append("a=group:BUNDLE " + " ".join(mids))
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
    for section in sections:
        kind, _port, proto, *pts = section[0][2:].split(" ")
        pt = pts[0] if pts else "0"
        out += [f"m={kind} 9 {proto} {pt}", "c=IN IP4 127.0.0.1", "a=rtcp-mux", "a=sendrecv"]
        out += [
            line
            for line in section
            if line.startswith(("a=mid:", f"a=rtpmap:{pt} ", f"a=fmtp:{pt} "))
        ]
        out += [
            f"a=ice-ufrag:{ufrag}",
            "a=ice-pwd:fuzzfuzzfuzzfuzzfuzzfuzz",
            "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
            "a=setup:active",
            "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
            "a=end-of-candidates",
        ]
    return "\r\n".join(out) + "\r\n"


# -- messages and frames ------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One thing to send: a text frame, or a binary one."""

    data: str | bytes
    what: str  # how it was made, for the report of a failure

    def describe(self) -> str:
        shown = self.data if isinstance(self.data, str) else repr(self.data)
        return f"{self.what}: {shown[:400]}"


def _nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


class Fuzzer:
    """Seeded mutations of valid messages (see the module docstring)."""

    # How often each message type is drawn, relative to the others (1): session.logout ends the
    # fuzzer's session and socket (it reconnects), so it is rare; what makes calls and
    # conferences is frequent, so that the in-call requests meet live calls.
    WEIGHTS: ClassVar[dict[str, float]] = {
        "session.logout": 0.05,
        "session.login": 0.3,
        "session.resume": 0.3,
        "call.create": 4.0,
        "conference.start": 2.0,
        "conference.invite": 3.0,
    }

    def __init__(self, seed: int, known: Known) -> None:
        self.rng = random.Random(seed)
        self.known = known
        self.types = sorted(MODELS)
        self.weights = [self.WEIGHTS.get(t, 1.0) for t in self.types]

    def _type(self) -> str:
        return self.rng.choices(self.types, self.weights)[0]

    def message(self) -> dict[str, Any]:
        """A valid message of a random type."""
        return valid_message(self.rng, self._type(), self.known)

    def frame(self) -> Frame:
        """The next frame: about a third valid, the rest mutated."""
        rng = self.rng
        for _ in range(20):
            frame = self._frame(rng)
            text = frame.data if isinstance(frame.data, str) else frame.data.decode("latin-1")
            if loopback_only(text):
                return frame
        return Frame(json.dumps(self.message()), "valid (fallback)")

    def _frame(self, rng: random.Random) -> Frame:
        msg = self.message()
        type_ = msg["type"]
        roll = rng.random()
        if roll < 0.35:
            return Frame(json.dumps(msg), f"valid {type_}")
        if roll < 0.75:
            what = self._mutate_fields(msg)
            return Frame(json.dumps(msg), f"{type_} with {what}")
        if roll < 0.8:
            return self._duplicate_key(msg)
        return self._mangle_frame(msg)

    def _mutate_fields(self, msg: dict[str, Any]) -> str:
        rng = self.rng
        done = []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            if not msg:  # every field dropped: {} is a frame worth sending too
                break
            name = rng.choice(sorted(msg))
            value = msg[name]
            kind = rng.randrange(10)
            if kind == 0:
                del msg[name]
                done.append(f"{name} dropped")
            elif kind == 1:
                msg[name] = rng.choice(WRONG_TYPES)
                done.append(f"{name} of a wrong type")
            elif kind == 2:
                msg[name] = rng.choice(NASTY_NUMBERS)
                done.append(f"{name} a nasty number")
            elif kind == 3 and name == "sdp":
                msg[name] = mutate_sdp(rng, value if isinstance(value, str) else "")
                done.append("sdp garbage")
            elif kind == 3 and name == "candidate":
                msg[name] = rng.choice(CANDIDATES)
                done.append("candidate garbage")
            elif kind == 3 and name in ("audio_url", "hold_audio_url"):
                msg[name] = rng.choice(self.known.audio_urls)
                done.append("another url")
            elif kind == 3 and isinstance(value, str):
                msg[name] = self._nasty_string(value)
                done.append(f"{name} a nasty string")
            elif kind == 4:
                msg[name] = _nested(rng.choice([3, 10, MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH + 5]))
                done.append(f"{name} nested")
            elif kind == 5:
                msg["type"] = self._other_type(str(msg.get("type", "")))
                done.append("another type")
            elif kind == 6:
                msg[rng.choice(["x", "__proto__", "constructor", "type ", "TYPE", "\u0000"])] = (
                    rng.choice(WRONG_TYPES + NASTY_STRINGS)
                )
                done.append("an unknown field")
            elif kind == 7:
                msg["req_id"] = rng.choice(["r" * 129, 5, None, ["r"], "\ud800", ""])
                done.append("a bad req_id")
            elif kind == 8 and name == "sdp":
                msg[name] = rng.choice(
                    [*self.known.offers, answer_for(rng.choice(self.known.offers))]
                )
                done.append("another sdp (an answer as offer, or video)")
            else:  # a valid field of another message where this one expects something else
                other = valid_message(rng, self._type(), self.known)
                other.pop("type")
                msg.update(other)
                done.append("fields of another message")
        return ", ".join(done)

    def _nasty_string(self, value: str) -> str:
        rng = self.rng
        kind = rng.randrange(4)
        if kind == 0:
            return rng.choice(NASTY_STRINGS)
        if kind == 1:
            return value + rng.choice(NASTY_STRINGS)
        if kind == 2:
            return rng.choice(["x", "\u202e", "1"]) * rng.choice([129, 257, 513, 3001, 70_000])
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(1, 40)))

    def _other_type(self, type_: str) -> str:
        return self.rng.choice(
            [
                type_.upper(),
                type_ + " ",
                type_[:-1],
                type_.replace(".", "_"),
                "call",
                "",
                "error",
                "session.ready",  # a server -> client type
                "call.incoming",
                "x" * 5000,
                "\u202ecall.create",
            ]
        )

    def _duplicate_key(self, msg: dict[str, Any]) -> Frame:
        """The same key twice (RFC 8259 section 4: names SHOULD be unique; Python keeps the
        last)."""
        rng = self.rng
        name = rng.choice(sorted(msg))
        extra = json.dumps({name: rng.choice([*WRONG_TYPES, msg[name]])})[1:-1]
        text = json.dumps(msg)
        return Frame(text[:-1] + ", " + extra + "}", f"{msg['type']} with {name} twice")

    def _mangle_frame(self, msg: dict[str, Any]) -> Frame:
        rng = self.rng
        text = json.dumps(msg)
        kind = rng.randrange(12)
        if kind == 0:
            return Frame(text[: rng.randrange(len(text))], "truncated JSON")
        if kind == 1:
            return Frame(text.encode(), "binary frame of valid JSON")
        if kind == 2:
            return Frame(
                bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))), "binary junk"
            )
        if kind == 3:
            depth = rng.choice([MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 200, 2000, 20_000])
            return Frame("[" * depth + "]" * depth, f"array nested {depth} deep")
        if kind == 4:
            depth = rng.choice([MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH, 3000])
            nested = '{"a": ' * (depth // 2) + "[" * (depth - depth // 2)
            nested += "]" * (depth - depth // 2) + "}" * (depth // 2)
            return Frame(f'{text[:-1]}, "x": {nested}}}', f"a field nested {depth} deep")
        if kind == 5:
            return Frame(
                rng.choice(["null", "[]", "1", '"call.create"', "{}", "", " ", "\ufeff{}", "NaN"]),
                "not an object",
            )
        if kind == 6:
            return Frame(text + rng.choice(["}", "]", ",", " x", "\u0000", "{}"]), "trailing junk")
        if kind == 7:
            size = rng.choice(
                [MAX_MESSAGE_BYTES - 50, MAX_MESSAGE_BYTES + 1, 2 * MAX_MESSAGE_BYTES]
            )
            return Frame(json.dumps({**msg, "pad": "p" * size}), f"{size}-byte padding")
        if kind == 8:
            return Frame(
                '{"type": "call.hangup", "call_id": ' + "9" * 5000 + "}", "a 5000-digit number"
            )
        if kind == 9:
            return Frame(text.replace('"', "'"), "single quotes")
        if kind == 10:
            i = rng.randrange(len(text))
            return Frame(
                text[:i] + chr(rng.randrange(0, 0x2FFF)) + text[i:], "a character inserted"
            )
        return Frame("[" + text + "]", "message in an array")
