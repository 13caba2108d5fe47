"""Label and field selectors, parsed as kube-apiserver parses them and matched against objects.

Label selector grammar (k8s.io/apimachinery/pkg/labels): comma-separated requirements
`k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`; also the structured form
(`matchLabels` / `matchExpressions`) used inside objects. Field selectors
(k8s.io/apimachinery/pkg/fields) allow `f=v`, `f==v`, `f!=v` with backslash escapes; which fields a
resource supports is decided by the API layer (api/field_attrs.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pocketkube.api.errors import BadRequest

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_KEY_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!":
            return self.key not in labels
        present = self.key in labels
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        # "!=" and "notin" match objects without the key too
        return not present or labels[self.key] not in self.values


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()
    match_nothing: bool = False

    def empty(self) -> bool:
        return not self.requirements and not self.match_nothing

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.match_nothing:
            return False
        return all(r.matches(labels) for r in self.requirements)

    def equality_value(self, key: str) -> str | None:
        """The single value `key` must equal, if the selector pins it (used to narrow lookups)."""
        for r in self.requirements:
            if r.key == key and r.op in ("=", "in") and len(r.values) == 1:
                return r.values[0]
        return None


EVERYTHING = LabelSelector()
NOTHING = LabelSelector(match_nothing=True)


def _check_key(key: str) -> None:
    prefix, slash, name = key.rpartition("/")
    if not slash:
        prefix, name = "", key
    if not name or len(name) > 63 or not _KEY_NAME.match(name):
        raise BadRequest(f'unable to parse requirement: invalid label key "{key}": name part must consist of '
                         "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                         "alphanumeric character")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise BadRequest(f'unable to parse requirement: invalid label key "{key}": prefix part must be a '
                         "lowercase RFC 1123 subdomain")


def _check_value(value: str) -> None:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise BadRequest(f'unable to parse requirement: invalid label value: "{value}": a valid label must be '
                         "an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
                         "start and end with an alphanumeric character")


_TOKEN = re.compile(r"\s*(\(|\)|,|!=|==|=|!|[^\s(),!=]+)")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse the `labelSelector` query parameter; BadRequest with kube's wording on errors."""
    if not text or not text.strip():
        return EVERYTHING
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            if text[pos:].strip() == "":
                break
            raise BadRequest(f"unable to parse requirement: unexpected character in {text!r}")
        tokens.append(m.group(1))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    reqs: list[Requirement] = []
    i = 0

    def need(tok: str | None = None) -> str:
        nonlocal i
        if i >= len(tokens):
            raise BadRequest(f"unable to parse requirement: unexpected end of selector {text!r}")
        t = tokens[i]
        if tok is not None and t != tok:
            raise BadRequest(f"unable to parse requirement: expected {tok!r} but found {t!r} in {text!r}")
        i += 1
        return t

    while i < len(tokens):
        if tokens[i] == "!":
            i += 1
            key = need()
            _check_key(key)
            reqs.append(Requirement(key, "!"))
        else:
            key = need()
            if key in ("(", ")", ",", "=", "==", "!="):
                raise BadRequest(f"unable to parse requirement: found {key!r}, expected: identifier")
            _check_key(key)
            if i >= len(tokens) or tokens[i] == ",":
                reqs.append(Requirement(key, "exists"))
            else:
                op = need()
                if op in ("=", "==", "!="):
                    value = tokens[i] if i < len(tokens) and tokens[i] not in (",", "(", ")") else ""
                    if value:
                        i += 1
                    _check_value(value)
                    reqs.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
                elif op in ("in", "notin"):
                    need("(")
                    values: list[str] = []
                    while True:
                        if i < len(tokens) and tokens[i] == ")":
                            i += 1
                            break
                        v = need()
                        if v == ",":
                            continue
                        if v in ("(", "="):
                            raise BadRequest(f"unable to parse requirement: unexpected {v!r} in {text!r}")
                        _check_value(v)
                        values.append(v)
                    if not values:
                        raise BadRequest(f"unable to parse requirement: for 'in', 'notin' operators, values "
                                         f"set can't be empty in {text!r}")
                    reqs.append(Requirement(key, op, tuple(values)))
                else:
                    raise BadRequest(f"unable to parse requirement: found {op!r}, expected: "
                                     "in, notin, =, ==, !=, gt, lt")
        if i < len(tokens):
            need(",")
    return LabelSelector(tuple(reqs))


def selector_from_spec(spec: Mapping[str, Any] | None) -> LabelSelector:
    """Convert a structured metav1.LabelSelector. None matches nothing, {} matches everything."""
    if spec is None:
        return NOTHING
    reqs: list[Requirement] = []
    for k, v in sorted((spec.get("matchLabels") or {}).items()):
        reqs.append(Requirement(str(k), "=", (str(v),)))
    for expr in spec.get("matchExpressions") or []:
        op = str(expr.get("operator", ""))
        key = str(expr.get("key", ""))
        values = tuple(str(v) for v in expr.get("values") or [])
        mapped = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(op)
        if mapped is None:
            raise BadRequest(f"{op!r} is not a valid label selector operator")
        reqs.append(Requirement(key, mapped, values))
    return LabelSelector(tuple(reqs))


def format_selector(spec: Mapping[str, Any] | None) -> str:
    """Render a structured selector as text (`app=web,tier in (a,b)`), as kubectl shows it."""
    if not spec:
        return "<none>" if spec is None else ""
    parts = [f"{k}={v}" for k, v in sorted((spec.get("matchLabels") or {}).items())]
    for expr in spec.get("matchExpressions") or []:
        op = expr.get("operator")
        key = expr.get("key")
        vals = ",".join(expr.get("values") or [])
        if op == "In":
            parts.append(f"{key} in ({vals})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({vals})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    op: str  # "=" or "!="
    value: str


@dataclass(frozen=True, slots=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def empty(self) -> bool:
        return not self.requirements

    def matches(self, fields: Mapping[str, str]) -> bool:
        for r in self.requirements:
            actual = fields.get(r.field, "")
            if (actual == r.value) != (r.op == "="):
                return False
        return True

    def fields(self) -> set[str]:
        return {r.field for r in self.requirements}

    def equality_value(self, field: str) -> str | None:
        for r in self.requirements:
            if r.field == field and r.op == "=":
                return r.value
        return None


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if c == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise BadRequest(f"invalid field selector: invalid escape sequence in {value!r}")
            out.append(value[i + 1])
            i += 2
            continue
        if c in ",=":
            raise BadRequest(f"invalid field selector: unescaped {c!r} in value {value!r}")
        out.append(c)
        i += 1
    return "".join(out)


def parse_field_selector(text: str | None) -> FieldSelector:
    if not text or not text.strip():
        return FieldSelector()
    reqs: list[FieldRequirement] = []
    for part in _split_unescaped(text, ","):
        part = part.strip()
        if not part:
            continue
        for op in ("!=", "==", "="):
            idx = _find_unescaped(part, op)
            if idx >= 0:
                field, value = part[:idx].strip(), part[idx + len(op):].strip()
                if not field:
                    raise BadRequest(f"invalid field selector: {part!r}: field name is empty")
                reqs.append(FieldRequirement(field, "!=" if op == "!=" else "=", _unescape(value)))
                break
        else:
            raise BadRequest(f"invalid selector: '{part}'; can't understand '{part}'")
    return FieldSelector(tuple(reqs))


def _find_unescaped(text: str, op: str) -> int:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(op, i):
            if op == "=" and i > 0 and text[i - 1] == "!":
                i += 1
                continue
            return i
        i += 1
    return -1
