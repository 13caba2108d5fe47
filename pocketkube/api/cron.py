"""Five-field cron schedules as Kubernetes CronJobs read them (robfig/cron v3 ParseStandard).

Validation uses `parse_schedule` for its error messages (the same text kube-apiserver returns);
the CronJob controller uses `Schedule.next_after` to find when to run next.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

_BOUNDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("dom", 1, 31, None),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}),
    ("dow", 0, 6, {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}),
)
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class CronError(ValueError):
    """The schedule does not parse; str() is robfig/cron's message."""


@dataclass(frozen=True, slots=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 = Sunday
    dom_star: bool  # a '*' day field does not restrict; otherwise dom and dow are OR-ed
    dow_star: bool
    every: dt.timedelta | None = None  # "@every 1h30m"

    def _day_matches(self, day: dt.date) -> bool:
        dom = day.day in self.days_of_month
        dow = (day.isoweekday() % 7) in self.days_of_week
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        """The first activation strictly after `after` (minute resolution), None if none in 5 years."""
        if self.every is not None:
            step = max(self.every, dt.timedelta(seconds=1))
            return after.replace(microsecond=0) + step
        start = after.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        day = start.date()
        for _ in range(366 * 5):
            if day.month in self.months and self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = dt.datetime.combine(day, dt.time(hour, minute), tzinfo=after.tzinfo)
                        if candidate >= start:
                            return candidate
            day += dt.timedelta(days=1)
        return None


def _parse_int(expr: str) -> int:
    body = expr[1:] if expr[:1] in ("+", "-") else expr
    if not (body.isascii() and body.isdigit()):
        raise CronError(f'failed to parse int from {expr}: strconv.Atoi: parsing "{expr}": invalid syntax')
    num = int(expr)
    if num < 0:
        raise CronError(f"negative number ({num}) not allowed: {expr}")
    return num


def _parse_int_or_name(expr: str, names: dict[str, int] | None) -> int:
    if names and expr.lower() in names:
        return names[expr.lower()]
    return _parse_int(expr)


def _parse_range(expr: str, low: int, high: int, names: dict[str, int] | None) -> tuple[set[int], bool]:
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    star = False
    if low_and_high[0] in ("*", "?"):
        start, end, star = low, high, True
    else:
        start = _parse_int_or_name(low_and_high[0], names)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _parse_int_or_name(low_and_high[1], names)
        else:
            raise CronError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _parse_int(range_and_step[1])
        if len(low_and_high) == 1:
            end = high  # "N/step" means "N-max/step"
        if step > 1:
            star = False
    else:
        raise CronError(f"too many slashes: {expr}")
    if start < low:
        raise CronError(f"beginning of range ({start}) below minimum ({low}): {expr}")
    if end > high:
        raise CronError(f"end of range ({end}) above maximum ({high}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"step of range should be a positive number: {expr}")
    return set(range(start, end + 1, step)), star


def _parse_duration(text: str) -> dt.timedelta:
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total, rest = 0.0, text
    if not rest:
        raise CronError(f'failed to parse duration {text}: time: invalid duration "{text}"')
    while rest:
        i = 0
        while i < len(rest) and (rest[i].isdigit() or rest[i] == "."):
            i += 1
        j = i
        while j < len(rest) and not (rest[j].isdigit() or rest[j] == "."):
            j += 1
        number, unit = rest[:i], rest[i:j]
        if not number or unit not in units:
            raise CronError(f'failed to parse duration {text}: time: invalid duration "{text}"')
        total += float(number) * units[unit]
        rest = rest[j:]
    return dt.timedelta(seconds=total)


def parse_schedule(spec: str) -> Schedule:
    if not spec:
        raise CronError("empty spec string")
    if spec.startswith(("TZ=", "CRON_TZ=")):
        _, _, spec = spec.partition(" ")
        spec = spec.strip()
    if spec.startswith("@"):
        if spec.startswith("@every "):
            every = _parse_duration(spec[len("@every "):].strip())
            full = frozenset[int]()
            return Schedule(full, full, full, full, full, True, True, every=every)
        if spec not in _DESCRIPTORS:
            raise CronError(f"unrecognized descriptor: {spec}")
        spec = _DESCRIPTORS[spec]
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    sets: list[frozenset[int]] = []
    stars: list[bool] = []
    for text, (_, low, high, names) in zip(fields, _BOUNDS, strict=True):
        values: set[int] = set()
        star = False
        for part in text.split(","):
            part_values, part_star = _parse_range(part, low, high, names)
            values |= part_values
            star = star or part_star
        sets.append(frozenset(values))
        stars.append(star)
    return Schedule(sets[0], sets[1], sets[2], sets[3], sets[4], dom_star=stars[2], dow_star=stars[4])


def schedule_error(spec: str) -> str | None:
    try:
        parse_schedule(spec)
    except CronError as e:
        return str(e)
    return None
