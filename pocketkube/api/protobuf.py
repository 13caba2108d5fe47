"""Decode Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into JSON dicts.

kubectl's imperative commands (`kubectl create configmap|deployment|...`) and every client-go typed
client send protobuf. The rest of pocketkube speaks JSON, so the HTTP layer turns such a body into
the dict a JSON client would have sent, and from there nothing knows the difference.

Wire format (k8s.io/apimachinery/pkg/runtime/serializer/protobuf): the magic `k8s\\x00`, then a
`runtime.Unknown` {typeMeta=1 {apiVersion=1, kind=2}, raw=2, contentEncoding=3, contentType=4}
whose `raw` is the proto2 (gogo) encoding of the versioned Go type. Field numbers, JSON names and
kinds come from `proto_schema.json` (built from the upstream generated.proto files), one row per
field: [number, json name, kind, type, flags]. Kinds: s string, y bytes, i varint int, b bool,
d double, m message (type = full name), x special (time, microtime, intstr, quantity, duration,
raw, jsp_or_array, jsp_or_bool, jsp_or_strarray). Flags: r repeated, M map<string, kind>, I inlined
into the parent (Go `json:",inline"`), z keep a zero scalar (pointer or not omitempty in Go),
p keep an empty message (pointer in Go, e.g. `emptyDir: {}`), o drop an empty message. The z/p/o
flags were measured by feeding kubectl v1.32 zero-valued objects and reading back its JSON (Go's
pointers and omitempty tags), so they are facts about the Go types, not guesses.

gogo writes every non-pointer Go field even when empty, so zero scalars and empty structs are
dropped unless the schema says Go would have kept them: the result equals what a user would write
in YAML. Responses stay JSON; this module only decodes.
"""

from __future__ import annotations

import base64
import functools
import os
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from pocketkube.api.errors import BadRequest
from pocketkube.api.resources import BUILTIN_RESOURCES

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAX_BODY = 16 * 1024 * 1024
MAX_DEPTH = 100

Row = tuple[int, str, str, str, str]
Schema = dict[str, dict[int, Row]]

_META = "k8s.io.apimachinery.pkg.apis.meta.v1"
_PACKAGES = {
    "": "k8s.io.api.core",
    "apps": "k8s.io.api.apps",
    "batch": "k8s.io.api.batch",
    "autoscaling": "k8s.io.api.autoscaling",
    "policy": "k8s.io.api.policy",
    "coordination.k8s.io": "k8s.io.api.coordination",
    "discovery.k8s.io": "k8s.io.api.discovery",
    "events.k8s.io": "k8s.io.api.events",
    "networking.k8s.io": "k8s.io.api.networking",
    "rbac.authorization.k8s.io": "k8s.io.api.rbac",
    "scheduling.k8s.io": "k8s.io.api.scheduling",
    "storage.k8s.io": "k8s.io.api.storage",
    "apiextensions.k8s.io": "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions",
    "authorization.k8s.io": "k8s.io.api.authorization",
    "authentication.k8s.io": "k8s.io.api.authentication",
    "meta.k8s.io": "k8s.io.apimachinery.pkg.apis.meta",
}
# Kinds any group version may carry (client-go encodes DeleteOptions with the resource's version).
_META_KINDS = frozenset({"DeleteOptions", "Status"})
# Request bodies of subresources, besides the kinds of BUILTIN_RESOURCES.
_SUBRESOURCE_KINDS = frozenset({("autoscaling/v1", "Scale"), ("policy/v1", "Eviction"), ("v1", "Binding")})


@functools.cache
def schema() -> Schema:
    """Message full name -> field number -> row, loaded once from proto_schema.json."""
    path = os.path.join(os.path.dirname(__file__), "proto_schema.json")
    with open(path, "rb") as f:
        raw: dict[str, list[list[Any]]] = orjson.loads(f.read())
    return {
        name: {int(r[0]): (int(r[0]), r[1], r[2], r[3], r[4]) for r in rows} for name, rows in raw.items()
    }


@functools.cache
def _top_level() -> frozenset[tuple[str, str]]:
    return frozenset((r.api_version, r.kind) for r in BUILTIN_RESOURCES) | _SUBRESOURCE_KINDS


def message_for(api_version: str, kind: str) -> str | None:
    """Full proto message name of a request body's kind; None for kinds no request carries."""
    group, _, version = api_version.rpartition("/")
    package = _PACKAGES.get(group)
    if package is None or not version:
        return None
    if kind in _META_KINDS:
        return f"{_META}.{kind}"
    name = f"{package}.{version}.{kind}"
    if (api_version, kind) in _top_level() and name in schema():
        return name
    return None


def decode_k8s_protobuf(body: bytes) -> dict[str, Any]:
    """The JSON object a protobuf request body stands for, `apiVersion` and `kind` included.

    Raises BadRequest (never anything else) on a missing magic, malformed wire data, an unknown
    kind, or an envelope that declares another encoding.
    """
    try:
        return _decode(body, 0)
    except BadRequest:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as e:
        raise BadRequest(f"invalid protobuf body: {e}") from e


def _decode(body: bytes, depth: int) -> dict[str, Any]:
    if len(body) > MAX_BODY:
        raise BadRequest(f"protobuf body larger than {MAX_BODY} bytes")
    if not body.startswith(MAGIC):
        raise BadRequest("protobuf body does not start with the Kubernetes magic prefix 'k8s\\x00'")
    envelope = _fields(memoryview(body)[len(MAGIC) :])
    api_version = kind = ""
    raw = b""
    for num, wire, value in envelope:
        if num == 1 and wire == 2:
            for tnum, twire, tvalue in _fields(_view(value)):
                if tnum == 1 and twire == 2:
                    api_version = _text(tvalue)
                elif tnum == 2 and twire == 2:
                    kind = _text(tvalue)
        elif num == 2 and wire == 2:
            raw = bytes(_view(value))
        elif num == 3 and wire == 2 and _text(value):
            raise BadRequest(f"unsupported protobuf contentEncoding {_text(value)!r}")
        elif num == 4 and wire == 2 and _text(value) not in ("", CONTENT_TYPE):
            raise BadRequest(f"unsupported protobuf contentType {_text(value)!r}")
    if not api_version or not kind:
        raise BadRequest("protobuf envelope has no apiVersion or kind")
    message = message_for(api_version, kind)
    if message is None:
        raise BadRequest(f"protobuf decoding is not supported for {kind} in {api_version}")
    obj = _message(memoryview(raw), message, depth)
    return {"apiVersion": api_version, "kind": kind, **obj}


# ---- wire format ----------------------------------------------------------------------------


def _view(value: int | memoryview) -> memoryview:
    if isinstance(value, int):
        raise BadRequest("protobuf field has the wrong wire type")
    return value


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    for i in range(10):
        if pos + i >= len(buf):
            raise BadRequest("truncated protobuf varint")
        b = buf[pos + i]
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos + i + 1
        shift += 7
    raise BadRequest("protobuf varint longer than 10 bytes")


def _fields(buf: memoryview) -> list[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value): an int for varint/fixed, a view for length-delimited."""
    out: list[tuple[int, int, int | memoryview]] = []
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if num == 0 or num > 0x1FFFFFFF:
            raise BadRequest(f"invalid protobuf field number {num}")
        value: int | memoryview
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            if pos + 8 > end:
                raise BadRequest("truncated protobuf fixed64")
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 5:
            if pos + 4 > end:
                raise BadRequest("truncated protobuf fixed32")
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if length > end - pos:
                raise BadRequest("protobuf length-delimited field runs past the end of its message")
            value, pos = buf[pos : pos + length], pos + length
        else:
            raise BadRequest(f"unsupported protobuf wire type {wire}")
        out.append((num, wire, value))
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _text(value: int | memoryview) -> str:
    try:
        return bytes(_view(value)).decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest("protobuf string field is not valid UTF-8") from e


def _scalars(kind: str, wire: int, value: int | memoryview) -> list[Any]:
    """One or more scalar values (several when a repeated field is packed)."""
    if kind in ("i", "b"):
        if wire == 0:
            ints = [value]
        elif wire == 2:
            buf, pos, ints = _view(value), 0, []
            while pos < len(buf):
                v, pos = _varint(buf, pos)
                ints.append(v)
        else:
            raise BadRequest("protobuf integer field has the wrong wire type")
        return [bool(v) if kind == "b" else _signed(int(v)) for v in ints]
    if kind == "d":
        if wire == 1:
            raw = int(value).to_bytes(8, "little") if isinstance(value, int) else b""
        elif wire == 2 and len(_view(value)) % 8 == 0:
            raw = bytes(_view(value))
        else:
            raise BadRequest("protobuf double field has the wrong wire type")
        return [_number(d) for (d,) in struct.iter_unpack("<d", raw)]
    if wire != 2:
        raise BadRequest("protobuf string field has the wrong wire type")
    if kind == "s":
        return [_text(value)]
    return [base64.b64encode(bytes(_view(value))).decode("ascii")]


def _number(d: float) -> float | int:
    if d != d or d in (float("inf"), float("-inf")):
        raise BadRequest("protobuf double is not a finite number")
    return int(d) if d.is_integer() and abs(d) < 2**53 else d  # Go writes 1.0 as 1


# ---- messages -------------------------------------------------------------------------------


_ZERO: dict[str, Any] = {"s": "", "y": "", "i": 0, "b": False, "d": 0}


def _message(buf: memoryview, name: str, depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise BadRequest(f"protobuf message nested deeper than {MAX_DEPTH}")
    rows = schema().get(name)
    if rows is None:
        raise BadRequest(f"no protobuf schema for {name}")
    out: dict[str, Any] = {}
    inlined: list[dict[str, Any]] = []
    for num, wire, value in _fields(buf):
        row = rows.get(num)
        if row is None:
            continue  # a field newer than our table: ignore it, as Go would
        _, key, kind, typ, flags = row
        if "M" in flags:
            entry_key, entry_value = _map_entry(value, kind, typ, depth)
            out.setdefault(key, {})[entry_key] = entry_value
        elif "r" in flags:
            items = out.setdefault(key, [])
            if kind in _ZERO:
                items.extend(_scalars(kind, wire, value))
            else:
                items.append(_null(_value(kind, typ, value, depth)))
        elif "I" in flags:
            inlined.append(_message(_view(value), typ, depth + 1))
        elif kind in _ZERO:
            out[key] = _scalars(kind, wire, value)[-1]
        else:
            out[key] = _value(kind, typ, value, depth)
    for fields in inlined:
        for k, v in fields.items():
            out.setdefault(k, v)
    return _prune(out, rows)


def _map_entry(value: int | memoryview, kind: str, typ: str, depth: int) -> tuple[str, Any]:
    key = ""
    result: Any = _ZERO.get(kind)
    seen = False
    for num, wire, v in _fields(_view(value)):
        if num == 1:
            key = _text(v)
        elif num == 2:
            seen = True
            result = _scalars(kind, wire, v)[-1] if kind in _ZERO else _null(_value(kind, typ, v, depth))
    if not seen and kind not in _ZERO:
        result = _null(_value(kind, typ, memoryview(b""), depth))
    return key, result


def _value(kind: str, typ: str, value: int | memoryview, depth: int) -> Any:
    buf = _view(value)
    if kind == "m":
        return _message(buf, typ, depth + 1)
    return _special(typ, buf, depth + 1)


_EMPTY = object()  # a special value Go would write as null


def _null(value: Any) -> Any:
    return None if value is _EMPTY else value


def _prune(out: dict[str, Any], rows: dict[int, Row]) -> dict[str, Any]:
    """Drop what Go's encoding/json would not have written for a user-built object."""
    by_key = {r[1]: r for r in rows.values()}
    for key in list(out):
        row = by_key.get(key)
        if row is None:
            continue  # came from an inlined message, already pruned there
        _, _, kind, typ, flags = row
        value = out[key]
        if "r" in flags or "M" in flags:
            if not value:
                del out[key]
            continue
        if value is _EMPTY:
            del out[key]
        elif kind in _ZERO:
            if value == _ZERO[kind] and "z" not in flags:
                del out[key]
        elif kind == "m":
            if not value and ("o" in flags or ("p" not in flags and key in _NON_POINTER_NAMES)):
                del out[key]
        elif "p" not in flags and (
            (typ == "intstr" and value in (0, "")) or (typ == "quantity" and value == "0")
        ):
            del out[key]  # by-value IntOrString / Quantity left unset
    return out


# Struct fields that Go holds by value; an empty one carries no meaning (`status: {}`).
_NON_POINTER_NAMES = frozenset(
    {"metadata", "spec", "status", "template", "strategy", "updateStrategy", "resources"}
)


# ---- special types --------------------------------------------------------------------------


def _special(typ: str, buf: memoryview, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise BadRequest(f"protobuf message nested deeper than {MAX_DEPTH}")
    if typ in ("time", "microtime"):
        return _time(buf, micro=typ == "microtime")
    fields = _fields(buf)
    if typ == "intstr":
        int_or_str, int_val, str_val = 0, 0, ""
        for num, wire, v in fields:
            if num == 1 and wire == 0:
                int_or_str = _signed(int(v))
            elif num == 2 and wire == 0:
                int_val = _signed(int(v))
            elif num == 3 and wire == 2:
                str_val = _text(v)
        return str_val if int_or_str == 1 else int_val
    if typ == "quantity":
        text = "".join(_text(v) for num, wire, v in fields if num == 1 and wire == 2)
        return text or "0"
    if typ == "duration":
        ns = next((_signed(int(v)) for num, wire, v in fields if num == 1 and wire == 0), 0)
        return go_duration(ns)
    if typ == "raw":
        raw = b"".join(bytes(_view(v)) for num, wire, v in fields if num == 1)
        if not raw:
            return _EMPTY
        if raw.startswith(MAGIC):
            return _decode(raw, depth + 1)  # an embedded object in protobuf
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise BadRequest("protobuf raw extension does not hold JSON") from e
    if typ == "jsp_or_array":
        props = f"{_APIEXT}.JSONSchemaProps"
        schemas = [_message(_view(v), props, depth) for num, _, v in fields if num == 2]
        if schemas:
            return schemas
        found = [_message(_view(v), props, depth) for num, _, v in fields if num == 1]
        return found[-1] if found else _EMPTY
    if typ == "jsp_or_bool":
        props = f"{_APIEXT}.JSONSchemaProps"
        found = [_message(_view(v), props, depth) for num, _, v in fields if num == 2]
        if found:
            return found[-1]
        return any(bool(v) for num, wire, v in fields if num == 1 and wire == 0)
    if typ == "jsp_or_strarray":
        props = f"{_APIEXT}.JSONSchemaProps"
        strings = [_text(v) for num, _, v in fields if num == 2]
        if strings:
            return strings
        found = [_message(_view(v), props, depth) for num, _, v in fields if num == 1]
        return found[-1] if found else _EMPTY
    raise BadRequest(f"unknown special protobuf type {typ}")


_APIEXT = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(buf: memoryview, *, micro: bool) -> Any:
    """metav1.Time (seconds; an empty message is Go's zero time, i.e. null) or MicroTime."""
    if not len(buf):
        return _EMPTY
    seconds = nanos = 0
    for num, wire, v in _fields(buf):
        if num == 1 and wire == 0:
            seconds = _signed(int(v))
        elif num == 2 and wire == 0:
            nanos = _signed(int(v))
    if not 0 <= nanos < 1_000_000_000:
        raise BadRequest("protobuf timestamp nanos out of range")
    try:
        when = _EPOCH + timedelta(seconds=seconds)
    except OverflowError as e:
        raise BadRequest("protobuf timestamp out of range") from e
    if not micro:
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1000:06d}Z"


def go_duration(ns: int) -> str:
    """Go's time.Duration.String(): 1h2m3.5s, 1.5ms, 0s."""
    if ns == 0:
        return "0s"
    sign, u = ("-", -ns) if ns < 0 else ("", ns)
    if u < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if u >= size or unit == "ns":
                return sign + _frac(u, size) + unit
    hours, rest = divmod(u, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _frac(rest, 1_000_000_000) + "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return sign + text


def _frac(value: int, size: int) -> str:
    whole, part = divmod(value, size)
    if not part:
        return str(whole)
    digits = f"{part:0{len(str(size)) - 1}d}".rstrip("0")
    return f"{whole}.{digits}"
