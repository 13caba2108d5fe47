"""The wire-level answer cache in front of the DNS server: a hit is one dict lookup and no parsing.

The key is the query's bytes after its 2-byte ID: header flags (opcode, RD, CD...), the question
with the asker's exact letter case, and any EDNS OPT record. Two queries with the same key get the
same answer but for the ID, so a hit is `query[:2] + stored` (reference/libraries.md §6: 10x
parsing every query). Keying on exact bytes also keeps DNS 0x20 right: the stored answer echoes
the letter case of the question it was made for.

Two tables, because the two kinds of answer age differently:

* `exact` — answers from the cluster zone. They are right until the zone changes, and the zone's
  owner calls `clear()` on every change, so they carry no clock. Their TTLs (5 s, negative answers
  the SOA minimum) are those a fresh answer would carry, which is what a cached one must say.
  Only complete answers that fit the query's UDP size are stored, so an entry is correct over UDP
  and TCP alike.
* `forwarded` — upstream answers, kept for their own lifetime (wire.cache_lifetime, capped at
  `max_ttl` as CoreDNS's `cache 30`), TTLs counted down on every hit, never stored when
  uncacheable. A reverse name outside the zone today may be inside it tomorrow (a new pod IP),
  so `clear()` empties this table too, and `generation` lets a forward that was in flight across
  a change know its answer is no longer wanted.

A query that misses `exact` is tried once more in `folded`, keyed on the same bytes with the
question's name in lowercase: a resolver that randomises letter case on every query (0x20) would
otherwise never hit. The stored reply's question is then overwritten with the asker's own bytes;
dnslib writes the answers' owner names as pointers to the question, so they follow its case too.

All tables are bounded (`limit` entries, ~250 bytes each): when one is full its oldest tenth goes
(dicts keep insertion order), so a flood of unique queries (random EDNS cookies, 0x20 spellings)
costs memory no more than ~5 MB per table at the default and pushes out old entries, not all.
"""

from __future__ import annotations

import itertools
import struct
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from pocketkube.dns import wire

LIMIT = 20_000  # CoreDNS's cache holds 9,984 per kind
MAX_FORWARDED_TTL = 30


class Forwarded(NamedTuple):
    reply: bytes  # without its ID
    stored_at: float
    lifetime: int
    ttl_offsets: tuple[int, ...]  # into `reply`, i.e. 2 less than in the full message


class AnswerCache:
    def __init__(self, *, limit: int = LIMIT, max_ttl: int = MAX_FORWARDED_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # `exact` is never rebound: the UDP hot path holds `exact.get` as a bound method.
        self.exact: dict[bytes, bytes] = {}
        self.folded: dict[bytes, bytes] = {}
        self.forwarded: dict[bytes, Forwarded] = {}
        self.limit = limit
        self.max_ttl = max_ttl
        self.clock = clock
        self.generation = 0

    def clear(self) -> None:
        self.exact.clear()
        self.folded.clear()
        self.forwarded.clear()
        self.generation += 1

    def get(self, query: bytes) -> bytes | None:
        """The cached reply for `query`, with its ID (and forwarded TTLs aged), or None."""
        hit = self.exact.get(query[2:])
        if hit is not None:
            return query[:2] + hit
        end = _name_end(query)
        if end and self.folded:
            hit = self.folded.get(_fold(query, end))
            if hit is not None:  # the asker's ID and question (its letter case), then the answer
                return query[:2] + hit[:10] + query[12:end] + hit[end - 2:]
        if not self.forwarded:
            return None
        entry = self.forwarded.get(query[2:])
        if entry is None:
            return None
        elapsed = int(self.clock() - entry.stored_at)
        if elapsed >= entry.lifetime:
            del self.forwarded[query[2:]]
            return None
        return query[:2] + wire.age_ttls(entry.reply, entry.ttl_offsets, elapsed)

    def put(self, query: bytes, reply: bytes) -> None:
        """Store a zone answer (the caller checked it is complete and fits UDP)."""
        _make_room(self.exact, self.limit)
        self.exact[query[2:]] = reply[2:]
        end = _name_end(query)
        if end and reply[12:end].lower() == query[12:end].lower():
            _make_room(self.folded, self.limit)
            self.folded[_fold(query, end)] = reply[2:]

    def put_forwarded(self, query: bytes, reply: bytes, *, generation: int) -> bool:
        """Store an upstream answer for its lifetime; False when it must not be cached."""
        if generation != self.generation:
            return False  # the zone changed while the query was upstream
        try:
            lifetime = wire.cache_lifetime(reply)
        except (ValueError, IndexError, struct.error):
            return False
        if lifetime is None:
            return False
        seconds, offsets = lifetime
        _make_room(self.forwarded, self.limit)
        self.forwarded[query[2:]] = Forwarded(reply[2:], self.clock(), min(seconds, self.max_ttl),
                                              tuple(off - 2 for off in offsets))
        return True


def _make_room(table: dict[bytes, Any], limit: int) -> None:
    if len(table) >= limit:
        for key in list(itertools.islice(table, max(1, limit // 10))):
            del table[key]


def _name_end(query: bytes) -> int:
    """Where the only question's name ends, or 0 (not one plain question: no folding)."""
    if query[4:6] != b"\x00\x01":
        return 0
    try:
        end = wire.skip_name(query, wire.HEADER)
    except ValueError:
        return 0
    return 0 if query[end - 2] & 0xC0 == 0xC0 else end


def _fold(query: bytes, end: int) -> bytes:
    # only the name: QTYPE/QCLASS bytes may fall in A-Z (QTYPE 65 is 0x0041)
    return query[2:12] + query[12:end].lower() + query[end:]
