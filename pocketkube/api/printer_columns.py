"""CustomResourceDefinition additionalPrinterColumns: a small JSONPath and kube's cell typing.

The apiextensions server evaluates each column's `jsonPath` with client-go's jsonpath and keeps
the first result (`tableconvertor.go`), then types it by the column's `type`: strings print as
kubectl's jsonpath text, integer/number/boolean pass through as JSON values, `date` becomes an
age. CRD validation only admits "simple" paths, so this supports what they use: `.a.b`, `[0]`,
`[*]`, `['key']` and `[?(@.x.y=="v")]` filters (==, !=, <, <=, >, >=, or bare existence).
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pocketkube.api.duration import INVALID, human_duration, parse_timestamp

_MISSING = object()


class JSONPathError(ValueError):
    """The path is outside the supported subset or malformed."""


@dataclass(frozen=True, slots=True)
class _Field:
    name: str


@dataclass(frozen=True, slots=True)
class _Index:
    index: int


@dataclass(frozen=True, slots=True)
class _Wildcard:
    pass


@dataclass(frozen=True, slots=True)
class _Filter:
    path: tuple[str, ...]
    op: str  # "" for existence
    value: Any


_Step = _Field | _Index | _Wildcard | _Filter

_FILTER_RE = re.compile(
    r"^\?\(\s*@((?:\.[^\s.=!<>()]+)+)\s*(?:(==|!=|<=|>=|<|>)\s*(.+?))?\s*\)$",
)


def _literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise JSONPathError(f"unsupported filter value {text!r}") from e


def _bracket(body: str) -> _Step:
    body = body.strip()
    if body == "*":
        return _Wildcard()
    if len(body) >= 2 and body[0] == body[-1] and body[0] in "'\"":
        return _Field(body[1:-1])
    if re.fullmatch(r"-?\d+", body):
        return _Index(int(body))
    match = _FILTER_RE.match(body)
    if match:
        path = tuple(p for p in match.group(1).split(".") if p)
        op = match.group(2) or ""
        value = _literal(match.group(3)) if op else None
        return _Filter(path, op, value)
    raise JSONPathError(f"unsupported JSONPath segment [{body}]")


def parse(path: str) -> tuple[_Step, ...]:
    """Parse a CRD column path such as `.status.conditions[?(@.type=="Ready")].status`."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text.startswith("$"):
        text = text[1:]
    steps: list[_Step] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == ".":
            i += 1
            name: list[str] = []
            while i < len(text) and text[i] not in ".[":
                if text[i] == "\\" and i + 1 < len(text):
                    i += 1
                name.append(text[i])
                i += 1
            if name:
                field = "".join(name)
                steps.append(_Wildcard() if field == "*" else _Field(field))
        elif ch == "[":
            depth, j, quote = 0, i, ""
            while j < len(text):
                c = text[j]
                if quote:
                    if c == quote:
                        quote = ""
                elif c in "'\"":
                    quote = c
                elif c == "[":
                    depth += 1
                elif c == "]":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if j >= len(text):
                raise JSONPathError(f"unterminated [ in {path!r}")
            steps.append(_bracket(text[i + 1 : j]))
            i = j + 1
        else:
            raise JSONPathError(f"unexpected {ch!r} in {path!r}")
    return tuple(steps)


def _get_path(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _compare(left: Any, op: str, right: Any) -> bool:
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if isinstance(left, bool) or isinstance(right, bool):
        return False
    numbers = isinstance(left, int | float) and isinstance(right, int | float)
    strings = isinstance(left, str) and isinstance(right, str)
    return (numbers or strings) and bool(_ORDER[op](left, right))


def _walk(values: list[Any], step: _Step) -> Iterator[Any]:
    for value in values:
        if isinstance(step, _Field):
            if isinstance(value, dict) and step.name in value:
                yield value[step.name]
        elif isinstance(step, _Index):
            if isinstance(value, list) and -len(value) <= step.index < len(value):
                yield value[step.index]
        elif isinstance(step, _Wildcard):
            if isinstance(value, list):
                yield from value
            elif isinstance(value, dict):
                yield from value.values()
        else:
            items = value if isinstance(value, list) else [value]
            for item in items:
                found = _get_path(item, step.path)
                if found is _MISSING:
                    continue
                if not step.op or _compare(found, step.op, step.value):
                    yield item


def find(obj: Any, steps: tuple[_Step, ...]) -> list[Any]:
    """Every value the path selects, in document order (missing keys select nothing)."""
    values = [obj]
    for step in steps:
        values = list(_walk(values, step))
        if not values:
            break
    return values


def go_float(x: float) -> str:
    """Go's `%v` of a float64: shortest digits, exponent form below 1e-4 or from 1e+06 up."""
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    exact = Decimal(repr(abs(x))).normalize().as_tuple()  # shortest round-trip digits
    digits = "".join(str(n) for n in exact.digits)
    point = len(digits) + int(exact.exponent)  # digits before the decimal point
    exp = point - 1
    if exp < -4 or exp >= 6:
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def go_text(value: Any) -> str:
    """How client-go's jsonpath prints a non-string value: Go's fmt of the decoded JSON."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, list):
        return "[" + " ".join(go_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_text(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def typed_cell(column_type: str, value: Any, now: datetime) -> Any:
    """tableconvertor `cellForJSONValue` (and jsonpath text for "string" columns)."""
    if column_type == "string":
        return go_text(value)
    if value is None:
        return None
    if column_type == "integer":
        if isinstance(value, bool):
            return None
        return int(value) if isinstance(value, int | float) else None
    if column_type == "number":
        if isinstance(value, bool):
            return None
        return float(value) if isinstance(value, int | float) else None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if column_type == "date":
        if not isinstance(value, str):
            return None
        ts = parse_timestamp(value)
        return INVALID if ts is None else human_duration(now - ts)
    return None


@dataclass(frozen=True, slots=True)
class PrinterColumn:
    """One additionalPrinterColumn, parsed once."""

    name: str
    type: str
    json_path: str
    steps: tuple[_Step, ...]
    description: str
    priority: int
    format: str

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> PrinterColumn:
        path = str(spec.get("jsonPath") or spec.get("JSONPath") or "")
        description = str(spec.get("description") or "")
        return cls(
            name=str(spec.get("name") or ""),
            type=str(spec.get("type") or "string"),
            json_path=path,
            steps=parse(path),
            description=description or f"Custom resource definition column (in JSONPath format): {path}",
            priority=int(spec.get("priority") or 0),
            format=str(spec.get("format") or ""),
        )

    def cell(self, obj: dict[str, Any], now: datetime) -> Any:
        results = find(obj, self.steps)
        if not results:
            return None
        return typed_cell(self.type, results[0], now)
