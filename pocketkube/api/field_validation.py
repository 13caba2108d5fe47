"""Server-side field validation (`fieldValidation=Strict|Warn|Ignore`) against the real schemas.

kubectl's default `--validate=strict` sends `fieldValidation=Strict` and trusts the server to
reject fields the schema does not know (kube-apiserver: 400 `strict decoding error: unknown field
"spec.foo"`) and duplicate JSON keys; with `Warn` the same texts come back as `Warning: 299`
headers. Wrong JSON types fail decoding in every mode. This module walks an object next to its
schema (api/schema.py's JSON Schema, or a CRD's openAPIV3Schema completed by
`custom_resource_schema`) and reports problems with kube's paths (`spec.containers[0].foo`) and
message wording. It only reports; the handlers decide what to do with the findings.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pocketkube.api import schema as k8s_schema

Schema = dict[str, Any]

OBJECT_META_REF = "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_EMBEDDED_KEYS = {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                  "metadata": {"$ref": OBJECT_META_REF}}


@dataclass
class FieldProblems:
    """What one walk found: unknown field paths and (path, message) type errors, in order."""

    unknown: list[str] = field(default_factory=list)
    type_errors: list[tuple[str, str]] = field(default_factory=list)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _go_json_type(value: Any) -> str:
    """encoding/json's word for a JSON value in "cannot unmarshal <x> into …"."""
    t = _json_type(value)
    if t in ("integer", "number"):
        return "number" if t == "integer" else f"number {value!r}"
    return {"boolean": "bool"}.get(t, t)


def allowed_types(schema: Schema) -> set[str]:
    """JSON types a (resolved) schema accepts; empty means anything (int-or-string handled)."""
    if schema.get("x-kubernetes-int-or-string"):
        return {"integer", "string"}
    types = k8s_schema.types_of(schema)
    if not types:
        for key in ("oneOf", "anyOf"):
            for branch in schema.get(key) or ():
                if isinstance(branch, dict):
                    types |= k8s_schema.types_of(k8s_schema.resolve(branch))
    return types


def _type_ok(value: Any, types: set[str]) -> bool:
    t = _json_type(value)
    if t == "null" or not types or t in types:
        return True
    return t == "integer" and "number" in types


def _go_type(schema: Schema) -> str:
    """A Go-ish spelling of a field's type, for decode error messages."""
    name = k8s_schema.ref_name(schema)
    if name is None and isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
        name = k8s_schema.ref_name(schema["allOf"][0])
    resolved = k8s_schema.resolve(schema)
    types = allowed_types(resolved)
    if name and ("object" in types or not types):
        parts = name.split(".")
        return f"{parts[-2]}.{parts[-1]}" if len(parts) > 1 else name
    if "array" in types:
        items = resolved.get("items")
        return "[]" + (_go_type(items) if isinstance(items, dict) else "interface {}")
    if "object" in types:
        extra = resolved.get("additionalProperties")
        return "map[string]" + (_go_type(extra) if isinstance(extra, dict) else "interface {}")
    if "integer" in types:
        return str(resolved.get("format") or "int64")
    return {"number": "float64", "boolean": "bool", "string": "string"}.get(min(types) if types else "",
                                                                            "interface {}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_TYPE_NAMES: dict[type, str] = {bool: "boolean", int: "integer", float: "number", str: "string",
                                list: "array", dict: "object", type(None): "null"}


class _Node:
    """What the walk needs of one schema, worked out once (see `_Walker.node`)."""

    __slots__ = ("extra", "free", "had_ref", "items", "preserve", "props", "ref_owner", "resolved", "types")

    def __init__(self, schema: Schema) -> None:
        self.had_ref = k8s_schema.ref_name(schema) is not None or any(
            isinstance(s, dict) and k8s_schema.ref_name(s) for s in schema.get("allOf") or ())
        self.ref_owner = (k8s_schema.ref_name(schema) or k8s_schema.ref_name(schema["allOf"][0])
                          if self.had_ref else None)
        resolved = self.resolved = k8s_schema.resolve(schema)
        self.types = frozenset(allowed_types(resolved))
        items = resolved.get("items")
        self.items: Schema | None = items if isinstance(items, dict) else None
        self.preserve = bool(resolved.get("x-kubernetes-preserve-unknown-fields"))
        props = resolved.get("properties")
        props = props if isinstance(props, dict) else {}
        if resolved.get("x-kubernetes-embedded-resource"):
            props = {**_EMBEDDED_KEYS, **props}
        self.props: dict[str, Any] = props
        self.extra = resolved.get("additionalProperties")
        self.free = self.extra is True or self.preserve


# _Node of each schema of the loaded definitions (api/schema.py `owned`), by id(): those schemas
# live unchanged for the whole process. Other schemas (a CRD's) get nodes for one walk only.
_NODES: dict[int, _Node] = {}


class _Walker:
    def __init__(self, *, custom: bool) -> None:
        self.custom = custom
        self.found = FieldProblems()
        self.local: dict[int, _Node] = {}

    def node(self, schema: Schema) -> _Node:
        key = id(schema)
        node = _NODES.get(key) or self.local.get(key)
        if node is None:
            node = _Node(schema)
            if k8s_schema.owned(schema):
                _NODES[key] = node
            else:
                self.local[key] = node  # the schema outlives this walk, so its id() is stable
        return node

    def walk(self, value: Any, schema: Schema, path: str, owner: str, closed: bool) -> None:
        node = self.node(schema)
        types = node.types
        if types:
            t = _TYPE_NAMES.get(type(value)) or _json_type(value)
            if not (t == "null" or t in types or (t == "integer" and "number" in types)):
                self._type_error(value, schema, node.resolved, path, owner)
                return
        if node.had_ref:
            closed = False  # named built-in definitions: objects without properties are free-form
            owner = node.ref_owner or owner
        if isinstance(value, dict):
            self._object(value, node, path, owner, closed)
        elif isinstance(value, list):
            items = node.items
            if items is not None:
                for i, item in enumerate(value):
                    self.walk(item, items, f"{path}[{i}]", owner, closed)

    def _object(self, value: dict[str, Any], node: _Node, path: str, owner: str, closed: bool) -> None:
        props = node.props
        extra = node.extra
        for key, sub_value in value.items():
            sub = props.get(key)
            if isinstance(sub, dict):
                self.walk(sub_value, sub, f"{path}.{key}" if path else key, owner, closed)
            elif isinstance(extra, dict):
                self.walk(sub_value, extra, f"{path}.{key}" if path else key, owner, closed)
            elif node.free or (not props and not closed):
                continue
            else:
                self.found.unknown.append(_join(path, key))

    def _type_error(self, value: Any, schema: Schema, resolved: Schema, path: str, owner: str) -> None:
        if self.custom:
            want = sorted(allowed_types(resolved))
            message = (f'{path or "body"} in body must be of type {" or ".join(want)}: '
                       f'"{_json_type(value)}"')
        else:
            dotted = ".".join(p.split("[", 1)[0] for p in path.split("."))
            struct = owner.rsplit(".", 1)[-1]
            message = (f"json: cannot unmarshal {_go_json_type(value)} into Go struct field "
                       f"{struct}.{dotted} of type {_go_type(schema)}")
        self.found.type_errors.append((path, message))


def check(obj: Any, schema: Schema, *, custom: bool = False) -> FieldProblems:
    """Unknown fields and type errors of `obj` under `schema` in one walk.

    `custom=True` for custom resources: an object schema without properties then accepts no
    fields (structural pruning) unless `x-kubernetes-preserve-unknown-fields` is set, and type
    errors are worded like CRD schema validation instead of Go's JSON decoder.
    """
    walker = _Walker(custom=custom)
    version, kind = _version_kind(schema)
    if not isinstance(obj, dict) and obj is not None and not custom:
        # Go reports a mismatch at the top without a field: "into Go value of type v1.Pod".
        walker.found.type_errors.append(
            ("", f"json: cannot unmarshal {_go_json_type(obj)} into Go value of type {version}.{kind}"))
        return walker.found
    try:
        walker.walk(obj, schema, "", kind, closed=custom)
    except RecursionError:
        # Only recursive schemas (CRD JSONSchemaProps) can nest this deep; never a 500.
        walker.found.type_errors.append(("", "json: exceeded max depth"))
    return walker.found


def _version_kind(schema: Schema) -> tuple[str, str]:
    gvks = schema.get("x-kubernetes-group-version-kind")
    if isinstance(gvks, list) and gvks and isinstance(gvks[0], dict):
        return str(gvks[0].get("version", "v1")), str(gvks[0].get("kind", "Object"))
    return "v1", "Object"


def unknown_fields(obj: Any, schema: Schema, *, custom: bool = False) -> list[str]:
    """Paths like `spec.containers[0].imagePullPolicyy` of fields the schema does not declare."""
    return check(obj, schema, custom=custom).unknown


def type_errors(obj: Any, schema: Schema, *, custom: bool = False) -> list[tuple[str, str]]:
    """(path, message) for values of the wrong JSON type (null is always accepted)."""
    return check(obj, schema, custom=custom).type_errors


# -- duplicates -----------------------------------------------------------------------------------


class _Pairs(dict[str, Any]):
    duplicates: list[str]


def _pairs_hook(pairs: list[tuple[str, Any]]) -> _Pairs:
    out = _Pairs()
    out.duplicates = []
    for key, value in pairs:
        if key in out and key not in out.duplicates:
            out.duplicates.append(key)
        out[key] = value
    return out


def _may_have_duplicates(raw_json: bytes) -> bool:
    """False only when `raw_json` certainly has no key twice in one object (cheap, ~10 us a pod).

    In JSON a `:` is either the separator of one member or a character of a string. orjson's
    compact re-encoding of the decoded document keeps one member per distinct key and writes
    every string's colons literally, so without `\\u` escapes (which could hide a colon) the raw
    text has more colons than the re-encoding exactly when members were dropped as duplicates.
    """
    if b"\\u" in raw_json:
        return True
    try:
        again = orjson.dumps(orjson.loads(raw_json))
    except (ValueError, TypeError, RecursionError):  # orjson's decode and encode errors
        return True
    return raw_json.count(b":") != again.count(b":")


def duplicate_fields(raw_json: bytes) -> list[str]:
    """Paths of keys given twice in one JSON object (`metadata.name`, `spec.containers[0].image`).

    Invalid JSON reports nothing here; the decoder proper raises for it.
    """
    if not _may_have_duplicates(raw_json):
        return []
    try:
        tree = json.loads(raw_json, object_pairs_hook=_pairs_hook)
    except (ValueError, RecursionError):
        return []
    found: list[str] = []
    stack: list[tuple[str, Any]] = [("", tree)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, _Pairs):
            found.extend(_join(path, key) for key in node.duplicates)
            stack.extend((_join(path, k), v) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(node))))
    return found


# -- messages -------------------------------------------------------------------------------------


def field_problems(*, unknown: Iterable[str] = (), duplicate: Iterable[str] = ()) -> list[str]:
    """kube's texts: `duplicate field "x"` then `unknown field "spec.foo"` (one per problem)."""
    return [f'duplicate field "{p}"' for p in duplicate] + [f'unknown field "{p}"' for p in unknown]


def strict_decoding_error(problems: Iterable[str]) -> str:
    """`strict decoding error: unknown field "spec.foo", unknown field "spec.bar"`."""
    return "strict decoding error: " + ", ".join(problems)


def cannot_be_handled(kind: str, version: str, detail: str) -> str:
    """The BadRequest message kube-apiserver wraps decode errors in (handlers.transformDecodeError)."""
    return f'{kind} in version "{version}" cannot be handled as a {kind}: {detail}'


def warning_header(text: str) -> str:
    """A `Warning` header value (RFC 7234 code 299, as kube-apiserver sends for Warn mode)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'


# -- custom resources -----------------------------------------------------------------------------


def custom_resource_schema(crd_schema: Schema | None, *, group: str, version: str, kind: str) -> Schema:
    """A CRD's openAPIV3Schema completed with apiVersion, kind and metadata (→ ObjectMeta).

    Refs are in api/schema.py's `#/$defs/` spelling (openapi converts them for documents).
    A missing schema means "anything goes" (x-kubernetes-preserve-unknown-fields).
    """
    base: Schema = copy.deepcopy(crd_schema) if crd_schema else {
        "type": "object", "x-kubernetes-preserve-unknown-fields": True}
    base.setdefault("type", "object")
    props: dict[str, Any] = dict(base.get("properties") or {})
    props["apiVersion"] = {"description": "APIVersion defines the versioned schema of this representation "
                           "of an object.", "type": "string"}
    props["kind"] = {"description": "Kind is a string value representing the REST resource this object "
                     "represents.", "type": "string"}
    props["metadata"] = {"allOf": [{"$ref": OBJECT_META_REF}], "description": "Standard object's metadata."}
    base["properties"] = props
    base["x-kubernetes-group-version-kind"] = [{"group": group, "kind": kind, "version": version}]
    return base
