"""The outbound-request policy (issue 10, defect 3: SSRF) and the media fetch pool (defect 4:
stalls): internal addresses refused after resolution, at connect and after every redirect;
error texts that do not tell what listens where; one total deadline; limits per user.

The HTTP servers are real, on 127.0.0.x. A "public" host is simulated by allowing one loopback
address (127.0.0.1) and redirecting to another (127.0.0.2). DNS answers that loopback cannot
produce (a public name resolving to 10.0.0.5, a rebinding name) are given by a fake resolver.
"""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import os
import re
import socket
import threading
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from callbridge.client import Phone, SilenceSource
from callbridge.config import ServerConfig
from callbridge.errors import MediaError, RemoteError
from callbridge.media.fetch import MediaFetcher, acting_for, configure_outbound
from callbridge.media.interface import AudioSpec
from callbridge.media.playback import open_audio
from callbridge.media.stream import PcmStream
from callbridge.outbound import OutboundPolicy, OutboundRefused, why_internal
from callbridge.store import Store
from callbridge.testing.server import free_port, serve
from callbridge.webhooks import RetryPolicy, WebhookOutbox
from conftest import TEST_OUTBOUND
from media_peers import sine
from parties import until_async

REFUSED_LOOPBACK = (
    "media URL refused: 127.0.0.1 is a loopback address; an operator can allow it with "
    "--allow-fetch-from"
)


# ------------------------------------------------------------------------- local HTTP servers
class Site:
    """An HTTP server on one loopback address: ``/ok.wav`` (a short WAV), ``/status/N``,
    ``/redirect?to=URL`` (302), ``/loop`` (a redirect to itself), ``/drip`` (a byte every
    0.5 s, for ever), POST anywhere (200). ``hits`` lists the paths asked for."""

    def __init__(self, host: str, wav: bytes) -> None:
        site = self
        self.hits: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # webhooks
                site.hits.append(self.path)
                self.rfile.read(int(self.headers.get("content-length", "0")))
                self._answer(200, b"ok")

            def do_GET(self) -> None:
                site.hits.append(self.path)
                path, _, query = self.path.partition("?")
                if path == "/ok.wav":
                    self._answer(200, wav, "audio/wav")
                elif path.startswith("/status/"):
                    self._answer(int(path.rsplit("/", 1)[1]), b"nope")
                elif path in ("/redirect", "/loop"):
                    self.send_response(302)
                    self.send_header("location", query.removeprefix("to=") or "/loop")
                    self.send_header("content-length", "0")
                    self.end_headers()
                elif path == "/drip":
                    self.send_response(200)
                    self.send_header("content-length", "100000")
                    self.end_headers()
                    try:
                        while True:
                            self.wfile.write(b"R")
                            self.wfile.flush()
                            time.sleep(0.5)
                    except OSError:
                        pass  # the client gave up
                else:
                    self._answer(404, b"no")

            def _answer(self, status: int, body: bytes, kind: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.base = f"http://{host}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def wav_bytes(path: Path, freq: float = 700.0, seconds: float = 0.5) -> bytes:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(sine(freq, seconds, 16000).tobytes())
    return path.read_bytes()


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[tuple[Site, Site]]:
    """Two sites: on 127.0.0.1 (the one tests allow) and on 127.0.0.2."""
    wav = wav_bytes(tmp_path / "ok.wav")
    one, two = Site("127.0.0.1", wav), Site("127.0.0.2", wav)
    yield one, two
    one.close()
    two.close()


@pytest.fixture
def strict() -> Iterator[None]:
    """This process's policies as in production (no allow-list), restored afterwards."""
    configure_outbound(ServerConfig())
    yield
    configure_outbound(TEST_OUTBOUND)


def only(*allowed: str, timeout: float = 5.0, **kw: Any) -> MediaFetcher:
    return MediaFetcher(OutboundPolicy.for_media(allowed), timeout=timeout, **kw)


async def fetch_error(fetcher: MediaFetcher, url: str, owner: str = "") -> str:
    with pytest.raises(MediaError) as err:
        await fetcher.fetch(url, owner)
    return err.value.message


# ------------------------------------------------------------------------------ the policy
@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.0.0.5", "a private address"),
        ("172.16.3.4", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fd12:3456::1", "a private address"),  # RFC 4193 unique local
        ("169.254.169.254", "a link-local address"),  # cloud metadata
        ("fe80::1", "a link-local address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("0.1.2.3", "an unspecified address"),
        ("::", "an unspecified address"),
        ("100.64.0.1", "a shared (carrier-grade NAT) address"),
        ("240.0.0.1", "a reserved address"),
        ("::ffff:127.0.0.1", "a loopback address (IPv4 127.0.0.1 in IPv6)"),
        ("::ffff:10.1.2.3", "a private address (IPv4 10.1.2.3 in IPv6)"),
        ("2002:7f00:1::", "a loopback address (IPv4 127.0.0.1 in IPv6)"),  # 6to4
        ("64:ff9b::a9fe:a9fe", "a link-local address (IPv4 169.254.169.254 in IPv6)"),  # NAT64
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_each_kind_of_internal_address_is_named_and_public_ones_pass(
    address: str, reason: str | None
) -> None:
    assert why_internal(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://127.0.0.1/a.wav", "is not an http:// or https:// URL"),
        ("file:///etc/passwd", "is not an http:// or https:// URL"),
        ("http:///a.wav", "names no host"),
        ("http://user:secret@example.org/a.wav", "a user name or password"),
    ],
)
async def test_urls_that_are_not_plain_http_are_refused_before_any_connection(
    url: str, says: str
) -> None:
    with pytest.raises(OutboundRefused, match=says):
        OutboundPolicy.for_media().check_url(url)


def test_an_allow_list_entry_that_is_no_address_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match=re.escape("--allow-fetch-from '10.0.0.0/33'")):
        OutboundPolicy.for_media(["10.0.0.0/33"])


class FakeDns:
    """getaddrinfo for names loopback cannot resolve: ``answers[name]`` is a list of address
    lists, one per lookup (the last repeats). IP literals resolve to themselves."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def getaddrinfo(self, host: Any, port: Any, *args: Any, **kw: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(name)
            addresses = [name]
        except ValueError:
            self.lookups.append(name)
            rounds = self.answers[name]
            addresses = rounds[min(len(self.lookups), len(rounds)) - 1]
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, int(port or 0)),
            )
            for a in addresses
        ]


@pytest.fixture
async def fake_dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    dns = FakeDns({})
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", dns.getaddrinfo)
    return dns


async def test_a_name_with_one_internal_address_among_public_ones_is_refused(
    fake_dns: FakeDns,
) -> None:
    fake_dns.answers["media.example.org"] = [["93.184.216.34", "10.0.0.5"]]
    with pytest.raises(OutboundRefused) as err:
        await OutboundPolicy.for_media().resolve("media.example.org", 80)
    assert err.value.message == (
        "media URL refused: media.example.org resolves to 10.0.0.5, a private address; an "
        "operator can allow it with --allow-fetch-from"
    )
    # A listed name is trusted whatever it resolves to; a listed network only for its own.
    listed = OutboundPolicy.for_media(["Media.Example.org."])
    assert await listed.resolve("media.example.org", 80) == [
        ipaddress.ip_address("93.184.216.34"),
        ipaddress.ip_address("10.0.0.5"),
    ]
    with pytest.raises(OutboundRefused, match=re.escape("10.0.0.5, a private address")):
        await OutboundPolicy.for_media(["10.0.0.0/31"]).resolve("media.example.org", 80)


async def test_dns_rebinding_cannot_switch_the_address_after_the_check(
    fake_dns: FakeDns, sites: tuple[Site, Site]
) -> None:
    """The name is resolved once per connection, and the socket goes to the address that was
    checked: a second answer (127.0.0.2, not allowed) is never asked for or used."""
    one, two = sites
    port = one.base.rsplit(":", 1)[1]
    two.close()
    fake_dns.answers["rebind.example"] = [["127.0.0.1"], ["127.0.0.2"]]
    got = await only("127.0.0.1").fetch(f"http://rebind.example:{port}/ok.wav")
    got.path.unlink()
    assert fake_dns.lookups == ["rebind.example"]
    assert one.hits == ["/ok.wav"]
    fake_dns.answers["evil.example"] = [["127.0.0.2"]]
    message = await fetch_error(only("127.0.0.1"), f"http://evil.example:{port}/ok.wav")
    assert message.startswith("media URL refused: evil.example resolves to 127.0.0.2, a loopback")


# ---------------------------------------------------------------------- fetches, for real
async def test_without_the_allow_list_media_and_webhooks_to_loopback_are_refused(
    strict: None, sites: tuple[Site, Site], tmp_path: Path
) -> None:
    one, _ = sites
    # A media fetch and a URL playback, through the process's fetcher.
    with pytest.raises(MediaError) as err:
        await open_audio(AudioSpec("url", f"{one.base}/ok.wav"))
    assert err.value.message == REFUSED_LOOPBACK
    # A webhook: the delivery fails with the reason, and nothing reaches the receiver.
    async with await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}") as store:
        policy = RetryPolicy(first_delay=0.05, max_attempts=1, timeout=1, poll_interval=5)
        async with await WebhookOutbox.create(store, policy=policy) as outbox:
            message = await outbox.enqueue("call.initiated", {"x": 1}, url=f"{one.base}/hook")

            async def failed() -> str | None:
                row = await store.get_webhook(message.message_id)
                return row.last_error if row is not None and row.status == "failed" else None

            error = await until_async(failed)
    assert error == (
        "OutboundRefused: webhook URL refused: 127.0.0.1 is a loopback address; an operator "
        "can allow it with --allow-webhooks-to"
    )
    assert one.hits == []


async def test_a_redirect_to_another_internal_address_or_to_ftp_is_refused(
    sites: tuple[Site, Site],
) -> None:
    one, two = sites
    fetcher = only("127.0.0.1")
    ok = await fetcher.fetch(f"{one.base}/redirect?to=/ok.wav")  # within the allowed host
    assert ok.path.read_bytes()[:4] == b"RIFF" and ok.content_type == "audio/wav"
    ok.path.unlink()
    message = await fetch_error(fetcher, f"{one.base}/redirect?to={two.base}/ok.wav")
    assert message == (
        "media URL refused: 127.0.0.2 is a loopback address; an operator can allow it with "
        "--allow-fetch-from"
    )
    assert two.hits == []  # refused before connecting
    message = await fetch_error(fetcher, f"{one.base}/redirect?to=ftp://127.0.0.1/a.wav")
    assert message == (
        "media URL refused: a redirect to ftp://127.0.0.1/a.wav is not an http:// or https:// URL"
    )
    assert "more than 5 redirects" in await fetch_error(fetcher, f"{one.base}/loop")


async def test_a_closed_port_and_error_statuses_give_the_same_error_text(
    sites: tuple[Site, Site],
) -> None:
    one, _ = sites
    fetcher = only("127.0.0.1")
    closed = f"http://127.0.0.1:{free_port()}"
    urls = (closed + "/x.wav", f"{one.base}/status/500", f"{one.base}/status/404")
    texts = {(await fetch_error(fetcher, url)).replace(url, "<url>") for url in urls}
    assert texts == {
        "could not fetch <url>: the file could not be read from it (give an http(s) "
        "URL that answers with the file within 5 s)"
    }


async def test_a_dripping_server_fails_at_the_total_deadline_and_delays_no_one_else(
    sites: tuple[Site, Site],
) -> None:
    """Defect 4: one byte every 0.5 s never trips a per-read timeout; the total one ends it.
    Meanwhile another user's speech is ready at once and the event loop never stalls."""
    one, _ = sites
    fetcher = only("127.0.0.1", timeout=2.0)
    lags: list[float] = []

    async def watch_the_loop() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            lags.append(loop.time() - before - 0.01)

    watcher = asyncio.create_task(watch_the_loop())
    started = time.monotonic()
    drip = asyncio.create_task(fetch_error(fetcher, f"{one.base}/drip", "user:mallory"))
    with acting_for("user:bob"):
        speech = await open_audio(AudioSpec("tts", "Your call is important to us."))
    spoke_after = time.monotonic() - started
    assert isinstance(speech, PcmStream)
    speech.close()
    assert not drip.done() and spoke_after < 1.5
    message = await asyncio.wait_for(drip, 5)
    took = time.monotonic() - started
    watcher.cancel()
    assert message.startswith(f"could not fetch {one.base}/drip:")
    assert 1.9 < took < 3.0, took
    assert max(lags) < 0.2, max(lags)
    assert fetcher.limit.running == 0


async def test_fetches_over_the_limits_are_refused_at_once_with_the_limit(
    sites: tuple[Site, Site], tmp_path: Path
) -> None:
    one, _ = sites
    spool = tmp_path / "spool"
    fetcher = only(
        "127.0.0.1", timeout=20.0, max_fetches=3, max_fetches_per_user=2, spool_dir=spool
    )
    drip = f"{one.base}/drip"
    slow = [asyncio.create_task(fetcher.fetch(drip, "user:mallory")) for _ in range(2)]
    await until_async(lambda: _true(fetcher.limit.of("user:mallory") == 2))
    assert await fetch_error(fetcher, drip, "user:mallory") == (
        "too many media fetches in progress: at most 2 per user; wait for one to end (an "
        "operator sets the limit with --max-fetches-per-user)"
    )
    got = await fetcher.fetch(f"{one.base}/ok.wav", "user:bob")  # another user goes ahead
    got.path.unlink()
    slow.append(asyncio.create_task(fetcher.fetch(drip, "user:bob")))
    await until_async(lambda: _true(fetcher.limit.running == 3))
    assert "at most 3 at once" in await fetch_error(fetcher, f"{one.base}/ok.wav", "user:carol")
    for task in slow:
        task.cancel()
    await asyncio.gather(*slow, return_exceptions=True)
    assert fetcher.limit.running == 0
    assert os.listdir(spool) == []  # the partial files are gone


async def _true(value: bool) -> bool:
    return value


async def test_a_file_over_the_size_cap_is_refused(sites: tuple[Site, Site]) -> None:
    one, _ = sites
    message = await fetch_error(only("127.0.0.1", max_bytes=1000), f"{one.base}/ok.wav")
    assert message == f"the file at {one.base}/ok.wav is larger than 1000 bytes"


# --------------------------------------------------------------------- a production server
@pytest.fixture
async def strict_server(tmp_path: Path) -> AsyncIterator[Any]:
    async with serve(
        tmp_path / "server", users=["alice"], allow_fetch_from=(), allow_webhooks_to=()
    ) as server:
        yield server


async def test_a_server_without_allow_lists_refuses_loopback_uploads_and_plays(
    strict_server: Any, sites: tuple[Site, Site]
) -> None:
    one, _ = sites
    key = await strict_server.api_key()
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {key}"}) as http:
        answer = await http.post(
            f"{strict_server.url}/v2/media",
            json={"media_url": f"{one.base}/ok.wav", "media_name": "prompt"},
        )
    assert answer.status_code == 422
    error = answer.json()["errors"][0]
    assert error["detail"] == REFUSED_LOOPBACK and error["source"] == {"pointer": "/media_url"}
    alice = strict_server.users["alice"]
    async with Phone(strict_server.ws_url, alice.token) as phone:
        conf = await phone.start_conference(source=SilenceSource())
        with pytest.raises(RemoteError) as err:
            await conf.play(f"{one.base}/ok.wav")
        assert err.value.code == "invalid_audio" and err.value.message == REFUSED_LOOPBACK
        await conf.end()
    assert one.hits == []
