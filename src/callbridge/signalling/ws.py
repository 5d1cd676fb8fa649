"""One ``/ws`` connection: session login, message dispatch, and ordered delivery of events.

Messages of one connection are handled one at a time, in order (an ICE candidate never
overtakes the offer it belongs to). Outgoing messages go through a queue drained by a writer
task, so the control plane never blocks on a slow socket. Any error in handling one message
becomes an ``error`` message; the connection keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect

from callbridge.core.calls import EndReason, new_id
from callbridge.core.controller import CallController
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.signalling import protocol as p
from callbridge.store import TokenExpired, TokenInvalid

__all__ = ["Authenticator", "Connection"]

log = logging.getLogger(__name__)


class Authenticator(Protocol):
    async def check_token(self, token: str) -> Any:
        """Return the user, or raise TokenInvalid / TokenExpired (StoreError subclasses)."""


class Connection:
    """A WebSocket connection; once logged in, one device of its user."""

    def __init__(self, ws: WebSocket, controller: CallController, auth: Authenticator) -> None:
        self.ws = ws
        self.controller = controller
        self.auth = auth
        self.id = new_id()
        self.user: Any = None
        self.user_name = ""
        self.caller_id = ""
        self.display_name = ""
        self._out: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._logged_out = False

    # Device protocol
    def send(self, message: dict[str, Any]) -> None:
        if message.get("req_id", "") is None:
            del message["req_id"]
        self._out.put_nowait(message)

    async def _writer(self) -> None:
        while (message := await self._out.get()) is not None:
            try:
                await self.ws.send_text(json.dumps(message))
            except Exception:  # the peer is gone; the reader will notice
                return

    async def run(self) -> None:
        await self.ws.accept()
        writer = asyncio.create_task(self._writer())
        try:
            while True:
                frame = await self.ws.receive()
                if frame["type"] == "websocket.disconnect":
                    break
                await self._handle_frame(frame.get("text"), frame.get("bytes"))
                if self._logged_out:
                    break
        except WebSocketDisconnect:
            pass
        finally:
            if self.user is not None:
                await self.controller.remove_device(self, EndReason.DISCONNECTED)
            self._out.put_nowait(None)
            await writer
        if self._logged_out:
            await self.ws.close(1000)

    async def _handle_frame(self, text: str | None, data: bytes | None) -> None:
        raw: dict[str, Any] | None = None
        try:
            raw = p.decode_frame(text if text is not None else data)
            msg = p.parse_message(raw)
            await self._dispatch(msg)
        except ProtocolError as exc:
            call_id = raw.get("call_id") if raw else None
            self.send(
                exc.to_wire(p.peek_req_id(raw), call_id if isinstance(call_id, str) else None)
            )
        except TokenExpired as exc:
            self.send(ProtocolError(ErrorCode.TOKEN_EXPIRED, str(exc)).to_wire(p.peek_req_id(raw)))
        except TokenInvalid as exc:
            self.send(ProtocolError(ErrorCode.INVALID_TOKEN, str(exc)).to_wire(p.peek_req_id(raw)))
        except Exception:
            log.exception("failed to handle a message")
            self.send(
                ProtocolError(
                    ErrorCode.INTERNAL, "the server failed to handle this message"
                ).to_wire(p.peek_req_id(raw))
            )

    async def _dispatch(self, msg: p.ClientMessage) -> None:
        c = self.controller
        if isinstance(msg, p.SessionLogin):
            await self._login(msg)
            return
        if self.user is None:
            raise ProtocolError(
                ErrorCode.NOT_LOGGED_IN, f"{msg.type} needs a session: send session.login first"
            )
        match msg:
            case p.SessionLogout():
                await c.remove_device(self, EndReason.HANGUP)
                self.send(
                    {"type": "session.disconnected", "req_id": msg.req_id, "reason": "logout"}
                )
                self.user = None
                self._logged_out = True
            case p.CallCreate():
                await c.create_call(self, msg.destination, msg.sdp, msg.caller_id, msg.req_id)
            case p.CallAnswer():
                await c.answer(self, msg.call_id, msg.sdp, msg.req_id)
            case p.CallReject():
                await c.reject(self, msg.call_id, msg.reason, msg.req_id)
            case p.CallHangup():
                await c.hangup(self, msg.call_id, msg.req_id)
            case p.CallHold():
                await c.hold(self, msg.call_id, msg.req_id)
            case p.CallResume():
                await c.resume(self, msg.call_id, msg.req_id)
            case p.CallMute():
                await c.set_muted(self, msg.call_id, True, msg.req_id)
            case p.CallUnmute():
                await c.set_muted(self, msg.call_id, False, msg.req_id)
            case p.CallTransfer():
                await c.transfer(self, msg.call_id, msg.destination, msg.req_id)
            case p.CallCompleteTransfer():
                await c.complete_transfer(self, msg.call_id, msg.target_call_id, msg.req_id)
            case p.CallMove():
                await c.move(self, msg.call_id, msg.req_id)
            case p.IceCandidate():
                await c.add_candidate(
                    self, msg.call_id, msg.candidate, msg.sdp_mid, msg.sdp_m_line_index
                )
            case p.IceDone():
                await c.add_candidate(self, msg.call_id, None, None, None)

    async def _login(self, msg: p.SessionLogin) -> None:
        if self.user is not None:
            raise ProtocolError(ErrorCode.ALREADY_LOGGED_IN, "this connection is logged in")
        user = await self.auth.check_token(msg.token)
        self.user = user
        self.user_name = user.name
        self.caller_id = user.number or user.extension
        self.display_name = user.display_name or user.name
        self.controller.add_device(self)
        self.send(
            {
                "type": "session.ready",
                "req_id": msg.req_id,
                "session_id": self.id,
                "user": {
                    "name": user.name,
                    "extension": user.extension,
                    "number": user.number,
                    "display_name": user.display_name,
                },
            }
        )
