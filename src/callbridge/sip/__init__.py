"""callbridge's SIP core (issue 11): a back-to-back user agent written to RFC 3261.

The message layer (this package's base; everything above builds on it):

* :mod:`callbridge.sip.message` — :class:`Request`, :class:`Response`, :class:`Headers`,
  :func:`parse`, :class:`StreamFramer`, :func:`error_response`, :class:`ParseLimits`;
* :mod:`callbridge.sip.headers` — typed header values (:class:`Via`, :class:`NameAddr`,
  :class:`CSeq`, :class:`Auth`, :class:`Reason`, :class:`Replaces`);
* :mod:`callbridge.sip.uri` — :class:`Uri` and :func:`parse_uri` (SIP, SIPS, tel);
* :mod:`callbridge.sip.syntax` — :class:`SipParseError` and the lexical helpers.

Every malformed input raises :class:`SipParseError` (a :class:`callbridge.errors.SipError`)
whose ``status`` and ``reason`` are the response the peer gets.
"""

from callbridge.sip.headers import Auth, CSeq, NameAddr, Reason, Replaces, Via
from callbridge.sip.message import (
    DATAGRAM_LIMITS,
    PING,
    STREAM_LIMITS,
    Headers,
    Message,
    ParseLimits,
    Request,
    Response,
    StreamFramer,
    application_check,
    error_response,
    parse,
)
from callbridge.sip.syntax import Params, SipParseError
from callbridge.sip.uri import Uri, parse_uri

__all__ = [
    "DATAGRAM_LIMITS",
    "PING",
    "STREAM_LIMITS",
    "Auth",
    "CSeq",
    "Headers",
    "Message",
    "NameAddr",
    "Params",
    "ParseLimits",
    "Reason",
    "Replaces",
    "Request",
    "Response",
    "SipParseError",
    "StreamFramer",
    "Uri",
    "Via",
    "application_check",
    "error_response",
    "parse",
    "parse_uri",
]
