"""``callbridge serve``: its options (one per ``ServerConfig`` setting) and the command.

The options come in groups (listen, media, /ws bounds, REST and SDP bounds, media plays and
fetches, outbound requests, durability); every bound and its default is described in
docs/security.md, "Limits". Each value is checked here, before anything listens, so a bad
one is a one-line usage error (exit code 2) naming the option and what it takes.

``callbridge serve`` and every other command run with umask 077: the data directory, the
database (which holds the webhook signing key), recordings, media and logs are the
operator's alone (``store/engine.py`` also tightens an existing directory).
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from pathlib import Path
from typing import Any

from callbridge import logs, loops, settings
from callbridge.cli import (
    EXIT_OK,
    LOG_LEVELS,
    _command,
    _ice_url,
    _ip_address,
    _port,
    _positive_int,
    _seconds,
    _with_store,
    _ws_url,
)
from callbridge.config import ServerConfig, cores
from callbridge.logs import LOG_FORMATS
from callbridge.loops import EVENT_LOOPS

__all__ = ["add_serve_command", "parse_bytes", "parse_network"]

_BYTES = re.compile(r"([0-9]+)\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib)", re.ASCII | re.IGNORECASE)
# Binary multiples: "1M" is what `ls -lh` and most operators mean by a megabyte of file.
_BYTE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
# RFC 1123 section 2.1 host names: labels of letters, digits and inner hyphens.
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.ASCII | re.IGNORECASE)
_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)


# argument types ---------------------------------------------------------------------------
def parse_bytes(text: str) -> int:
    """A size of 1 byte or more: ``65536``, ``64k``, ``1M``, ``2GiB`` (binary multiples)."""
    match = _BYTES.fullmatch(text.strip())
    value = int(match[1]) * _BYTE_UNITS[match[2][:1].lower()] if match else 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: use bytes, 1 or more, or e.g. 64k, 1M, 20M, 1G"
        )
    return value


def parse_network(text: str) -> str:
    """An allow-list entry: an IP address, a network in CIDR form, or a host name."""
    entry = text.strip()
    try:  # an address stays an address; a network is written in its canonical form
        if "/" in entry:
            return str(ipaddress.ip_network(entry, strict=False))
        return str(ipaddress.ip_address(entry))
    except ValueError:
        pass
    name = entry.lower().rstrip(".")
    labels = name.split(".")
    if (
        name
        and len(name) <= 253
        and all(_HOST_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()  # "10.0.0.300" is a typo, not a host name
    ):
        return name
    raise argparse.ArgumentTypeError(
        f"invalid address {text!r}: use a host name (media.example.org), an IP address "
        "(10.0.0.5) or a network (10.0.0.0/8, fd00::/8)"
    )


def _non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use seconds, 0 or more")
    return value


def _node_id(text: str) -> str:
    if _NODE_ID.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(
            f"invalid node id {text!r}: 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, e.g. node-1"
        )
    return text


# parser -----------------------------------------------------------------------------------
def add_serve_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    database: argparse.ArgumentParser,
) -> None:
    """Add ``serve`` to the ``callbridge`` subcommands (``database``: the shared options)."""
    defaults = ServerConfig()
    serve = commands.add_parser(
        "serve", parents=[database], help="run the server", description="Run the server."
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    serve.add_argument("--port", type=_port, default=8080, help="port to listen on (%(default)s)")
    serve.add_argument(
        "--node-id",
        type=_node_id,
        metavar="NAME",
        help="this server's name among several sharing one database, kept with the calls "
        "it carries (default: the host name)",
    )
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    serve.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=defaults.log_format,
        help="text lines, or one JSON object per line (ts, level, logger, msg and fields such "
        "as call_id), uvicorn's lines included (%(default)s; docs/operations.md, Logs)",
    )
    serve.add_argument(
        "--debug-libraries",
        action="store_true",
        help="let libraries (aiosqlite, aioice, aiortc, httpx, websockets, SQLAlchemy, ...) log "
        "below WARNING too, at --log-level",
    )
    _add_media_options(serve)
    _add_sip_options(serve)
    _add_ws_bounds(serve, defaults)
    _add_request_bounds(serve, defaults)
    _add_media_bounds(serve, defaults)
    _add_outbound_options(serve)
    _add_durability_options(serve, defaults)
    serve.set_defaults(run=_serve, check=_check_serve_options)
    # --config, and every option above (and any added later) from the TOML file and the
    # CALLBRIDGE_* environment: command line > environment > file > default (settings.py).
    settings.install(serve)


def _add_media_options(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("calls and media")
    group.add_argument(
        "--media-address",
        type=_ip_address,
        metavar="IP",
        help="address for media (ICE); default: --host if it is a loopback address, "
        "else every interface",
    )
    group.add_argument(
        "--ring-timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="seconds before an unanswered call ends with no-answer (%(default)s)",
    )
    group.add_argument(
        "--rtp-ports",
        type=_rtp_ports,
        default=ServerConfig.rtp_ports,
        metavar="LOW-HIGH",
        help="UDP ports for SIP phones' RTP and RTCP, e.g. 10000-20000 (default: 20000-59999; "
        "each call leg takes an even port and the next; WebRTC media uses ephemeral ports)",
    )
    group.add_argument(
        "--media-workers",
        type=_positive_int,
        default=cores(),
        metavar="N",
        help="media worker processes (default: one per core this process may use, "
        "%(default)s here; N > 1 spreads calls over N processes; 1 keeps the media in the "
        "server's own process, and is what a 1-core machine gets; docs/operations.md)",
    )
    group.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default=ServerConfig.event_loop,
        help="the event loop of the server and its media workers: uvloop (about 20 %% less CPU "
        "per relayed packet), asyncio's own, or %(default)s (uvloop when installed)",
    )
    group.add_argument(
        "--session-grace",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="seconds a session whose WebSocket dropped keeps its calls, waiting for "
        "session.resume (%(default)s)",
    )
    group.add_argument(
        "--stun",
        type=_ice_url("stun", "stuns"),
        action="append",
        default=[],
        metavar="URL",
        help="STUN server for ICE, e.g. stun:stun.example.org:3478 (repeatable; default: none)",
    )
    group.add_argument(
        "--turn",
        type=_ice_url("turn", "turns"),
        action="append",
        default=[],
        metavar="URL",
        help="TURN server for ICE, e.g. turn:turn.example.org:3478?transport=udp "
        "(repeatable; all use --turn-username and --turn-password)",
    )
    group.add_argument("--turn-username", metavar="NAME")
    group.add_argument("--turn-password", metavar="PASSWORD")


def _rtp_ports(text: str) -> tuple[int, int]:
    """``LOW-HIGH``: a UDP port range with room for at least one RTP/RTCP pair."""
    low, sep, high = text.strip().partition("-")
    try:
        pair = (int(low), int(high)) if sep else (-1, -1)
    except ValueError:
        pair = (-1, -1)
    if not (1024 <= pair[0] < pair[1] <= 65535) or pair[1] - pair[0] + 1 < 2 + pair[0] % 2:
        raise argparse.ArgumentTypeError(
            f"invalid RTP port range {text!r}: use LOW-HIGH with 1024 <= LOW < HIGH <= 65535 "
            "and room for an even port and the next, e.g. 10000-20000"
        )
    return pair


def _sip_port(text: str) -> int:
    """A SIP port: 1-65535, or 0 for no SIP."""
    return 0 if text.strip() == "0" else _port(text)


def _sip_t1(text: str) -> float:
    """RFC 3261's T1 (§17.1.1.1): 0.05-5 s; below that retransmissions flood, above it every
    transaction timeout (64*T1) runs for minutes."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.05 <= value <= 5.0:
        raise argparse.ArgumentTypeError(f"invalid SIP T1 {text!r}: use seconds, 0.05 to 5")
    return value


def _sip_domain(text: str) -> str:
    try:  # an address is a valid SIP domain too (sip:alice@192.0.2.10)
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        pass
    name = text.strip().lower().rstrip(".")
    labels = name.split(".")
    if name and len(name) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels):
        return name
    raise argparse.ArgumentTypeError(
        f"invalid SIP domain {text!r}: use a host name (sip.example.org) or an IP address"
    )


def _add_sip_options(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group(
        "SIP and TLS", "SIP phones and trunks (docs/sip.md); TLS for HTTPS/WSS and SIP over TLS."
    )
    group.add_argument(
        "--sip-port",
        type=_sip_port,
        default=ServerConfig.sip_port,
        metavar="PORT",
        help="SIP over UDP and TCP on --host (%(default)s; 0 turns SIP off). SIP over "
        "WebSocket is at /sip on --port whenever SIP is on",
    )
    group.add_argument(
        "--sip-tls-port",
        type=_port,
        metavar="PORT",
        help="SIP over TLS on --host, e.g. 5061 (needs --tls-cert and --tls-key; default: off)",
    )
    group.add_argument(
        "--sip-domain",
        type=_sip_domain,
        metavar="DOMAIN",
        help="the SIP domain users register in, and the digest realm (default: --host)",
    )
    group.add_argument(
        "--sip-t1",
        type=_sip_t1,
        default=ServerConfig.sip_t1,
        metavar="SECONDS",
        help="RFC 3261's T1, the round-trip estimate all SIP retransmissions and timeouts "
        "scale with (%(default)s; T2 = 8*T1, T4 = 10*T1, timeouts 64*T1). Only tests and "
        "unusual networks change it",
    )
    group.add_argument(
        "--tls-cert",
        type=Path,
        metavar="PEM",
        help="certificate chain (PEM) for HTTPS/WSS on --port and for --sip-tls-port "
        "(needs --tls-key)",
    )
    group.add_argument(
        "--tls-key", type=Path, metavar="PEM", help="private key (PEM) of --tls-cert"
    )


def _check_tls_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together: give both or neither")
    if args.sip_tls_port is not None and args.tls_cert is None:
        parser.error("--sip-tls-port needs --tls-cert and --tls-key")
    if args.sip_tls_port is not None and args.sip_tls_port == args.sip_port:
        parser.error(f"--sip-tls-port and --sip-port are both {args.sip_port}: use two ports")
    if args.tls_cert is None:
        return
    import ssl  # only when TLS is asked for

    try:  # a bad file is a usage error now, not a traceback once the server listens
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            args.tls_cert, args.tls_key
        )
    except (OSError, ssl.SSLError) as exc:
        parser.error(f"--tls-cert/--tls-key: cannot load {args.tls_cert}, {args.tls_key}: {exc}")


def _add_ws_bounds(serve: argparse.ArgumentParser, defaults: ServerConfig) -> None:
    group = serve.add_argument_group("WebSocket (/ws) bounds")
    group.add_argument(
        "--max-send-queue",
        type=_positive_int,
        default=defaults.max_send_queue,
        metavar="N",
        help="messages queued for one WebSocket before the server closes it (1008, "
        "'send queue full'): a client that does not read (%(default)s)",
    )
    group.add_argument(
        "--max-send-queue-bytes",
        type=parse_bytes,
        default=defaults.max_send_queue_bytes,
        metavar="BYTES",
        help="bytes queued for one WebSocket before the server closes it, likewise "
        "(%(default)s = 8 MiB)",
    )
    group.add_argument(
        "--login-timeout",
        type=_seconds,
        default=defaults.login_timeout,
        metavar="SECONDS",
        help="seconds a new WebSocket has to send session.login or session.resume before "
        "the server closes it (1008) (%(default)s)",
    )
    group.add_argument(
        "--max-connections-per-source",
        type=_positive_int,
        default=defaults.max_connections_per_source,
        metavar="N",
        help="open WebSockets from one IP address; the next is closed with 1008 "
        "(%(default)s). Behind a reverse proxy every client has the proxy's address: "
        "raise it there, or limit at the proxy",
    )
    group.add_argument(
        "--login-failures-per-minute",
        type=_positive_int,
        default=defaults.login_failures_per_minute,
        metavar="N",
        help="failed logins (bad /ws token, REST 401) from one IP address per minute; "
        "beyond it /ws logins are refused and REST answers 429 (%(default)s)",
    )


def _add_request_bounds(serve: argparse.ArgumentParser, defaults: ServerConfig) -> None:
    group = serve.add_argument_group("REST and SDP bounds")
    group.add_argument(
        "--max-body-bytes",
        type=parse_bytes,
        default=defaults.max_body_bytes,
        metavar="BYTES",
        help="a REST request body (JSON), refused with 413 before it is read "
        "(%(default)s = 1 MiB; 64k, 2M, … work too)",
    )
    group.add_argument(
        "--max-upload-bytes",
        type=parse_bytes,
        default=defaults.max_upload_bytes,
        metavar="BYTES",
        help="an uploaded (POST /v2/media) or fetched media file (%(default)s = 20 MiB)",
    )
    group.add_argument(
        "--max-sdp-bytes",
        type=parse_bytes,
        default=defaults.max_sdp_bytes,
        metavar="BYTES",
        help="one SDP offer or answer, refused before it is parsed (%(default)s = 32 KiB)",
    )
    group.add_argument(
        "--max-sdp-media",
        type=_positive_int,
        default=defaults.max_sdp_media,
        metavar="N",
        help="m= lines (media sections) in one SDP (%(default)s)",
    )
    group.add_argument(
        "--max-candidates-per-leg",
        type=_positive_int,
        default=defaults.max_candidates_per_leg,
        metavar="N",
        help="trickled ICE candidates accepted for one call leg; more are refused and "
        "the call goes on with those it has (%(default)s)",
    )


def _add_media_bounds(serve: argparse.ArgumentParser, defaults: ServerConfig) -> None:
    group = serve.add_argument_group("plays and media fetches")
    group.add_argument(
        "--max-playbacks",
        type=_positive_int,
        default=defaults.max_playbacks,
        metavar="N",
        help="concurrent playbacks (files, URLs, speech) in all (%(default)s)",
    )
    group.add_argument(
        "--max-playbacks-per-user",
        type=_positive_int,
        default=defaults.max_playbacks_per_user,
        metavar="N",
        help="concurrent playbacks started by one user or account (%(default)s)",
    )
    group.add_argument(
        "--max-fetches",
        type=_positive_int,
        default=defaults.max_fetches,
        metavar="N",
        help="concurrent media fetches from URLs in all (%(default)s)",
    )
    group.add_argument(
        "--max-fetches-per-user",
        type=_positive_int,
        default=defaults.max_fetches_per_user,
        metavar="N",
        help="concurrent media fetches by one user or account (%(default)s)",
    )
    group.add_argument(
        "--fetch-timeout",
        type=_seconds,
        default=defaults.fetch_timeout,
        metavar="SECONDS",
        help="total seconds for one media fetch, from connecting to the last byte (%(default)s)",
    )


def _add_outbound_options(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group(
        "outbound requests",
        "Media fetches and webhooks refuse loopback, private, link-local, multicast and "
        "unspecified addresses (after DNS and after every redirect) unless listed here.",
    )
    group.add_argument(
        "--allow-fetch-from",
        type=parse_network,
        action="append",
        default=[],
        metavar="HOST|IP|CIDR",
        help="let media fetches reach this host, address or network, e.g. 10.0.0.0/8 (repeatable)",
    )
    group.add_argument(
        "--allow-webhooks-to",
        type=parse_network,
        action="append",
        default=[],
        metavar="HOST|IP|CIDR",
        help="let webhooks reach this host, address or network, e.g. hooks.internal (repeatable)",
    )


def _add_durability_options(serve: argparse.ArgumentParser, defaults: ServerConfig) -> None:
    group = serve.add_argument_group("shutdown and durability")
    group.add_argument(
        "--drain-timeout",
        type=_non_negative_seconds,
        default=defaults.drain_timeout,
        metavar="SECONDS",
        help="seconds calls may go on after SIGTERM or `callbridge drain` before they are "
        "ended (%(default)s; 0 ends them at once)",
    )
    group.add_argument(
        "--spool-limit",
        type=_positive_int,
        default=defaults.spool_limit,
        metavar="N",
        help="records (CDRs, webhooks) kept in memory and retried while the database "
        "refuses writes (%(default)s)",
    )


def _check_serve_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks across options, after parsing (argparse has no way to say them)."""
    _check_tls_options(parser, args)
    if args.turn and (args.turn_username is None or args.turn_password is None):
        parser.error("--turn needs --turn-username and --turn-password")
    if (args.turn_username is not None or args.turn_password is not None) and not args.turn:
        parser.error("--turn-username and --turn-password need --turn URL")
    if args.max_playbacks_per_user > args.max_playbacks:
        parser.error(
            f"--max-playbacks-per-user {args.max_playbacks_per_user} is more than "
            f"--max-playbacks {args.max_playbacks}: raise --max-playbacks or lower the other"
        )
    if args.max_fetches_per_user > args.max_fetches:
        parser.error(
            f"--max-fetches-per-user {args.max_fetches_per_user} is more than "
            f"--max-fetches {args.max_fetches}: raise --max-fetches or lower the other"
        )


# the command ------------------------------------------------------------------------------
def server_config(args: argparse.Namespace) -> ServerConfig:
    """The ``ServerConfig`` the parsed ``serve`` options describe."""
    return ServerConfig(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        database_url=args.database_url,
        media_address=args.media_address,
        ring_timeout=args.ring_timeout,
        session_grace=args.session_grace,
        ice_servers=_ice_servers(args),
        max_send_queue=args.max_send_queue,
        max_send_queue_bytes=args.max_send_queue_bytes,
        login_timeout=args.login_timeout,
        max_connections_per_source=args.max_connections_per_source,
        max_body_bytes=args.max_body_bytes,
        max_upload_bytes=args.max_upload_bytes,
        max_sdp_bytes=args.max_sdp_bytes,
        max_sdp_media=args.max_sdp_media,
        max_candidates_per_leg=args.max_candidates_per_leg,
        max_playbacks=args.max_playbacks,
        max_playbacks_per_user=args.max_playbacks_per_user,
        max_fetches=args.max_fetches,
        max_fetches_per_user=args.max_fetches_per_user,
        fetch_timeout=args.fetch_timeout,
        login_failures_per_minute=args.login_failures_per_minute,
        allow_fetch_from=list(args.allow_fetch_from),
        allow_webhooks_to=list(args.allow_webhooks_to),
        drain_timeout=args.drain_timeout,
        node_id=args.node_id,
        spool_limit=args.spool_limit,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        sip_port=args.sip_port,
        sip_tls_port=args.sip_tls_port,
        sip_domain=args.sip_domain,
        sip_t1=args.sip_t1,
        rtp_ports=args.rtp_ports,
        media_workers=args.media_workers,
        event_loop=args.event_loop,
        log_format=args.log_format,
    )


def _serve(args: argparse.Namespace) -> int:
    config = server_config(args)
    # One format for every line; libraries (alembic, aiosqlite, ...) at WARNING unless asked.
    logs.configure(args.log_level, config.log_format, args.debug_libraries)

    # Opening the store first migrates it, and reports an unusable database as one line
    # before anything listens.
    if not _with_store(args, lambda store: store.list_users()):
        print(_newcomer_hint(args), file=sys.stderr)

    # Imported here: the server pulls in the media stack (aiortc, PyAV), which the other
    # commands do not need.
    from callbridge.server import serve

    loops.run(serve(config), config.event_loop)
    return EXIT_OK


def _ice_servers(args: argparse.Namespace) -> list[dict[str, Any]]:
    servers: list[dict[str, Any]] = [{"urls": url} for url in args.stun]
    servers += [
        {"urls": url, "username": args.turn_username, "credential": args.turn_password}
        for url in args.turn
    ]
    return servers


def _newcomer_hint(args: argparse.Namespace) -> str:
    return "\n".join(
        [
            "callbridge: no users yet. Add one and get a login token with:",
            f"  {_command(args, 'users add alice --extension 1001')}",
            f"  {_command(args, 'token alice')}",
            f"then connect to {_ws_url(args.host, args.port)} and send "
            '{"type": "session.login", "token": "<the token>"}.',
        ]
    )
