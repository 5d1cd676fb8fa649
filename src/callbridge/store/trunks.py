"""Trunks, outbound routes, number routing and dial policies in the store (issue 12).

Tables (migration ``0007``): ``trunks`` (one carrier or PBX, per account; its name is unique
within the account), ``outbound_routes`` (a prefix to an ordered, comma-separated list of trunk
ids; the prefix is unique within the account), ``dial_policies`` (an account's toll-fraud
settings, :mod:`callbridge.core.tollfraud`; no row: the defaults), and three columns on
``numbers`` (where an inbound call to the number goes).

A trunk's carrier password is stored as given: a digest response to the carrier needs it (or an
HA1 for the carrier's realm, which is only known once it challenges). Only the store and the
SIP side read it; listings and REST answers never show it (``docs/security.md``).

    StoreError
    ├── TrunkExists               a trunk name or route prefix is taken in the account
    └── NotFound
        ├── TrunkNotFound         no trunk has this id (or name) in this account
        └── OutboundRouteNotFound no route has this prefix in this account
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from callbridge.store.errors import NotFound, StoreError
from callbridge.store.records import normalize_number
from callbridge.store.repository import Repository, new_id, now
from callbridge.store.schema import DEFAULT_ACCOUNT_ID, Base, NumberRow, UTCDateTime
from callbridge.trunks import (
    DEFAULT_CODECS,
    DEFAULT_PORTS,
    DEFAULT_TRUNK_CALLS_PER_MINUTE,
    DEFAULT_TRUNK_MAX_CALLS,
    HEALTH_STATES,
    NUMBER_TARGETS,
    PRIVACY_VALUES,
    REGISTRATION_STATES,
    TRANSPORTS,
    DialPolicy,
    NumberRoute,
    OutboundRoute,
    Trunk,
    parse_acl,
    validate_codecs,
    validate_host,
    validate_prefix,
    validate_trunk_name,
)

__all__ = [
    "DialPolicyRow",
    "OutboundRouteNotFound",
    "OutboundRouteRow",
    "TrunkExists",
    "TrunkNotFound",
    "TrunkRepository",
    "TrunkRow",
]

_MAX_SECRET = 255
_TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)
_MAX_LIMIT = 100_000


class TrunkExists(StoreError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is taken in this account: pick another")


class TrunkNotFound(NotFound):
    what = "trunk"


class OutboundRouteNotFound(NotFound):
    what = "outbound route"


def _account_fk() -> Mapped[str]:
    return mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True, server_default=DEFAULT_ACCOUNT_ID
    )


class TrunkRow(Base):
    __tablename__ = "trunks"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = _account_fk()
    name: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    transport: Mapped[str] = mapped_column(String(8))
    outbound_proxy: Mapped[str | None] = mapped_column(String(255))
    username: Mapped[str | None] = mapped_column(String(255))
    auth_username: Mapped[str | None] = mapped_column(String(255))
    password: Mapped[str | None] = mapped_column(String(255))
    register: Mapped[bool] = mapped_column(Boolean)
    register_expires: Mapped[int] = mapped_column(Integer)
    inbound_acl: Mapped[str] = mapped_column(Text)  # JSON list of CIDRs
    inbound_username: Mapped[str | None] = mapped_column(String(255))
    inbound_password: Mapped[str | None] = mapped_column(String(255))
    codecs: Mapped[str] = mapped_column(String(255))  # comma-separated, preference order
    options_interval: Mapped[int] = mapped_column(Integer)
    max_calls: Mapped[int | None] = mapped_column(Integer)
    calls_per_minute: Mapped[int | None] = mapped_column(Integer)
    send_pai: Mapped[bool] = mapped_column(Boolean)
    privacy: Mapped[str] = mapped_column(String(16))
    registration_state: Mapped[str] = mapped_column(String(16))
    registration_detail: Mapped[str] = mapped_column(String(255))
    registration_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    health: Mapped[str] = mapped_column(String(16))
    health_detail: Mapped[str] = mapped_column(String(255))
    health_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OutboundRouteRow(Base):
    __tablename__ = "outbound_routes"
    __table_args__ = (UniqueConstraint("account_id", "prefix"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = _account_fk()
    prefix: Mapped[str] = mapped_column(String(16))
    trunk_ids: Mapped[str] = mapped_column(Text)  # comma-separated, failover order
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DialPolicyRow(Base):
    __tablename__ = "dial_policies"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    allow_prefixes: Mapped[str | None] = mapped_column(Text)  # JSON list; NULL: no allow-list
    deny_prefixes: Mapped[str] = mapped_column(Text)  # JSON list
    user_max_calls: Mapped[int] = mapped_column(Integer)
    user_calls_per_minute: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


_TRUNK_FIELDS = frozenset(
    {
        "name",
        "host",
        "port",
        "transport",
        "outbound_proxy",
        "username",
        "auth_username",
        "password",
        "register",
        "register_expires",
        "inbound_acl",
        "inbound_username",
        "inbound_password",
        "codecs",
        "options_interval",
        "max_calls",
        "calls_per_minute",
        "send_pai",
        "privacy",
    }
)


def _optional_text(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > _MAX_SECRET or "\n" in value or "\r" in value:
        raise ValueError(f"invalid {name}: use text of 1 to {_MAX_SECRET} characters, one line")
    return value


def _bounded(name: str, value: Any, low: int, high: int, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        none = " (or none)" if optional else ""
        raise ValueError(f"invalid {name} {value!r}: use a whole number {low} to {high}{none}")
    return value


def _checked(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (trunk fields) validated and normalised; ValueError naming the field."""
    unknown = set(values) - _TRUNK_FIELDS
    if unknown:
        raise ValueError(f"unknown trunk field(s): {', '.join(sorted(unknown))}")
    out = dict(values)
    if "name" in out:
        out["name"] = validate_trunk_name(out["name"])
    if "host" in out:
        out["host"] = validate_host(out["host"])
    if "transport" in out:
        transport = str(out["transport"]).lower()
        if transport not in TRANSPORTS:
            raise ValueError(
                f"invalid transport {out['transport']!r}: use one of {', '.join(TRANSPORTS)}"
            )
        out["transport"] = transport
    if "port" in out and out["port"] is not None:
        out["port"] = _bounded("port", out["port"], 1, 65535)
    if out.get("outbound_proxy"):
        proxy = str(out["outbound_proxy"]).strip()
        host, _, port = proxy.rpartition(":") if proxy.count(":") == 1 else (proxy, "", "")
        validate_host(host or proxy, "outbound_proxy")
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"invalid outbound_proxy {proxy!r}: the port must be 1 to 65535")
        out["outbound_proxy"] = proxy
    for name in ("username", "auth_username", "password", "inbound_username", "inbound_password"):
        if name in out:
            out[name] = _optional_text(name, out[name])
    if "outbound_proxy" in out and not out["outbound_proxy"]:
        out["outbound_proxy"] = None
    for name in ("register", "send_pai"):
        if name in out and not isinstance(out[name], bool):
            raise ValueError(f"invalid {name} {out[name]!r}: use true or false")
    if "register_expires" in out:
        out["register_expires"] = _bounded("register_expires", out["register_expires"], 60, 86400)
    if "options_interval" in out:
        out["options_interval"] = _bounded("options_interval", out["options_interval"], 0, 3600)
    for name in ("max_calls", "calls_per_minute"):
        if name in out:
            out[name] = _bounded(name, out[name], 1, _MAX_LIMIT, optional=True)
    if "privacy" in out and out["privacy"] not in PRIVACY_VALUES:
        raise ValueError(
            f"invalid privacy {out['privacy']!r}: use one of {', '.join(PRIVACY_VALUES)}"
        )
    if "inbound_acl" in out:
        acl = out["inbound_acl"]
        if isinstance(acl, str):
            acl = acl.split(",")
        out["inbound_acl"] = json.dumps(list(parse_acl(acl)))
    if "codecs" in out:
        codecs = out["codecs"]
        if isinstance(codecs, str):
            codecs = codecs.split(",")
        out["codecs"] = ",".join(validate_codecs(codecs))
    return out


def _trunk(row: TrunkRow) -> Trunk:
    return Trunk(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        host=row.host,
        port=row.port,
        transport=row.transport,  # type: ignore[arg-type]  # validated on the way in
        outbound_proxy=row.outbound_proxy,
        username=row.username,
        auth_username=row.auth_username,
        password=row.password,
        register=row.register,
        register_expires=row.register_expires,
        inbound_acl=tuple(json.loads(row.inbound_acl or "[]")),
        inbound_username=row.inbound_username,
        inbound_password=row.inbound_password,
        codecs=tuple(c for c in row.codecs.split(",") if c),
        options_interval=row.options_interval,
        max_calls=row.max_calls,
        calls_per_minute=row.calls_per_minute,
        send_pai=row.send_pai,
        privacy=row.privacy,
        registration_state=row.registration_state,
        registration_detail=row.registration_detail,
        registration_updated_at=row.registration_updated_at,
        health=row.health,
        health_detail=row.health_detail,
        health_updated_at=row.health_updated_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _route(row: OutboundRouteRow) -> OutboundRoute:
    return OutboundRoute(
        id=row.id,
        account_id=row.account_id,
        prefix=row.prefix,
        trunk_ids=tuple(t for t in row.trunk_ids.split(",") if t),
        name=row.name,
        created_at=row.created_at,
    )


def _number_route(row: NumberRow) -> NumberRoute:
    return NumberRoute(
        e164=row.number,
        account_id=row.account_id,
        target_kind=row.target_kind,
        target_id=row.target_id,
        allow_outbound=row.allow_outbound,
        created_at=row.created_at,
    )


class TrunkRepository(Repository):
    """Trunks, outbound routes, number routing and dial policies."""

    # trunks ---------------------------------------------------------------------------------
    async def add_trunk(self, account_id: str = DEFAULT_ACCOUNT_ID, **values: Any) -> Trunk:
        """A new trunk; ``name`` and ``host`` are required, the rest default as
        :class:`~callbridge.trunks.Trunk`. ValueError for a bad field, TrunkExists for a
        name taken in the account."""
        if "name" not in values or "host" not in values:
            raise ValueError("a trunk needs a name and a host")
        checked = _checked(values)
        transport = checked.get("transport", "udp")
        stamp = now()
        row = TrunkRow(
            id=new_id(),
            account_id=account_id,
            name=checked["name"],
            host=checked["host"],
            port=checked.get("port") or DEFAULT_PORTS[transport],
            transport=transport,
            outbound_proxy=checked.get("outbound_proxy"),
            username=checked.get("username"),
            auth_username=checked.get("auth_username"),
            password=checked.get("password"),
            register=checked.get("register", False),
            register_expires=checked.get("register_expires", 3600),
            inbound_acl=checked.get("inbound_acl", "[]"),
            inbound_username=checked.get("inbound_username"),
            inbound_password=checked.get("inbound_password"),
            codecs=checked.get("codecs", ",".join(DEFAULT_CODECS)),
            options_interval=checked.get("options_interval", 30),
            max_calls=checked.get("max_calls", DEFAULT_TRUNK_MAX_CALLS),
            calls_per_minute=checked.get("calls_per_minute", DEFAULT_TRUNK_CALLS_PER_MINUTE),
            send_pai=checked.get("send_pai", False),
            privacy=checked.get("privacy", "none"),
            registration_state="registering" if checked.get("register") else "off",
            registration_detail="",
            registration_updated_at=None,
            health="unknown",
            health_detail="",
            health_updated_at=None,
            created_at=stamp,
            updated_at=stamp,
        )
        if row.register and not row.username:
            raise ValueError("a trunk that registers needs a username (and usually a password)")
        try:
            async with self._write.begin() as session:
                session.add(row)
        except IntegrityError as exc:
            raise TrunkExists(f"trunk name {row.name!r}") from exc
        return _trunk(row)

    async def update_trunk(self, trunk_id: str, account_id: str | None, **values: Any) -> Trunk:
        checked = _checked(values)
        try:
            async with self._write.begin() as session:
                row = await session.get(TrunkRow, trunk_id)
                if row is None or (account_id is not None and row.account_id != account_id):
                    raise TrunkNotFound(trunk_id)
                for key, value in checked.items():
                    setattr(row, key, value)
                if "transport" in checked and "port" not in checked:
                    row.port = DEFAULT_PORTS[row.transport]
                if "register" in checked:
                    row.registration_state = "registering" if row.register else "off"
                    row.registration_detail = ""
                if row.register and not row.username:
                    raise ValueError("a trunk that registers needs a username")
                row.updated_at = now()
        except IntegrityError as exc:
            raise TrunkExists(f"trunk name {values.get('name')!r}") from exc
        return _trunk(row)

    async def find_trunk(self, trunk_id: str, account_id: str | None = None) -> Trunk | None:
        """The trunk with this id (or, within ``account_id``, this name)."""
        async with self._read() as session:
            row = await session.get(TrunkRow, trunk_id)
            if row is None and account_id is not None:
                row = await session.scalar(
                    select(TrunkRow).where(
                        TrunkRow.account_id == account_id, TrunkRow.name == trunk_id
                    )
                )
        if row is None or (account_id is not None and row.account_id != account_id):
            return None
        return _trunk(row)

    async def get_trunk(self, trunk_id: str, account_id: str | None = None) -> Trunk:
        trunk = await self.find_trunk(trunk_id, account_id)
        if trunk is None:
            raise TrunkNotFound(trunk_id)
        return trunk

    async def list_trunks(self, account_id: str | None = None) -> list[Trunk]:
        """The account's trunks (every account's when None), oldest first."""
        statement = select(TrunkRow).order_by(TrunkRow.created_at, TrunkRow.id)
        if account_id is not None:
            statement = statement.where(TrunkRow.account_id == account_id)
        async with self._read() as session:
            return [_trunk(row) for row in await session.scalars(statement)]

    async def remove_trunk(self, trunk_id: str, account_id: str | None = None) -> Trunk:
        """Delete the trunk (by id or name) and drop it from the account's routes."""
        async with self._write.begin() as session:
            row = await session.get(TrunkRow, trunk_id)
            if row is None and account_id is not None:
                row = await session.scalar(
                    select(TrunkRow).where(
                        TrunkRow.account_id == account_id, TrunkRow.name == trunk_id
                    )
                )
            if row is None or (account_id is not None and row.account_id != account_id):
                raise TrunkNotFound(trunk_id)
            routes = await session.scalars(
                select(OutboundRouteRow).where(OutboundRouteRow.account_id == row.account_id)
            )
            for route in routes:
                ids = [t for t in route.trunk_ids.split(",") if t and t != row.id]
                route.trunk_ids = ",".join(ids)
            await session.delete(row)
        return _trunk(row)

    async def set_trunk_registration(self, trunk_id: str, state: str, detail: str = "") -> None:
        if state not in REGISTRATION_STATES:
            raise ValueError(f"invalid registration state {state!r}: {REGISTRATION_STATES}")
        async with self._write.begin() as session:
            row = await session.get(TrunkRow, trunk_id)
            if row is None:
                raise TrunkNotFound(trunk_id)
            row.registration_state = state
            row.registration_detail = detail[:255]
            row.registration_updated_at = now()

    async def set_trunk_health(self, trunk_id: str, health: str, detail: str = "") -> None:
        if health not in HEALTH_STATES:
            raise ValueError(f"invalid health {health!r}: {HEALTH_STATES}")
        async with self._write.begin() as session:
            row = await session.get(TrunkRow, trunk_id)
            if row is None:
                raise TrunkNotFound(trunk_id)
            row.health = health
            row.health_detail = detail[:255]
            row.health_updated_at = now()

    # outbound routes ------------------------------------------------------------------------
    async def set_outbound_route(
        self,
        prefix: str,
        trunks: list[str],
        account_id: str = DEFAULT_ACCOUNT_ID,
        name: str = "",
        route_id: str | None = None,
    ) -> OutboundRoute:
        """Create (or, with ``route_id`` or an existing prefix, replace) the route sending
        ``prefix`` to ``trunks`` (ids or names of the account's trunks), in that order."""
        prefix = validate_prefix(prefix)
        if not trunks:
            raise ValueError("an outbound route needs at least one trunk")
        if len(name) > 255:
            raise ValueError("a route name is at most 255 characters")
        stamp = now()
        try:
            async with self._write.begin() as session:
                ids: list[str] = []
                for ref in trunks:
                    row = await session.get(TrunkRow, ref)
                    if row is None or row.account_id != account_id:
                        row = await session.scalar(
                            select(TrunkRow).where(
                                TrunkRow.account_id == account_id, TrunkRow.name == ref
                            )
                        )
                    if row is None:
                        raise TrunkNotFound(ref)
                    if row.id not in ids:
                        ids.append(row.id)
                if route_id is not None:
                    existing = await session.get(OutboundRouteRow, route_id)
                    if existing is None or existing.account_id != account_id:
                        raise OutboundRouteNotFound(route_id)
                else:
                    existing = await session.scalar(
                        select(OutboundRouteRow).where(
                            OutboundRouteRow.account_id == account_id,
                            OutboundRouteRow.prefix == prefix,
                        )
                    )
                if existing is None:
                    existing = OutboundRouteRow(
                        id=new_id(), account_id=account_id, created_at=stamp
                    )
                    session.add(existing)
                existing.prefix = prefix
                existing.trunk_ids = ",".join(ids)
                existing.name = name
                existing.updated_at = stamp
        except IntegrityError as exc:
            raise TrunkExists(f"route prefix {prefix!r}") from exc
        return _route(existing)

    async def list_outbound_routes(self, account_id: str | None = None) -> list[OutboundRoute]:
        statement = select(OutboundRouteRow).order_by(OutboundRouteRow.prefix)
        if account_id is not None:
            statement = statement.where(OutboundRouteRow.account_id == account_id)
        async with self._read() as session:
            return [_route(row) for row in await session.scalars(statement)]

    async def remove_outbound_route(self, key: str, account_id: str | None = None) -> OutboundRoute:
        """Delete the route with this id or prefix."""
        async with self._write.begin() as session:
            row = await session.get(OutboundRouteRow, key)
            if row is None and account_id is not None:
                try:
                    prefix = validate_prefix(key)
                except ValueError:
                    prefix = None
                if prefix is not None:
                    row = await session.scalar(
                        select(OutboundRouteRow).where(
                            OutboundRouteRow.account_id == account_id,
                            OutboundRouteRow.prefix == prefix,
                        )
                    )
            if row is None or (account_id is not None and row.account_id != account_id):
                raise OutboundRouteNotFound(key)
            await session.delete(row)
        return _route(row)

    # number routing -------------------------------------------------------------------------
    async def number_route(self, number: str) -> NumberRoute | None:
        e164 = normalize_number(number)
        if e164 is None:
            return None
        async with self._read() as session:
            row = await session.get(NumberRow, e164)
        return None if row is None else _number_route(row)

    async def list_number_routes(self, account_id: str | None = None) -> list[NumberRoute]:
        statement = select(NumberRow).order_by(NumberRow.number)
        if account_id is not None:
            statement = statement.where(NumberRow.account_id == account_id)
        async with self._read() as session:
            return [_number_route(row) for row in await session.scalars(statement)]

    async def route_number(
        self,
        number: str,
        account_id: str | None,
        target_kind: str | None,
        target_id: str | None,
        allow_outbound: bool | None = None,
    ) -> NumberRoute:
        """Where inbound calls to the account's ``number`` go (None, None: nowhere). The
        target is not checked here: the caller checks it exists (the CLI and REST do)."""
        from callbridge.store.accounts import NumberNotFound  # the accounts module's error

        if target_kind is not None and target_kind not in NUMBER_TARGETS:
            raise ValueError(
                f"invalid number target {target_kind!r}: use one of {', '.join(NUMBER_TARGETS)}"
            )
        if (target_kind is None) != (target_id is None):
            raise ValueError("a number's target needs both a kind and an id (or neither)")
        e164 = normalize_number(number)
        if e164 is None:
            raise NumberNotFound(number)
        async with self._write.begin() as session:
            row = await session.get(NumberRow, e164)
            if row is None or (account_id is not None and row.account_id != account_id):
                raise NumberNotFound(number)
            row.target_kind = target_kind
            row.target_id = target_id
            if allow_outbound is not None:
                row.allow_outbound = allow_outbound
        return _number_route(row)

    async def check_number_target(self, account_id: str, kind: str, target_id: str) -> str:
        """``target_id`` checked for a number of ``account_id`` routed to ``kind``: a user of
        the account (by name), one of its applications (by id), or a conference or queue name
        (made when first used). ValueError saying what to give instead."""
        if kind not in NUMBER_TARGETS:
            raise ValueError(
                f"invalid number target {kind!r}: use one of {', '.join(NUMBER_TARGETS)}"
            )
        if kind == "user":
            user = await self.find_user(target_id, account_id)  # type: ignore[attr-defined]
            if user is None or user.name != target_id:
                raise ValueError(f"no user named {target_id!r} in account {account_id!r}")
        elif kind == "application":
            if await self.get_application(target_id, account_id) is None:  # type: ignore[attr-defined]
                raise ValueError(
                    f"no application {target_id!r} in account {account_id!r}: use the id "
                    "applications list or GET /v2/call_control_applications shows"
                )
        elif not _TARGET_NAME.fullmatch(target_id):
            raise ValueError(
                f"invalid {kind} name {target_id!r}: use 1 to 64 letters, digits, '.', '_' or '-'"
            )
        return target_id

    # dial policies --------------------------------------------------------------------------
    async def dial_policy(self, account_id: str) -> DialPolicy:
        async with self._read() as session:
            row = await session.get(DialPolicyRow, account_id)
        if row is None:
            return DialPolicy(account_id)
        allow = None if row.allow_prefixes is None else tuple(json.loads(row.allow_prefixes))
        return DialPolicy(
            account_id,
            allow,
            tuple(json.loads(row.deny_prefixes)),
            row.user_max_calls,
            row.user_calls_per_minute,
        )

    async def set_dial_policy(self, account_id: str, **changes: Any) -> DialPolicy:
        """Change some of an account's toll-fraud settings (``allow_prefixes`` None removes
        the allow-list)."""
        unknown = set(changes) - {
            "allow_prefixes",
            "deny_prefixes",
            "user_max_calls",
            "user_calls_per_minute",
        }
        if unknown:
            raise ValueError(f"unknown dial policy field(s): {', '.join(sorted(unknown))}")
        for key in ("allow_prefixes", "deny_prefixes"):
            if key in changes and changes[key] is not None:
                changes[key] = tuple(dict.fromkeys(validate_prefix(p) for p in changes[key]))
        if changes.get("deny_prefixes", ()) is None:
            raise ValueError("deny_prefixes is a list (empty for none)")
        for key in ("user_max_calls", "user_calls_per_minute"):
            if key in changes:
                _bounded(key, changes[key], 0, _MAX_LIMIT)
        policy = replace(await self.dial_policy(account_id), **changes)
        async with self._write.begin() as session:
            row = await session.get(DialPolicyRow, account_id)
            if row is None:
                row = DialPolicyRow(account_id=account_id)
                session.add(row)
            row.allow_prefixes = (
                None if policy.allow_prefixes is None else json.dumps(list(policy.allow_prefixes))
            )
            row.deny_prefixes = json.dumps(list(policy.deny_prefixes))
            row.user_max_calls = policy.user_max_calls
            row.user_calls_per_minute = policy.user_calls_per_minute
            row.updated_at = now()
        return policy
