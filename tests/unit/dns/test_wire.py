"""wire.py on messages packed by dnslib: how long an upstream answer may be cached, TTL ageing
that leaves OPT alone, and malformed messages raising ValueError instead of reading past the end."""

from __future__ import annotations

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, SOA, A, DNSRecord

from pocketkube.dns import wire


def reply(*, rcode: int = RCODE.NOERROR, ttls: tuple[int, ...] = (), soa: tuple[int, int] | None = None,
          edns: bool = False, tc: bool = False) -> bytes:
    r = DNSRecord.question("x.example", "A").reply()
    r.header.rcode = rcode
    r.header.tc = int(tc)
    for i, ttl in enumerate(ttls):
        r.add_answer(RR("x.example", QTYPE.A, rdata=A(f"192.0.2.{i + 1}"), ttl=ttl))
    if soa:
        r.add_auth(RR("example", QTYPE.SOA, ttl=soa[0], rdata=SOA("ns.example", "h.example", (1, 2, 3, 4, soa[1]))))
    if edns:
        r.add_ar(EDNS0(udp_len=1232, flags="do"))
    return bytes(r.pack())


def seconds(message: bytes) -> int | None:
    lifetime = wire.cache_lifetime(message)
    return None if lifetime is None else lifetime[0]


def test_positive_answer_lives_for_its_smallest_ttl() -> None:
    lifetime = wire.cache_lifetime(reply(ttls=(300, 60, 120), edns=True))
    assert lifetime is not None and lifetime[0] == 60 and len(lifetime[1]) == 3  # OPT's flags are no TTL


def test_negative_answer_lives_for_the_soa_minimum() -> None:
    assert seconds(reply(rcode=RCODE.NXDOMAIN, soa=(3600, 15))) == 15
    assert seconds(reply(soa=(10, 900))) == 10  # NODATA: the smaller is the SOA's TTL
    assert wire.cache_lifetime(reply(rcode=RCODE.NXDOMAIN)) is None  # no SOA, no negative caching


@pytest.mark.parametrize("message", [reply(ttls=(0,)), reply(rcode=RCODE.SERVFAIL), reply(ttls=(60,), tc=True),
                                     reply(rcode=RCODE.REFUSED, soa=(60, 60))])
def test_uncacheable(message: bytes) -> None:
    assert wire.cache_lifetime(message) is None


def test_ageing_lowers_every_ttl_but_not_opt() -> None:
    message = reply(ttls=(300, 5), soa=(60, 30), edns=True)
    lifetime = wire.cache_lifetime(message)
    assert lifetime is not None
    aged = DNSRecord.parse(wire.age_ttls(message, lifetime[1], 10))
    assert [rr.ttl for rr in aged.rr] == [290, 0] and aged.auth[0].ttl == 50
    assert aged.ar[0].ttl == DNSRecord.parse(message).ar[0].ttl  # the DO flag survives


@pytest.mark.parametrize("cut", [5, 14, 30, -3])
def test_malformed_raises_value_error(cut: int) -> None:
    with pytest.raises(ValueError):
        wire.records(reply(ttls=(60,))[:cut])


def test_compression_loop_is_not_followed() -> None:
    looped = bytes(DNSRecord.question("x.example").pack())[:12] + b"\xc0\x0c\x00\x01\x00\x01"
    assert wire.question_end(looped) == len(looped)  # pointers are skipped, never chased
