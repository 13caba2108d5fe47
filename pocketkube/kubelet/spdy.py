"""A small SPDY/3.1 framer: what `kubectl port-forward` speaks (raw, or tunnelled in WebSocket).

No maintained Python SPDY library exists, so this is ours. It parses a byte stream into frames
(DATA, SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE) and
encodes the frames a server sends. Header blocks are zlib-compressed with the dictionary of the
SPDY/3 specification, one compression context per direction for the whole connection (so frames
must be encoded in the order they are sent). Go's spdystream, which kubectl uses, does no flow
control, so WINDOW_UPDATE is parsed and otherwise ignored.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

DATA = 0
SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
VERSION = 3
MAX_FRAME = 1 << 24

# RST_STREAM status codes
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
CANCEL = 5
INTERNAL_ERROR = 6


def _dictionary() -> bytes:
    """The SPDY/3 header dictionary (spec section 2.6.10.1): length-prefixed words, then a tail."""
    words = (
        "options head post put delete trace accept accept-charset accept-encoding accept-language "
        "accept-ranges age allow authorization cache-control connection content-base content-encoding "
        "content-language content-length content-location content-md5 content-range content-type date etag "
        "expect expires from host if-match if-modified-since if-none-match if-range if-unmodified-since "
        "last-modified location max-forwards pragma proxy-authenticate proxy-authorization range referer "
        "retry-after server te trailer transfer-encoding upgrade user-agent vary via warning www-authenticate "
        "method get status 200|OK version HTTP/1.1 url public set-cookie keep-alive origin").split(" ")
    out = b"".join(struct.pack("!I", len(w)) + w.encode() for w in (w.replace("|", " ") for w in words))
    tail = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
            "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
            "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
    return out + tail.encode()


DICTIONARY = _dictionary()


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3.1."""


@dataclass
class Frame:
    """One frame. `kind` is DATA (0) or a control frame type; `value` is the RST/GOAWAY status,
    the PING id or the WINDOW_UPDATE delta; `headers` holds SYN_STREAM/SYN_REPLY/HEADERS names."""

    kind: int
    stream_id: int = 0
    flags: int = 0
    data: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    value: int = 0
    associated_id: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


def encode_header_block(headers: dict[str, str]) -> bytes:
    out = [struct.pack("!I", len(headers))]
    for name, value in headers.items():
        n, v = name.lower().encode(), value.encode()
        out.append(struct.pack("!I", len(n)) + n + struct.pack("!I", len(v)) + v)
    return b"".join(out)


def decode_header_block(block: bytes) -> dict[str, str]:
    try:
        (count,) = struct.unpack_from("!I", block, 0)
        pos = 4
        headers: dict[str, str] = {}
        for _ in range(count):
            (nlen,) = struct.unpack_from("!I", block, pos)
            name = block[pos + 4: pos + 4 + nlen]
            pos += 4 + nlen
            (vlen,) = struct.unpack_from("!I", block, pos)
            value = block[pos + 4: pos + 4 + vlen]
            pos += 4 + vlen
            if len(name) != nlen or len(value) != vlen:
                raise ProtocolError("truncated header block")
            headers[name.decode().lower()] = value.decode()
        return headers
    except struct.error as e:
        raise ProtocolError("truncated header block") from e


class Framer:
    """Parses what the peer sends (`feed`) and encodes what we send (`encode`)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)

    # ---- parsing -------------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while len(self._buf) >= 8:
            (length,) = struct.unpack_from("!I", self._buf, 4)
            flags, length = length >> 24, length & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            head = bytes(self._buf[:8])
            payload = bytes(self._buf[8: 8 + length])
            del self._buf[: 8 + length]
            frames.append(self._parse(head, flags, payload))
        return frames

    def _parse(self, head: bytes, flags: int, payload: bytes) -> Frame:
        (first,) = struct.unpack_from("!I", head, 0)
        if not first & 0x80000000:
            return Frame(DATA, first & 0x7FFFFFFF, flags, payload)
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")
        try:
            if kind == SYN_STREAM:
                sid, assoc = struct.unpack_from("!II", payload, 0)
                return Frame(kind, sid & 0x7FFFFFFF, flags, headers=self._headers(payload[10:]),
                             associated_id=assoc & 0x7FFFFFFF)
            if kind in (SYN_REPLY, HEADERS):
                (sid,) = struct.unpack_from("!I", payload, 0)
                return Frame(kind, sid & 0x7FFFFFFF, flags, headers=self._headers(payload[4:]))
            if kind in (RST_STREAM, GOAWAY, WINDOW_UPDATE):
                sid, value = struct.unpack_from("!II", payload, 0)
                return Frame(kind, sid & 0x7FFFFFFF, flags, value=value & (0x7FFFFFFF if kind == WINDOW_UPDATE
                                                                             else 0xFFFFFFFF))
            if kind == PING:
                (ping_id,) = struct.unpack_from("!I", payload, 0)
                return Frame(kind, 0, flags, value=ping_id)
        except struct.error as e:
            raise ProtocolError(f"truncated control frame {kind}") from e
        return Frame(kind, 0, flags, data=payload)  # SETTINGS and unknown types: kept raw

    def _headers(self, compressed: bytes) -> dict[str, str]:
        try:
            block = self._inflate.decompress(compressed)
        except zlib.error as e:
            raise ProtocolError(f"bad header compression: {e}") from e
        return decode_header_block(block)

    # ---- encoding ------------------------------------------------------------------------------
    def _compress(self, headers: dict[str, str]) -> bytes:
        return self._deflate.compress(encode_header_block(headers)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def _control(kind: int, flags: int, payload: bytes) -> bytes:
        return struct.pack("!HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload

    def data(self, stream_id: int, data: bytes, *, fin: bool = False) -> bytes:
        out = []
        for start in range(0, max(len(data), 1), MAX_FRAME - 1):
            chunk = data[start: start + MAX_FRAME - 1]
            last = start + MAX_FRAME - 1 >= len(data)
            flags = FLAG_FIN if fin and last else 0
            out.append(struct.pack("!II", stream_id & 0x7FFFFFFF, (flags << 24) | len(chunk)) + chunk)
        return b"".join(out)

    def syn_stream(self, stream_id: int, headers: dict[str, str], *, fin: bool = False) -> bytes:
        payload = struct.pack("!IIH", stream_id, 0, 0) + self._compress(headers)
        return self._control(SYN_STREAM, FLAG_FIN if fin else 0, payload)

    def syn_reply(self, stream_id: int, headers: dict[str, str] | None = None, *, fin: bool = False) -> bytes:
        payload = struct.pack("!I", stream_id) + self._compress(headers or {})
        return self._control(SYN_REPLY, FLAG_FIN if fin else 0, payload)

    def rst_stream(self, stream_id: int, status: int = CANCEL) -> bytes:
        return self._control(RST_STREAM, 0, struct.pack("!II", stream_id, status))

    def ping(self, ping_id: int) -> bytes:
        return self._control(PING, 0, struct.pack("!I", ping_id))

    def goaway(self, last_stream_id: int, status: int = 0) -> bytes:
        return self._control(GOAWAY, 0, struct.pack("!II", last_stream_id, status))
