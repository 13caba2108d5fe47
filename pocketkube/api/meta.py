"""Object metadata helpers shared by every layer: timestamps, uids, names and namespaces.

Times are RFC 3339 with second precision in UTC (`2026-11-25T18:00:00Z`), as metav1.Time
serializes; MicroTime (leases, events.k8s.io) has microseconds.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]


def now() -> datetime:
    return datetime.now(UTC)


def format_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_rfc3339() -> str:
    return format_time(now())


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


def new_uid() -> str:
    return str(uuid.uuid4())


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
