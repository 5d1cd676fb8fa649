"""Server settings: one dataclass, filled by the CLI (``callbridge serve``) or by tests."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from callbridge.loops import EventLoop

__all__ = ["DEFAULT_DATA_DIR", "ServerConfig", "cores", "database_url_for"]

DEFAULT_DATA_DIR = Path("callbridge-data")


def database_url_for(data_dir: Path) -> str:
    """The embedded SQLite database of a data directory."""
    return f"sqlite+aiosqlite:///{(data_dir / 'callbridge.db').resolve()}"


def cores() -> int:
    """The cores this process may run on: its CPU affinity (``taskset`` or a container's
    cpuset narrow it; ``os.cpu_count()`` would count the machine's). The default number of
    media workers."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity (macOS)
        return os.cpu_count() or 1


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None  # default: SQLite in data_dir
    media_address: str | None = None  # default: `host` when it is a loopback address
    ring_timeout: float = 30.0  # seconds before an unanswered call ends with `no-answer`
    session_grace: float = 60.0  # seconds a session whose socket dropped waits to be resumed
    ice_servers: list[dict[str, Any]] = field(default_factory=list)  # STUN/TURN, none by default
    # Per-connection bounds of /ws (docs/security.md); defaults as ws.ConnectionLimits'.
    max_send_queue: int = 4096  # messages queued for a socket before it is closed (1008)
    max_send_queue_bytes: int = 8 * 1024 * 1024  # bytes queued for a socket, likewise
    login_timeout: float = 10.0  # seconds a new socket has to log in or resume
    # The other bounds of issue 10 (docs/security.md, "Limits").
    max_connections_per_source: int = 32  # open /ws sockets from one IP address
    max_body_bytes: int = 1024 * 1024  # a REST request body (JSON), checked before reading
    max_upload_bytes: int = 20 * 1024 * 1024  # an uploaded or fetched media file
    max_sdp_bytes: int = 32 * 1024  # one SDP offer or answer
    max_sdp_media: int = 8  # m-lines in one SDP
    max_candidates_per_leg: int = 32  # trickled ICE candidates accepted for one leg
    max_playbacks: int = 64  # concurrent playbacks (files, URLs, speech) in all
    max_playbacks_per_user: int = 4  # ... started by one user or API key's account
    max_fetches: int = 8  # concurrent media fetches from URLs in all
    max_fetches_per_user: int = 2  # ... by one user or account
    fetch_timeout: float = 30.0  # total seconds for one media fetch, connect to last byte
    login_failures_per_minute: int = 10  # failed logins (ws and REST) per source address
    # Outbound requests (media fetches, webhooks) refuse internal addresses unless listed:
    # host names, IP addresses or networks (CIDR), e.g. "127.0.0.1", "10.0.0.0/8".
    allow_fetch_from: list[str] = field(default_factory=list)
    allow_webhooks_to: list[str] = field(default_factory=list)
    drain_timeout: float = 60.0  # seconds calls may go on after SIGTERM / `callbridge drain`
    node_id: str | None = None  # this server among several sharing one database (hostname)
    spool_limit: int = 10_000  # records kept in memory while the database refuses writes
    # TLS for HTTPS/WSS (and SIP over TLS): PEM files; both or neither (issue 13, issue 11).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # SIP (issue 11): UDP+TCP on `host`; 0 turns SIP off. TLS needs tls_cert/tls_key.
    sip_port: int = 5060
    sip_tls_port: int | None = None
    sip_domain: str | None = None  # the SIP domain and digest realm (default: host)
    sip_t1: float = 0.5  # RFC 3261 T1 in seconds; T2 = 8*T1, T4 = 10*T1 (tests shorten it)
    rtp_ports: tuple[int, int] = (20000, 59999)  # UDP ports of plain RTP legs (SIP), inclusive
    # Media worker processes (issue 15, callbridge.media.workers): one per core by default;
    # 1 keeps the media plane in the server's own process; N > 1 runs N worker processes
    # behind the same interface.
    media_workers: int = field(default_factory=cores)
    # The event loop of the server and its media workers (callbridge.loops): uvloop if present.
    event_loop: EventLoop = "auto"
    log_format: Literal["text", "json"] = "text"  # every log line's format (callbridge.logs)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or database_url_for(self.data_dir)

    @property
    def effective_media_addresses(self) -> list[str] | None:
        """Addresses ICE may gather on; ``None`` lets aioice pick the machine's interfaces."""
        if self.media_address:
            return [self.media_address]
        try:
            if ipaddress.ip_address(self.host).is_loopback:
                return [self.host]
        except ValueError:
            pass  # a host name: let aioice choose
        return None
