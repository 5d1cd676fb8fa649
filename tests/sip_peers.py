"""Real SIP peers for tests: SIPp (Debian ``sip-tester``) and baresip (Debian ``baresip-core``).

Both run as subprocesses on 127.0.0.1 only, with ports from :func:`free_udp_port`, in a working
folder of the test's own (its ``tmp_path``), and every wait is bounded so a stuck peer never
hangs the suite: a peer still running at the end is killed, and what it wrote stays in its
folder for the failure message.

:class:`Sipp` runs one scenario (a file of ``tests/sip/`` or a built-in name)::

    uas = Sipp(tmp_path / "uas", "uas_echo.xml", rtp_echo=True, calls=1)
    uac = Sipp(tmp_path / "uac", "uac_auth_pcap.xml", remote=uas.address, calls=1)
    async with uas, uac:                 # started; killed on the way out if still running
        result = await uac.wait(20)      # SippResult: exit status, stats CSV, trace, errors
        await uas.wait(5)
    assert result.ok, result.explain()

:class:`Baresip` is a headless desk phone driven over its ``ctrl_tcp`` module (JSON in
netstrings on a loopback TCP port: commands in, responses and every UA/call event out); a tone
file is its microphone, and ``sndfile`` records what it sent (``*-enc.wav``) and heard
(``*-dec.wav``)::

    async with Baresip(tmp_path / "alice", user="alice", tone_hz=440) as phone:
        await phone.dial(f"sip:bob@{uas.address}")
        await phone.wait_event("CALL_ESTABLISHED", timeout=5)
        await phone.hangup()
    heard = phone.recordings()[0].dec     # after the phone stopped (files are complete)

Why ``ctrl_tcp`` and not ``stdio``: the ``stdio`` module wants a terminal (raw mode), and its
output is a human status line; ``ctrl_tcp`` works with no terminal at all, answers each command
(``ok``/``data``), and reports events as JSON (``CALL_RINGING``, ``CALL_ESTABLISHED``,
``CALL_CLOSED``, ``REGISTER_OK``, ``CALL_DTMF_START``, ...), so tests wait on events, not on
sleeps or scraped text. The commands are the menu's long names without the slash
(``dial``, ``accept``, ``hangup``, ``hold``, ``resume``, ``sndcode`` for a DTMF key,
``transfer``), as ``/help`` lists them during a call.

No network namespace is needed: both are bound to 127.0.0.1 (SIPp ``-i``/``-mi``; baresip
``-n 127.0.0.1``, ``sip_listen``, ``-4``) and send only to the addresses in the SIP and SDP of
the loopback peers they talk to; neither does STUN, and every URI here is an IP literal, so
there is no DNS lookup. (Chromium needs one because it gathers ICE candidates on every
interface; these peers gather nothing.)
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import itertools
import json
import math
import os
import shutil
import signal
import socket
import time
import wave
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np

from callbridge.testing import free_port
from callbridge.testing.server import Server, create_user

LOOPBACK = "127.0.0.1"
SCENARIOS = Path(__file__).with_name("sip")
PCAP_DIR = Path("/usr/share/sip-tester")  # g711a.pcap, dtmf_2833_*.pcap (Debian sip-tester)
BARESIP_MODULES = Path("/usr/lib/baresip/modules")
INSTALL_HINT = "apt-get install -y sip-tester baresip-core (./scripts/test does it)"


PASSWORD = "secret123"  # the SIP password of the users sip_user() makes
_user_numbers = itertools.count(1)


async def sip_user(
    server: Server, prefix: str, first_extension: int, sip: bool = False
) -> tuple[str, str, str]:
    """A fresh user of ``server``: (name, extension, token); with the SIP password
    :data:`PASSWORD` when ``sip``. Names are ``prefix`` + a number unique in this process."""
    n = next(_user_numbers)
    async with server.store() as store:
        user = await create_user(
            store, f"{prefix}{n}", str(first_extension + n), ttl=timedelta(hours=1)
        )
        if sip:
            await store.set_sip_password(user.name, PASSWORD, LOOPBACK)
    return user.name, user.extension, user.token


def missing_tools() -> list[str]:
    """The SIP peer programs that are not installed (empty when all are)."""
    return [tool for tool in ("sipp", "baresip") if shutil.which(tool) is None]


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_udp_port(span: int = 1) -> int:
    """A port free for both TCP (``free_port``) and UDP, with the ``span - 1`` ports after it
    free for UDP too (SIPp's echo uses PORT and PORT+2; baresip takes a range for RTP)."""
    for _ in range(200):
        port = free_port()
        if port + span < 65535 and all(_udp_free(port + i) for i in range(span)):
            return port
    raise RuntimeError("no free UDP port range on 127.0.0.1")


# ----------------------------------------------------------------------------------------- SIPp


@dataclass
class SippResult:
    """What a finished SIPp run left: exit status (0 all calls succeeded, 1 some failed, 97
    stopped by an internal command, 99 normal exit without calls, 255 fatal; -9 = killed at the
    harness's deadline), the last row of the ``-trace_stat`` CSV, and the traces."""

    name: str
    returncode: int
    stats: dict[str, str]
    messages: str
    errors: str
    stdout: str
    workdir: Path
    timed_out: bool = False

    def counter(self, name: str) -> int:
        """A cumulative counter of the stats CSV, e.g. ``SuccessfulCall`` or ``FailedCall``."""
        value = self.stats.get(f"{name}(C)", self.stats.get(name, "0"))
        return int(value or 0)

    @property
    def successful(self) -> int:
        return self.counter("SuccessfulCall")

    @property
    def failed(self) -> int:
        return self.counter("FailedCall")

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and self.failed == 0

    def explain(self) -> str:
        """A failure message: status, counters and the tails of the error and message logs."""
        return (
            f"sipp {self.name}: exit {self.returncode}"
            f"{' (killed at the deadline)' if self.timed_out else ''}, "
            f"successful {self.successful}, failed {self.failed}; files in {self.workdir}\n"
            f"--- errors ---\n{self.errors[-2000:]}\n--- messages (tail) ---\n"
            f"{self.messages[-3000:]}\n--- screen (tail) ---\n{self.stdout[-1500:]}"
        )


class Sipp:
    """One SIPp process running one scenario (see the module docstring).

    ``scenario``: a file name in ``tests/sip/``, a path, or a built-in (``uas``, ``uac``,
    ``uac_pcap``, ...). ``remote`` (``HOST:PORT``) makes it a caller. ``keys`` become ``-key``
    values for the scenario's ``[keyword]``s (``user``, ``domain``, ``password`` and
    ``refer_to`` always get a default). ``calls`` is ``-m`` (SIPp ends after that many),
    ``rate`` ``-r`` (calls per second), ``limit`` ``-l`` (simultaneous calls). ``rtp_echo``
    echoes RTP received on ``media_port`` (and +2). A ``pcap`` link to the Debian pcap folder is
    made in ``workdir`` so scenarios can ``play_pcap_audio="pcap/g711a.pcap"``.
    """

    def __init__(
        self,
        workdir: Path,
        scenario: str | Path,
        *,
        remote: str | None = None,
        port: int | None = None,
        service: str = "service",
        user: str = "sipp",
        password: str = "secret",
        domain: str = LOOPBACK,
        keys: Mapping[str, str] | None = None,
        calls: int = 1,
        rate: float | None = None,
        limit: int | None = None,
        rtp_echo: bool = False,
        media_port: int | None = None,
        transport: str = "u1",
        extra: Sequence[str] = (),
        deadline: float = 60.0,
    ) -> None:
        self.workdir = workdir
        self.scenario = scenario
        self.remote = remote
        self.port = port or free_udp_port()
        self.media_port = media_port or free_udp_port(span=3)
        self.calls = calls
        self.deadline = deadline
        self.name = Path(str(scenario)).stem
        all_keys = {"user": user, "domain": domain, "password": password, "refer_to": "refer"}
        all_keys.update(keys or {})
        self.argv = self._argv(
            service, user, password, all_keys, rate, limit, rtp_echo, transport, extra
        )
        self._proc: asyncio.subprocess.Process | None = None
        self._started = 0.0
        self.result: SippResult | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def _argv(
        self,
        service: str,
        user: str,
        password: str,
        keys: Mapping[str, str],
        rate: float | None,
        limit: int | None,
        rtp_echo: bool,
        transport: str,
        extra: Sequence[str],
    ) -> list[str]:
        scenario = str(self.scenario)
        if scenario.endswith(".xml"):
            path = Path(scenario) if "/" in scenario else SCENARIOS / scenario
            argv = ["sipp", "-sf", str(path.resolve())]
        else:
            argv = ["sipp", "-sn", scenario]
        argv += ["-i", LOOPBACK, "-p", str(self.port), "-mi", LOOPBACK]
        argv += ["-mp", str(self.media_port), "-t", transport, "-s", service]
        argv += ["-au", user, "-ap", password, "-m", str(self.calls)]
        for key, value in keys.items():
            argv += ["-key", key, value]
        if rate is not None:
            argv += ["-r", f"{rate:g}"]
        if limit is not None:
            argv += ["-l", str(limit)]
        if rtp_echo:
            argv.append("-rtp_echo")
        # -nostdin: no keyboard; -trace_*: files in the working folder; -timeout_error makes
        # SIPp's own global timeout a failure (the harness's deadline is the backstop).
        argv += ["-nostdin", "-trace_msg", "-trace_err", "-trace_stat", "-fd", "1"]
        argv += ["-message_file", "messages.log", "-error_file", "errors.log"]
        argv += ["-stf", "stats.csv", "-timeout", f"{math.ceil(self.deadline)}s"]
        argv.append("-timeout_error")
        argv += list(extra)
        if self.remote:
            argv.append(self.remote)
        return argv

    async def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        link = self.workdir / "pcap"
        if not link.exists():
            link.symlink_to(PCAP_DIR)
        self._started = time.monotonic()
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=self.workdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=(self.workdir / "screen.txt").open("wb"),
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() takes all of it
        )
        await self._bound()
        return self

    async def _bound(self, limit: float = 5.0) -> None:
        """Return once SIPp holds its SIP port (so a caller started next finds it), or it
        exited, or ``limit`` seconds passed (then the run's result says what went wrong)."""
        assert self._proc is not None
        end = time.monotonic() + limit
        while time.monotonic() < end and self._proc.returncode is None:
            if not _udp_free(self.port):
                return
            await asyncio.sleep(0.02)

    async def wait(self, limit: float | None = None) -> SippResult:
        """Wait for SIPp to end (killing it after ``limit`` seconds, default the deadline)."""
        assert self._proc is not None, "start() first"
        left = self.deadline + 5 - (time.monotonic() - self._started)
        timed_out = False
        try:
            await asyncio.wait_for(self._proc.wait(), limit if limit is not None else left)
        except TimeoutError:
            timed_out = True
            self.kill()
            await self._proc.wait()
        self.result = self._collect(self._proc.returncode or 0, timed_out)
        return self.result

    def kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    def _collect(self, returncode: int, timed_out: bool) -> SippResult:
        def read(name: str) -> str:
            path = self.workdir / name
            return path.read_text(errors="replace") if path.exists() else ""

        stats: dict[str, str] = {}
        text = read("stats.csv")
        if text:
            rows = list(csv.DictReader(text.splitlines(), delimiter=";"))
            if rows:
                stats = {k: (v or "") for k, v in rows[-1].items() if k}
        return SippResult(
            self.name,
            returncode,
            stats,
            read("messages.log"),
            read("errors.log"),
            read("screen.txt"),
            self.workdir,
            timed_out,
        )

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self.kill()
            await self._proc.wait()
            if self.result is None:
                self.result = self._collect(self._proc.returncode or 0, True)


async def run_pair(
    workdir: Path, uas: str, uac: str, *, deadline: float = 30.0, **uac_options: Any
) -> tuple[SippResult, SippResult]:
    """Run a SIPp callee scenario and a SIPp caller scenario against each other, one call,
    the callee with RTP echo; returns (uas result, uac result)."""
    options: dict[str, Any] = {"service": "bob", "user": "alice", "deadline": deadline}
    options.update(uac_options)
    callee = Sipp(
        workdir / "uas",
        uas,
        rtp_echo=True,
        deadline=deadline,
        service=options["service"],
        user=options["user"],
        password=options.get("password", "secret"),
    )
    caller = Sipp(workdir / "uac", uac, remote=callee.address, **options)
    async with callee:
        async with caller:
            uac_result = await caller.wait()
        uas_result = await callee.wait(5)
    return uas_result, uac_result


# -------------------------------------------------------------------------------------- baresip


def write_tone(path: Path, freq: float, seconds: float, rate: int = 8000) -> Path:
    """A mono 16-bit WAV of a sine at ``freq`` Hz (peak 0.3 of full scale): baresip's
    microphone. A call ends when its ``aufile`` source runs out, so make it longer than the
    call."""
    t = np.arange(int(rate * seconds)) / rate
    pcm = (0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


@dataclass(frozen=True)
class Recording:
    """One call's audio as baresip's ``sndfile`` wrote it: ``enc`` what it sent, ``dec`` what
    it heard."""

    enc: Path
    dec: Path


def read_wav(path: Path) -> tuple[np.ndarray[Any, np.dtype[np.int16]], int]:
    """(int16 samples of the first channel, sample rate) of a WAV file."""
    with wave.open(str(path), "rb") as w:
        rate, channels = w.getframerate(), w.getnchannels()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm[::channels].astype(np.int16), rate


class Baresip:
    """A headless baresip 1.0 phone on 127.0.0.1, driven over ``ctrl_tcp`` (module docstring).

    ``account`` extras: ``registrar`` (``HOST:PORT``; REGISTER every ``regint`` seconds with
    ``password``), ``answer`` (``"auto"`` or ``"manual"``), ``codecs`` (``audio_codecs``).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        user: str = "alice",
        domain: str = LOOPBACK,
        password: str | None = None,
        registrar: str | None = None,
        regint: int = 0,
        answer: str = "auto",
        codecs: str = "PCMU",
        tone_hz: float = 440.0,
        seconds: float = 30.0,
        sip_trace: bool = False,
    ) -> None:
        self.workdir = workdir
        self.user = user
        self.sip_trace = sip_trace  # `-s`: every SIP message into baresip.log, to read headers
        self.seconds = seconds
        self.port = free_udp_port()
        self.ctrl_port = free_port()
        self.rtp_base = free_udp_port(span=10)
        self.events: list[dict[str, Any]] = []
        self._event_added = asyncio.Event()
        self._responses: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        params = [f"answermode={answer}", f"audio_codecs={codecs}", f"regint={regint}"]
        if password is not None:
            params.insert(0, f"auth_pass={password}")
        if registrar is not None:
            params.append(f'outbound="sip:{registrar};transport=udp"')
        self.account = f"<sip:{user}@{domain}>;" + ";".join(params)
        self.tone_hz = tone_hz

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{self.address}"

    def _write_config(self) -> None:
        conf = self.workdir / "conf"
        rec = self.workdir / "rec"
        conf.mkdir(parents=True, exist_ok=True)
        rec.mkdir(exist_ok=True)
        tone = write_tone(self.workdir / "tone.wav", self.tone_hz, self.seconds + 5)
        lines = [
            "poll_method epoll",
            f"sip_listen {self.address}",
            f"rtp_ports {self.rtp_base}-{self.rtp_base + 9}",
            f"module_path {BARESIP_MODULES}",
            *(f"module {m}.so" for m in ("g711", "aufile", "aubridge", "sndfile", "ctrl_tcp")),
            "module_tmp uuid.so",
            "module_tmp account.so",
            "module_app menu.so",
            f"audio_source aufile,{tone}",
            "audio_player aubridge,nil",  # nothing plays; sndfile records what is heard
            "audio_alert aubridge,nil",
            f"snd_path {rec}",
            f"ctrl_tcp_listen {LOOPBACK}:{self.ctrl_port}",
        ]
        (conf / "config").write_text("\n".join(lines) + "\n")
        (conf / "accounts").write_text(self.account + "\n")

    async def start(self) -> Baresip:
        # Its ports are probed free, then bound by baresip (SIP UDP/TCP on the port, TLS on
        # the next): another process can take one in between (the suite runs in two). Then
        # it exits with "Address already in use", and starts again on new ports.
        for attempt in range(3):
            try:
                return await self._start()
            except RuntimeError as exc:
                if attempt == 2 or "Address already in use" not in str(exc):
                    raise
                if self._proc is not None and self._proc.returncode is None:
                    self._proc.kill()
                    await self._proc.wait()
                self.port, self.ctrl_port = free_udp_port(), free_port()
                self.rtp_base = free_udp_port(span=10)
        raise AssertionError("unreachable")

    async def _start(self) -> Baresip:
        self._write_config()
        self._proc = await asyncio.create_subprocess_exec(
            "baresip",
            *(["-s"] if self.sip_trace else []),
            "-4",
            "-n",
            LOOPBACK,
            "-f",
            str(self.workdir / "conf"),
            "-t",
            str(int(self.seconds)),
            cwd=self.workdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=(self.workdir / "baresip.log").open("wb"),
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        end = time.monotonic() + 5
        while True:  # its control port opens once its modules are loaded
            try:
                reader, self._writer = await asyncio.open_connection(LOOPBACK, self.ctrl_port)
                break
            except OSError:
                if time.monotonic() > end or self._proc.returncode is not None:
                    raise RuntimeError(f"baresip did not start: {self.log()[-1500:]}") from None
                await asyncio.sleep(0.05)
        self._reader_task = asyncio.create_task(self._read(reader))
        return self

    async def _read(self, reader: asyncio.StreamReader) -> None:
        """Netstrings ``LEN:{json},`` from ctrl_tcp: responses to commands, and events."""
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                size = int((await reader.readuntil(b":"))[:-1])
                message = json.loads(await reader.readexactly(size))
                await reader.readexactly(1)  # the trailing comma
                if message.get("event"):
                    self.events.append(message)
                    self._event_added.set()
                else:
                    self._responses.put_nowait(message)

    async def command(self, name: str, params: str = "", limit: float = 5.0) -> str:
        """Run a menu command (``dial``, ``accept``, ``hangup``, ``hold``, ``resume``,
        ``sndcode``, ``transfer``, ...); returns its output, raises when it failed."""
        assert self._writer is not None, "start() first"
        body = json.dumps({"command": name, "params": params, "token": name}).encode()
        self._writer.write(str(len(body)).encode() + b":" + body + b",")
        await self._writer.drain()
        response = await asyncio.wait_for(self._responses.get(), limit)
        if not response.get("ok"):
            raise RuntimeError(f"baresip {name} {params!r}: {response.get('data')}")
        return str(response.get("data", ""))

    async def dial(self, uri: str) -> None:
        await self.command("dial", uri)

    async def hangup(self) -> None:
        await self.command("hangup")

    async def send_dtmf(self, digits: str) -> None:
        """Each digit as RFC 4733 events (baresip's ``sndcode``)."""
        for digit in digits:
            await self.command("sndcode", digit)

    async def wait_event(self, kind: str, limit: float = 10.0, after: int = 0) -> dict[str, Any]:
        """The first event of type ``kind`` (``CALL_ESTABLISHED``, ``CALL_CLOSED``,
        ``REGISTER_OK``, ``CALL_INCOMING``, ``CALL_DTMF_START``, ...) from index ``after``."""
        end = time.monotonic() + limit
        while True:
            for event in self.events[after:]:
                if event.get("type") == kind:
                    return event
            left = end - time.monotonic()
            if left <= 0:
                seen = [e.get("type") for e in self.events]
                raise TimeoutError(f"baresip: no {kind} within {limit} s; events {seen}")
            self._event_added.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event_added.wait(), left)

    def event_types(self) -> list[str]:
        return [str(e.get("type")) for e in self.events]

    async def stop(self) -> None:
        """Quit (``quit`` command, then SIGTERM, then SIGKILL) and close the control link."""
        if self._proc is None:
            return
        if self._proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.command("quit", limit=1.0)
            try:
                await asyncio.wait_for(self._proc.wait(), 3)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                await self._proc.wait()
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task

    def recordings(self) -> list[Recording]:
        """The calls' recordings, oldest first (complete once the phone stopped)."""
        rec = self.workdir / "rec"
        decs = sorted(rec.glob("*-dec.wav"))
        return [Recording(d.with_name(d.name.replace("-dec.wav", "-enc.wav")), d) for d in decs]

    def log(self) -> str:
        path = self.workdir / "baresip.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def __aenter__(self) -> Baresip:
        return await self.start()

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
