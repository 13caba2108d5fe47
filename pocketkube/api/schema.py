"""The real Kubernetes schemas (from the kubernetes-validate package), loaded once and shared.

Strategic merge patch, server-side apply, strict field validation and /openapi/v3 all need the
same facts: which definition describes a kind, what its fields are, and the x-kubernetes-*
extensions (patch merge keys and strategies, list types and map keys). This module only loads and
looks up; it does not interpret.

The schemas are Kubernetes v1.32.0 (the version pocketkube reports at /version). References look
like `{"$ref": "#/$defs/io.k8s.api.core.v1.Container"}`; nullable types are written
`["string", "null"]`.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import orjson

SCHEMA_VERSION = "v1.32.0"
_REF_PREFIX = "#/$defs/"

Schema = dict[str, Any]


def _schema_dir() -> str:
    import kubernetes_validate

    base = os.path.dirname(kubernetes_validate.__file__)
    return os.path.join(base, "kubernetes-json-schema", f"{SCHEMA_VERSION}-local")


@functools.cache
def definitions() -> dict[str, Schema]:
    """Every definition by its full name, e.g. `io.k8s.api.core.v1.PodSpec`."""
    with open(os.path.join(_schema_dir(), "_definitions.json"), "rb") as f:
        defs: dict[str, Schema] = orjson.loads(f.read())["$defs"]
    _own(defs)
    return defs


# Resolutions of the loaded definitions, which live (unchanged) as long as the process: keyed by
# the id() of a schema dict inside definitions() (or of a resolution made from one, kept alive
# here too), so a hit is always that very object. Schemas built elsewhere (CRDs) are not owned
# and are resolved afresh every time.
_owned: set[int] = set()
_resolved: dict[int, Schema] = {}


def _own(defs: dict[str, Schema]) -> None:
    stack: list[Any] = list(defs.values())
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            _owned.add(id(node))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def owned(schema: Schema) -> bool:
    """Whether `schema` is part of the loaded definitions (or a resolution of one): immutable,
    alive for the whole process, so facts about it may be cached by id()."""
    if not _owned:
        definitions()
    return id(schema) in _owned


@functools.cache
def _gvk_index() -> dict[tuple[str, str, str], str]:
    index: dict[tuple[str, str, str], str] = {}
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            key = (gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", ""))
            # Prefer the definition from the kind's own group over meta/v1 shared ones.
            if key not in index or not name.startswith("io.k8s.apimachinery"):
                index[key] = name
    return index


def definition_name(group: str, version: str, kind: str) -> str | None:
    """The definition name for a group/version/kind, or None for kinds without a schema (CRs)."""
    return _gvk_index().get((group, version, kind))


def definition_for(group: str, version: str, kind: str) -> Schema | None:
    name = definition_name(group, version, kind)
    return definitions()[name] if name else None


def ref_name(schema: Schema) -> str | None:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
        return ref[len(_REF_PREFIX):]
    return None


def resolve(schema: Schema) -> Schema:
    """Follow `$ref` (also through a single-element allOf) to the referenced definition.

    Sibling keys of the `$ref` (description, x-kubernetes-* extensions) are kept on top.
    Resolutions of the loaded definitions are made once and shared: never mutate the result.
    """
    hit = _resolved.get(id(schema))
    if hit is not None:
        return hit
    out = _resolve(schema)
    if owned(schema):
        _resolved[id(schema)] = out
        if out is not schema:
            _owned.add(id(out))
            _resolved[id(out)] = out
    return out


def _resolve(schema: Schema) -> Schema:
    seen = 0
    while seen < 32:
        seen += 1
        name = ref_name(schema)
        if name is None:
            all_of = schema.get("allOf")
            if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
                name = ref_name(all_of[0])
            if name is None:
                return schema
        target = definitions().get(name)
        if target is None:
            return schema
        extra = {k: v for k, v in schema.items() if k not in ("$ref", "allOf")}
        schema = {**target, **extra} if extra else target
    return schema


def types_of(schema: Schema) -> set[str]:
    """The JSON types a schema allows, without "null" (empty set: anything, e.g. int-or-string)."""
    t = schema.get("type")
    if isinstance(t, str):
        return {t} - {"null"}
    if isinstance(t, list):
        return {x for x in t if x != "null"}
    return set()


def properties(schema: Schema) -> dict[str, Schema]:
    props = resolve(schema).get("properties")
    return props if isinstance(props, dict) else {}


def field_schema(schema: Schema, field: str) -> Schema | None:
    """The (resolved) schema of `field` of an object schema, or None when unknown."""
    sub = properties(schema).get(field)
    return resolve(sub) if isinstance(sub, dict) else None


def items_schema(schema: Schema) -> Schema | None:
    items = resolve(schema).get("items")
    return resolve(items) if isinstance(items, dict) else None


def additional_properties(schema: Schema) -> Schema | None:
    extra = resolve(schema).get("additionalProperties")
    return resolve(extra) if isinstance(extra, dict) else None
