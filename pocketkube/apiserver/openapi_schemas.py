"""JSON Schema (draft 2020-12, as shipped by kubernetes-validate) → OpenAPI 3.0 components.

/openapi/v3 documents carry, under `components.schemas`, the definitions a group-version's kinds
reach. The schemas in api/schema.py are written for JSON Schema validators, so they are rewritten
here the way kube-apiserver spells them: `#/$defs/X` becomes `#/components/schemas/X`, nullable
`["x", "null"]` becomes plain `"x"`, a `$ref` with sibling keys is wrapped as `allOf: [{$ref}]`,
and int-or-string / quantity keep kube-openapi's v3 `oneOf` form. Custom resources
get their CRD's openAPIV3Schema completed by api/field_validation.custom_resource_schema (the
same schema strict validation walks) and a `<Kind>List` component. Pure functions; openapi.py assembles and caches documents.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pocketkube.api import schema as k8s_schema

Schema = dict[str, Any]

DEFS_PREFIX = "#/$defs/"
COMPONENTS_PREFIX = "#/components/schemas/"
LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"

# Definitions kube-openapi spells specially in v3 (OpenAPIV3OneOfTypes): a oneOf of types and no
# `type`, which is also why kubectl explain prints them as <IntOrString> and <Quantity>.
_SPECIAL: dict[str, Schema] = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in JSON or "
        "YAML marshalling and unmarshalling, it produces or consumes the inner type.  This allows you "
        "to have, for example, a JSON field that can accept a name or number.",
        "format": "int-or-string",
        "oneOf": [{"type": "integer"}, {"type": "string"}],
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "description": "Quantity is a fixed-point representation of a number, serialized as a string "
        "such as 100m, 1Gi or 2.5 (an integer or number is also accepted).",
        "oneOf": [{"type": "string"}, {"type": "number"}],
    },
}

_SCHEMA_LIST_KEYS = ("allOf", "anyOf", "oneOf")
_SCHEMA_KEYS = ("items", "not")


def _plain_type(t: Any) -> Any:
    if isinstance(t, list):
        rest = [x for x in t if x != "null"]
        return rest[0] if len(rest) == 1 else rest
    return t


def convert(schema: Schema) -> Schema:
    """One schema (and everything nested in it) in the OpenAPI 3.0 spelling kube serves."""
    out: Schema = {}
    for key, value in schema.items():
        if key == "$ref" and isinstance(value, str):
            out[key] = COMPONENTS_PREFIX + value[len(DEFS_PREFIX):] if value.startswith(DEFS_PREFIX) else value
        elif key == "type":
            out[key] = _plain_type(value)
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: convert(sub) if isinstance(sub, dict) else sub for name, sub in value.items()}
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = convert(value)
        elif key in _SCHEMA_KEYS and isinstance(value, dict):
            out[key] = convert(value)
        elif key in _SCHEMA_LIST_KEYS and isinstance(value, list):
            out[key] = [convert(s) if isinstance(s, dict) else s for s in value]
        else:
            out[key] = value
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}], **out}
    return out


def convert_definition(name: str) -> Schema:
    """The named definition from api/schema.py, converted; apiVersion/kind lose their enums.

    (kubernetes-validate's "-local" flavour pins apiVersion/kind with an enum; the real OpenAPI
    does not, and kubectl explain would print it.)
    """
    special = _SPECIAL.get(name)
    if special is not None:
        return dict(special)
    out = convert(k8s_schema.definitions()[name])
    props = out.get("properties")
    if isinstance(props, dict):
        for field in ("apiVersion", "kind"):
            sub = props.get(field)
            if isinstance(sub, dict) and "enum" in sub:
                props[field] = {k: v for k, v in sub.items() if k != "enum"}
    return out


def refs_in(schema: Any) -> Iterable[str]:
    """Names of every definition `schema` refers to directly (either ref spelling)."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                for prefix in (DEFS_PREFIX, COMPONENTS_PREFIX):
                    if ref.startswith(prefix):
                        yield ref[len(prefix):]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def reachable(roots: Iterable[str], extra: Iterable[Schema] = ()) -> list[str]:
    """Definition names reachable from `roots` and from refs inside the `extra` schemas."""
    defs = k8s_schema.definitions()
    seen: set[str] = set()
    stack = [r for r in roots if r in defs]
    for schema in extra:
        stack.extend(r for r in refs_in(schema) if r in defs)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in _SPECIAL:
            continue
        stack.extend(r for r in refs_in(defs[name]) if r in defs and r not in seen)
    return sorted(seen)


def custom_component_name(group: str, version: str, kind: str) -> str:
    """`stable.example.com`, `v1`, `CronTab` → `com.example.stable.v1.CronTab` (kube's naming)."""
    return ".".join([*reversed(group.split(".")), version, kind])


def custom_list_schema(*, group: str, version: str, kind: str, list_kind: str) -> Schema:
    """The `<Kind>List` component for a custom resource."""
    return {
        "description": f"{list_kind} is a list of {kind}",
        "properties": {
            "apiVersion": {"type": "string"},
            "items": {
                "items": {"$ref": COMPONENTS_PREFIX + custom_component_name(group, version, kind)},
                "type": "array",
            },
            "kind": {"type": "string"},
            "metadata": {"allOf": [{"$ref": COMPONENTS_PREFIX + LIST_META}]},
        },
        "required": ["items"],
        "type": "object",
        "x-kubernetes-group-version-kind": [{"group": group, "kind": list_kind, "version": version}],
    }
