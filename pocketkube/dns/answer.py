"""Answers from the cluster zone: a query's wire bytes in, the packed reply out (dnslib).

This is the miss path of the server (server.py): it runs once per distinct query until the zone
changes, and its output is what the wire cache (cache.py) stores. It is also where the protocol
rules that decide cacheability live:

* EDNS (RFC 6891): a query with an OPT record gets an OPT back (advertising `EDNS_UDP` bytes) and
  may receive up to min(its size, `EDNS_UDP`) bytes over UDP; version > 0 gets BADVERS.
* Over UDP, an answer larger than the asker can take goes out truncated (TC, question only), so
  the client retries over TCP; a truncated answer is never cached, and neither is one too large
  for UDP — every cached entry is thus a complete answer that is correct over either transport.
* Negative answers (NXDOMAIN, and NODATA for a name that exists) carry the zone's SOA, whose TTL
  is already the SOA minimum, so resolvers cache them for exactly that long (RFC 2308).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from dnslib import CNAME, EDNS0, PTR, QTYPE, RCODE, RR, SOA, SRV, A, DNSError, DNSRecord

from pocketkube.dns import wire
from pocketkube.dns.records import Zone

TTL = 5  # seconds, as CoreDNS's kubernetes plugin
NEGATIVE_TTL = 5  # the SOA minimum (RFC 2308), as CoreDNS
MAX_UDP = 512  # without EDNS (RFC 1035)
EDNS_UDP = 1232  # what we advertise and the most we send over UDP (DNS flag day 2020)
BADVERS = 16


class Answer(NamedTuple):
    packed: bytes  # empty: send nothing
    cacheable: bool


DROP = Answer(b"", False)


def soa(zone: Zone) -> RR:
    d = zone.domain
    return RR(d, QTYPE.SOA, ttl=min(TTL, NEGATIVE_TTL),
              rdata=SOA(f"ns.dns.{d}", f"hostmaster.{d}", (1, 7200, 1800, 86400, NEGATIVE_TTL)))


def resolve(zone: Zone, request: DNSRecord) -> DNSRecord | None:
    """The answer to a cluster query, or None when it must be forwarded."""
    q = request.q
    name = str(q.qname).lower()
    if not name.endswith("."):
        name += "."
    qtype = q.qtype
    if not zone.in_domain(name) and not (qtype == QTYPE.PTR and name in zone.ptr):
        return None
    reply = request.reply()
    reply.header.ra = 1
    reply.header.tc = 0
    rname = q.qname  # the asker's own letter case (DNS 0x20)
    if name in zone.cname:
        reply.add_answer(RR(rname, QTYPE.CNAME, ttl=TTL, rdata=CNAME(zone.cname[name])))
        return reply
    found = False
    if qtype in (QTYPE.A, QTYPE.ANY) and name in zone.a:
        found = True
        for ip in zone.a[name]:
            reply.add_answer(RR(rname, QTYPE.A, ttl=TTL, rdata=A(ip)))
    if qtype in (QTYPE.SRV, QTYPE.ANY) and name in zone.srv:
        found = True
        for port, target in zone.srv[name]:
            reply.add_answer(RR(rname, QTYPE.SRV, ttl=TTL, rdata=SRV(0, 100, port, target)))
        for target in sorted({t for _, t in zone.srv[name]}):
            for ip in zone.a.get(target, []):
                reply.add_ar(RR(target, QTYPE.A, ttl=TTL, rdata=A(ip)))
    if qtype in (QTYPE.PTR, QTYPE.ANY) and name in zone.ptr:
        found = True
        reply.add_answer(RR(rname, QTYPE.PTR, ttl=TTL, rdata=PTR(zone.ptr[name])))
    if qtype == QTYPE.SOA and name == zone.domain:
        found = True
        reply.add_answer(soa(zone))
    if not found:
        if name not in zone.names and name not in zone.ptr:
            reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(soa(zone))
    return reply


def answer(zone: Zone, data: bytes, *, udp: bool = True) -> Answer | None:
    """The reply to one query from the zone; None when the name is not ours and must be forwarded."""
    if len(data) < wire.HEADER or data[2] & 0x80:
        return DROP  # too short to answer, or a response: never answer those (no reflection loops)
    if data[2] & 0x78:
        return Answer(wire.header_reply(data, wire.NOTIMP), False)  # opcode other than QUERY
    try:
        request = DNSRecord.parse(data)
    except (DNSError, IndexError, struct.error, ValueError, UnicodeDecodeError):
        return Answer(wire.header_reply(data, wire.FORMERR), False)
    opts = [rr for rr in request.ar if rr.rtype == QTYPE.OPT]
    if len(request.questions) != 1 or len(opts) > 1:
        return Answer(wire.header_reply(data, wire.FORMERR), False)
    limit = MAX_UDP
    if opts:
        if (opts[0].ttl >> 16) & 0xFF:  # EDNS version > 0
            bad = request.reply()
            bad.add_ar(EDNS0(udp_len=EDNS_UDP, ext_rcode=BADVERS >> 4))
            return Answer(bytes(bad.pack()), False)
        limit = max(MAX_UDP, min(int(opts[0].rclass), EDNS_UDP))
    reply = resolve(zone, request)
    if reply is None:
        return None
    if opts:
        reply.add_ar(EDNS0(udp_len=EDNS_UDP))
    packed = bytes(reply.pack())
    if udp and len(packed) > limit:
        short = request.reply()
        short.header.tc = 1
        if opts:
            short.add_ar(EDNS0(udp_len=EDNS_UDP))
        return Answer(bytes(short.pack()), False)
    return Answer(packed, len(packed) <= limit)
