"""The lexical rules of SIP (RFC 3261 §25.1) that the URI, header and message parsers share,
and :class:`SipParseError`.

Header values reach these helpers already unfolded: the message parser turns every line fold
(CRLF followed by SP or HTAB, RFC 3261 §7.3.1) into one SP, so LWS here is just SP / HTAB.
Text is ``str`` decoded from the wire as UTF-8 with ``surrogateescape``: bytes that are not
UTF-8 survive a round trip instead of raising.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator

from callbridge.errors import SipError

__all__ = [
    "TOKEN_CHARS",
    "Params",
    "Scanner",
    "SipParseError",
    "is_token",
    "quote",
    "split_commas",
]

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")  (§25.1)
TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-.!%*_+`'~")
# gen-value = token / host / quoted-string: a host adds ":" and "[ ]" (IPv6 references).
_GEN_VALUE_CHARS = TOKEN_CHARS | frozenset(":[]")
WS = " \t"


class SipParseError(SipError):
    """Bytes that are not a SIP message callbridge accepts.

    ``status`` is the response a request earns (RFC 3261 §21): 400 for bad syntax, 505 for
    another SIP version, 413/414/513 for a parsing limit; ``reason`` names the problem, e.g.
    ``"CSeq: sequence number 36893488147419103232 is over 2**31-1"``. A response that fails
    to parse is dropped, not answered.

    ``start_line`` and ``headers`` hold what was read before the error (the unfolded
    ``(name, value)`` fields, names canonical), or None: with Via, From, To, Call-ID and CSeq
    among them a transport can still answer the request (§8.2.6;
    :func:`callbridge.sip.message.error_response`).
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(status, reason)
        self.start_line: str | None = None
        self.headers: list[tuple[str, str]] | None = None


def is_token(text: str) -> bool:
    """True when ``text`` is a non-empty RFC 3261 token."""
    return bool(text) and all(c in TOKEN_CHARS for c in text)


def quote(text: str) -> str:
    """``text`` as a quoted-string: backslash and DQUOTE escaped (§25.1 quoted-pair)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote(raw: str) -> str:
    """The content of a quoted-string as written by :class:`Scanner` (no checks: the
    scanner already checked it), or ``raw`` itself when it is not quoted."""
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        out: list[str] = []
        it = iter(raw[1:-1])
        for ch in it:
            out.append(next(it, "") if ch == "\\" else ch)
        return "".join(out)
    return raw


class Scanner:
    """A cursor over one unfolded header value. Every failure is a :class:`SipParseError`
    whose reason starts with ``what`` (the header's name), so a 400 names the field."""

    __slots__ = ("i", "s", "what")

    def __init__(self, text: str, what: str) -> None:
        self.s = text
        self.i = 0
        self.what = what

    def error(self, problem: str) -> SipParseError:
        return SipParseError(f"{self.what}: {problem}")

    def ws(self) -> bool:
        """Skip SP / HTAB; True when there was some."""
        start = self.i
        while self.i < len(self.s) and self.s[self.i] in WS:
            self.i += 1
        return self.i > start

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def at_end(self) -> bool:
        self.ws()
        return self.i >= len(self.s)

    def take(self, ch: str) -> bool:
        """SWS ch SWS (the SEMI, COMMA, EQUAL, SLASH, COLON rules of §25.1): consume and
        return True when the next non-space character is ``ch``."""
        save = self.i
        self.ws()
        if self.peek() == ch:
            self.i += 1
            self.ws()
            return True
        self.i = save
        return False

    def expect(self, ch: str, context: str) -> None:
        if not self.take(ch):
            found = repr(self.peek()) if self.peek() else "the end"
            raise self.error(f"expected {ch!r} {context}, found {found}")

    def run(self, chars: frozenset[str]) -> str:
        start = self.i
        while self.i < len(self.s) and self.s[self.i] in chars:
            self.i += 1
        return self.s[start : self.i]

    def token(self, what: str = "a token") -> str:
        tok = self.run(TOKEN_CHARS)
        if not tok:
            found = repr(self.peek()) if self.peek() else "the end"
            raise self.error(f"expected {what}, found {found}")
        return tok

    def quoted(self) -> str:
        """A quoted-string at the cursor, returned as written (quotes included).

        qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII; quoted-pair = "\\" followed
        by any octet but CR and LF (§25.1). A raw control character or a missing closing
        quote is an error.
        """
        start = self.i
        if self.peek() != '"':
            raise self.error("expected a quoted string")
        self.i += 1
        s = self.s
        while self.i < len(s):
            ch = s[self.i]
            if ch == '"':
                self.i += 1
                return s[start : self.i]
            if ch == "\\":
                if self.i + 1 >= len(s) or s[self.i + 1] in "\r\n":
                    break
                self.i += 2
                continue
            if (ord(ch) < 0x20 and ch != "\t") or ch == "\x7f":
                raise self.error(f"control character {ord(ch):#04x} in a quoted string")
            self.i += 1
        raise self.error("unterminated quoted string")

    def gen_value(self) -> str:
        """gen-value = token / host / quoted-string (§25.1), as written."""
        if self.peek() == '"':
            return self.quoted()
        value = self.run(_GEN_VALUE_CHARS)
        if not value:
            raise self.error("a parameter has '=' but no value")
        return value

    def params(self, stop: str = "") -> Params:
        """``*(SEMI generic-param)`` up to the end or a character of ``stop``."""
        items: list[tuple[str, str | None]] = []
        while True:
            save = self.i
            self.ws()
            if self.i >= len(self.s) or self.peek() in stop:
                self.i = save
                return Params(items)
            if not self.take(";"):
                raise self.error(f"unexpected {self.peek()!r} where ';' or the end belongs")
            name = self.token("a parameter name after ';'")
            items.append((name, self.gen_value() if self.take("=") else None))


class Params:
    """Ordered ``;name[=value]`` parameters of a header value (From tag, Via branch, …).

    Names compare case-insensitively (§7.3.1). Values are kept as written, a quoted value
    with its quotes, so that serializing gives back what was parsed; :meth:`get` returns the
    unquoted value, ``""`` for a flag parameter (``;lr``) and None when absent.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str | None]] = ()) -> None:
        self._items: list[tuple[str, str | None]] = list(items)

    def get(self, name: str) -> str | None:
        key = name.lower()
        for n, v in self._items:
            if n.lower() == key:
                return "" if v is None else unquote(v)
        return None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def set(self, name: str, value: str | None = None) -> None:
        """Add or replace ``name``; a value that is not a gen-value token is quoted."""
        raw = value
        if value is not None and (not value or any(c not in _GEN_VALUE_CHARS for c in value)):
            raw = quote(value)
        key = name.lower()
        for idx, (n, _) in enumerate(self._items):
            if n.lower() == key:
                self._items[idx] = (n, raw)
                return
        self._items.append((name, raw))

    def remove(self, name: str) -> None:
        key = name.lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != key]

    def names(self) -> list[str]:
        return [n for n, _ in self._items]

    def __iter__(self) -> Iterator[tuple[str, str | None]]:
        """``(name, value)`` pairs, values as written (quotes kept)."""
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Params):
            return NotImplemented
        return sorted((n.lower(), v) for n, v in self) == sorted((n.lower(), v) for n, v in other)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def copy(self) -> Params:
        return Params(self._items)

    def __str__(self) -> str:
        return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in self._items)

    def __repr__(self) -> str:
        return f"Params({self._items!r})"


def split_commas(value: str, what: str) -> list[str]:
    """Split a list header's value at the commas that separate its elements (§7.3.1),
    not those inside a quoted string or ``<…>``. An empty element is an error."""
    parts: list[str] = []
    depth_angle = False
    in_quote = False
    start = 0
    i = 0
    while i < len(value):
        ch = value[i]
        if in_quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            depth_angle = True
        elif ch == ">":
            depth_angle = False
        elif ch == "," and not depth_angle:
            parts.append(value[start:i])
            start = i + 1
        i += 1
    parts.append(value[start:])
    out = [p.strip(WS) for p in parts]
    if any(not p for p in out):
        raise SipParseError(f"{what}: empty element in a comma-separated list")
    return out
