"""Object metadata helpers shared by every layer: timestamps, uids, names and namespaces.

Times are RFC 3339 with second precision in UTC (`2026-11-25T18:00:00Z`), as metav1.Time
serializes; MicroTime (leases, events.k8s.io) has microseconds.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]


def now() -> datetime:
    return datetime.now(UTC)


def format_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_last_second: tuple[int, str] = (-1, "")  # (whole second, its RFC 3339 text), replaced as one value


def now_rfc3339() -> str:
    # Every write stamps this (creationTimestamp, managedFields time); at thousands per second the
    # text changes once a second, so it is formatted once a second.
    global _last_second
    second = int(time.time())
    last = _last_second
    if second != last[0]:
        last = _last_second = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return last[1]


def parse_time(value: str) -> datetime | None:
    """Parse an RFC 3339 time (with Z or an offset, with or without fractions); None if invalid."""
    try:
        text = value.replace("Z", "+00:00")
        if "." in text:
            head, _, rest = text.partition(".")
            digits = "".join(c for c in rest if c.isdigit())
            tz = rest[len(digits):]
            text = f"{head}.{digits[:6].ljust(6, '0')}{tz}"
        t = datetime.fromisoformat(text)
    except (ValueError, AttributeError):
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


_UID_BATCH = 256
_random_pool = bytearray()
_random_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _random_lock
    _random_pool.clear()  # a forked child must never hand out the parent's bytes again
    _random_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def new_uid() -> str:
    """A random (version 4) UUID, as uuid.uuid4() makes, from kernel randomness fetched 4 KiB at a
    time: one getrandom call per 256 uids instead of one each (a call that also hands the GIL to
    the storage writer thread on every create)."""
    pool = _random_pool
    with _random_lock:
        if not pool:
            pool += os.urandom(16 * _UID_BATCH)
        b = pool[-16:]
        del pool[-16:]
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def metadata(obj: Obj) -> Obj:
    md = obj.get("metadata")
    if not isinstance(md, dict):
        md = {}
        obj["metadata"] = md
    return md


def name_of(obj: Obj) -> str:
    md = obj.get("metadata")
    if isinstance(md, dict):
        name = md.get("name")
        if isinstance(name, str):
            return name
    return ""


def namespace_of(obj: Obj) -> str:
    md = obj.get("metadata")
    if isinstance(md, dict):
        ns = md.get("namespace")
        if isinstance(ns, str):
            return ns
    return ""


def labels_of(obj: Obj) -> dict[str, str]:
    md = obj.get("metadata")
    if isinstance(md, dict):
        labels = md.get("labels")
        if isinstance(labels, dict):
            return labels
    return {}
