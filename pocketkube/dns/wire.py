"""DNS wire-format helpers the answer cache needs without parsing a whole message with dnslib.

The cache (cache.py) serves raw bytes; to cache a forwarded answer honestly it must know how long
the answer may live (RFC 2181 §5.2 and RFC 2308 §5: the smallest TTL of the records, or for a
negative answer the smaller of the SOA's TTL and its MINIMUM field) and where every TTL sits, so a
later hit can count the TTLs down. These functions walk the message once, at insertion time;
hits never come here. Everything is bounds-checked: a malformed message raises ValueError.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

HEADER = 12
OPT = 41
SOA = 6
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP = 0, 1, 2, 3, 4


class Record(NamedTuple):
    section: int  # 0 answer, 1 authority, 2 additional
    rtype: int
    ttl_offset: int
    rdata_offset: int
    rdlength: int


def skip_name(buf: bytes, pos: int) -> int:
    """The offset just past the (possibly compressed) domain name that starts at `pos`."""
    while True:
        if pos >= len(buf):
            raise ValueError("name runs past the message")
        length = buf[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            if pos + 2 > len(buf):
                raise ValueError("truncated compression pointer")
            return pos + 2
        if length & 0xC0:
            raise ValueError("reserved label type")
        pos += 1 + length


def question_end(buf: bytes) -> int:
    """The offset just past the question section."""
    if len(buf) < HEADER:
        raise ValueError("short message")
    pos = HEADER
    for _ in range(struct.unpack_from("!H", buf, 4)[0]):
        pos = skip_name(buf, pos) + 4
    if pos > len(buf):
        raise ValueError("question runs past the message")
    return pos


def records(buf: bytes) -> list[Record]:
    """Every resource record after the question, with where its TTL and RDATA are."""
    pos = question_end(buf)  # checks the header is there
    counts = struct.unpack_from("!HHH", buf, 6)
    out: list[Record] = []
    for section, count in enumerate(counts):
        for _ in range(count):
            pos = skip_name(buf, pos)
            if pos + 10 > len(buf):
                raise ValueError("record header runs past the message")
            rtype, _, _, rdlength = struct.unpack_from("!HHIH", buf, pos)
            out.append(Record(section, rtype, pos + 4, pos + 10, rdlength))
            pos += 10 + rdlength
            if pos > len(buf):
                raise ValueError("rdata runs past the message")
    return out


def rcode(buf: bytes) -> int:
    return buf[3] & 0x0F


def truncated(buf: bytes) -> bool:
    return bool(buf[2] & 0x02)


def cache_lifetime(reply: bytes) -> tuple[int, tuple[int, ...]] | None:
    """(seconds the reply may be cached, offsets of its TTLs) — None when it must not be cached.

    Positive answers live for their smallest TTL; NXDOMAIN and NODATA for min(SOA TTL, SOA
    MINIMUM) and only when they carry the SOA (RFC 2308 §5: no SOA, no negative caching).
    Truncated answers, errors other than NXDOMAIN, and zero TTLs are not cached. OPT's "TTL" is
    flags, not a lifetime, and is left alone.
    """
    if len(reply) < HEADER or truncated(reply) or rcode(reply) not in (NOERROR, NXDOMAIN):
        return None
    rrs = [r for r in records(reply) if r.rtype != OPT]
    ttl = {r.ttl_offset: struct.unpack_from("!I", reply, r.ttl_offset)[0] for r in rrs}
    answers = [r for r in rrs if r.section == 0]
    if answers and rcode(reply) == NOERROR:
        lifetime = min(ttl.values())
    else:
        soa = [r for r in rrs if r.section == 1 and r.rtype == SOA and r.rdlength >= 20]
        if not soa:
            return None
        minimum = struct.unpack_from("!I", reply, soa[0].rdata_offset + soa[0].rdlength - 4)[0]
        lifetime = min(ttl[soa[0].ttl_offset], minimum)
    if lifetime <= 0:
        return None
    return lifetime, tuple(ttl)


def age_ttls(reply: bytes, offsets: tuple[int, ...], elapsed: int) -> bytes:
    """A copy of `reply` with each TTL at `offsets` lowered by `elapsed` seconds (not below 0)."""
    out = bytearray(reply)
    for off in offsets:
        struct.pack_into("!I", out, off, max(0, struct.unpack_from("!I", out, off)[0] - elapsed))
    return bytes(out)


def header_reply(query: bytes, code: int) -> bytes:
    """A header-only reply (FORMERR, NOTIMP, SERVFAIL): the query's ID and opcode, QR set."""
    flags = struct.unpack_from("!H", query, 2)[0] if len(query) >= 4 else 0
    return query[:2] + struct.pack("!HHHHH", 0x8000 | (flags & 0x7900) | code, 0, 0, 0, 0)
