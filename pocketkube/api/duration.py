"""Human-readable durations and ages, exactly as kubectl and the API server's tables print them.

Mirrors k8s.io/apimachinery/pkg/util/duration (`HumanDuration`, `ShortHumanDuration`) and the
printers' `translateTimestampSince`, so the AGE column, a pod's RESTARTS "(5m ago)" suffix and a
job's DURATION read the same as on a real cluster. Pure: every "since" takes `now` explicitly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

UNKNOWN = "<unknown>"
INVALID = "<invalid>"


def _seconds(d: timedelta | float) -> float:
    return d.total_seconds() if isinstance(d, timedelta) else float(d)


def human_duration(d: timedelta | float) -> str:
    """~2-3 significant figures: 5s, 119s, 3m20s, 15m, 2h5m, 10h, 2d3h, 30d, 2y45d, 9y."""
    secs = _seconds(d)
    whole = int(secs)  # Go truncates toward zero, so -0.9s still counts as "now"
    if whole < -1:
        return INVALID
    if whole < 0:
        return "0s"
    if whole < 60 * 2:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        s = whole % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if dy == 0 else f"{years}y{dy}d"
    return f"{hours // 24 // 365}y"


def short_human_duration(d: timedelta | float) -> str:
    """One unit only: 5s, 3m, 2h, 4d, 1y (kubectl's older, terser form)."""
    secs = _seconds(d)
    whole = int(secs)
    if whole < -1:
        return INVALID
    if whole < 0:
        return "0s"
    if whole < 60:
        return f"{whole}s"
    if whole // 60 < 60:
        return f"{whole // 60}m"
    hours = whole // 3600
    if hours < 24:
        return f"{hours}h"
    if hours < 24 * 365:
        return f"{hours // 24}d"
    return f"{int(secs / 3600 / 24 / 365)}y"


def parse_timestamp(value: object) -> datetime | None:
    """An RFC 3339 API timestamp (Time or MicroTime) as an aware datetime; None when absent or bad."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def since(value: object, now: datetime) -> str:
    """kubectl's `translateTimestampSince`: the age of a timestamp, `<unknown>` when missing."""
    ts = parse_timestamp(value)
    if ts is None:
        return UNKNOWN
    return human_duration(now - ts)


def utc_now() -> datetime:
    return datetime.now(UTC)
