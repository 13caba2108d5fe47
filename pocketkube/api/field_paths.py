"""Field paths and field sets, as structured-merge-diff (sigs.k8s.io/structured-merge-diff) has them.

Server-side apply and managedFields talk about sets of field paths. A path is a tuple of path
elements spelled exactly as in `fieldsV1`: `f:<field>` for a map key, `k:{"name":"c"}` for an item
of an associative list (list-type map, keys in sorted order), `v:"x"` for an item of a set.
A set is a plain Python `set` of such tuples; only *members* are in it, following SMD's
`ToFieldSet`: scalars, nulls, empty maps, atomic lists and maps, list items, and the entries of maps
that are not structs (labels, data, and everything of an object without a schema).

The list and map types come from the schema extensions (api/schema.py): `x-kubernetes-list-type`
(`atomic`, `set`, `map` + `x-kubernetes-list-map-keys`), falling back like kube-openapi's schemaconv
to `x-kubernetes-patch-strategy: merge` (+ merge key) and otherwise to atomic;
`x-kubernetes-map-type: atomic`. Without a schema (custom resources) maps are granular and every
list is atomic.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

import orjson

from pocketkube.api import schema as k8s_schema

Schema = dict[str, Any]
Path = tuple[str, ...]
FieldSet = set[Path]

# Key fields kube-apiserver defaults before computing identities (OpenAPI `default`, which the
# bundled JSON schemas do not carry).
_KEY_DEFAULTS = {"protocol": "TCP"}

# What kube-apiserver strips before tracking ownership (fieldmanager stripMeta).
STRIPPED: frozenset[Path] = frozenset(
    {("f:apiVersion",), ("f:kind",), ("f:metadata",)}
    | {
        ("f:metadata", f"f:{name}")
        for name in (
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "clusterName",
            "generation",
            "managedFields",
            "resourceVersion",
        )
    }
)


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


# --- schema facts ---------------------------------------------------------------------------


def is_atomic_map(schema: Schema | None) -> bool:
    return schema is not None and schema.get("x-kubernetes-map-type") == "atomic"


# Facts about the schemas of the loaded definitions (api/schema.py `owned`), by id(): those
# schemas live unchanged for the whole process. Other schemas are looked at afresh every time.
_CHILDREN: dict[int, tuple[dict[str, Schema | None], Schema | None]] = {}
_LIST_KINDS: dict[int, tuple[str, list[str], Schema | None]] = {}


def _facts(schema: Schema | None) -> tuple[dict[str, Schema | None], Schema | None] | None:
    """(resolved schema of each declared field, of additionalProperties) of a built-in schema;
    None for schemas that are not the loaded definitions' (and for no schema)."""
    if schema is None:
        return None
    facts = _CHILDREN.get(id(schema))
    if facts is None and k8s_schema.owned(schema):
        fields: dict[str, Schema | None] = {name: k8s_schema.resolve(sub) if isinstance(sub, dict) else None
                                            for name, sub in k8s_schema.properties(schema).items()}
        facts = _CHILDREN[id(schema)] = (fields, k8s_schema.additional_properties(schema))
    return facts


def child_schema(schema: Schema | None, key: str) -> tuple[Schema | None, bool]:
    """(schema of `key` in a map, whether `key` is a declared struct field)."""
    if schema is None:
        return None, False
    facts = _facts(schema)
    if facts is not None:
        if key in facts[0]:
            return facts[0][key], True
        return facts[1], False
    props = k8s_schema.properties(schema)
    if key in props:
        return k8s_schema.field_schema(schema, key), True
    return k8s_schema.additional_properties(schema), False


def list_kind(schema: Schema | None) -> tuple[str, list[str], Schema | None]:
    """(`atomic` | `set` | `map`, map keys, item schema) of a list-typed field schema.

    The keys list may be shared between calls: do not change it.
    """
    if schema is None:
        return "atomic", [], None
    known = _LIST_KINDS.get(id(schema))
    if known is not None:
        return known
    found = _list_kind(schema)
    if k8s_schema.owned(schema):
        _LIST_KINDS[id(schema)] = found
    return found


def _list_kind(schema: Schema) -> tuple[str, list[str], Schema | None]:
    items = k8s_schema.items_schema(schema)
    declared = schema.get("x-kubernetes-list-type")
    if declared == "map":
        keys = [str(k) for k in schema.get("x-kubernetes-list-map-keys") or []]
        return ("map", keys, items) if keys else ("atomic", [], items)
    if declared in ("set", "atomic"):
        return str(declared), [], items
    strategies = str(schema.get("x-kubernetes-patch-strategy", "")).split(",")
    if "merge" in strategies:
        merge_key = schema.get("x-kubernetes-patch-merge-key")
        return ("map", [str(merge_key)], items) if merge_key else ("set", [], items)
    return "atomic", [], items


def item_element(kind: str, keys: list[str], item: Any) -> str | None:
    """The path element of a list item, or None when the item cannot be identified."""
    if kind == "set":
        return None if isinstance(item, _CONTAINERS) else "v:" + _dumps(item)
    if not isinstance(item, dict):
        return None
    ident = {}
    for key in keys:
        if key in item and item[key] is not None:
            ident[key] = item[key]
        elif key in _KEY_DEFAULTS:
            ident[key] = _KEY_DEFAULTS[key]
    return "k:" + _dumps(ident)


def list_elements(schema: Schema | None, items: list[Any]) -> tuple[str, list[str], Schema | None, list[str] | None]:
    """list_kind plus each item's element; elements None means treat the list as atomic."""
    kind, keys, item_schema = list_kind(schema)
    if kind == "atomic":
        return kind, keys, item_schema, None
    elements = [item_element(kind, keys, item) for item in items]
    if any(e is None for e in elements):
        return "atomic", keys, item_schema, None
    return kind, keys, item_schema, [e for e in elements if e is not None]


# --- ToFieldSet -----------------------------------------------------------------------------


class Member:
    """A member path's value and whether it compares as a whole (a leaf) or through children."""

    __slots__ = ("leaf", "value")

    def __init__(self, value: Any, leaf: bool) -> None:
        self.value = value
        self.leaf = leaf


def members(obj: Any, schema: Schema | None, *, reset_fields: Collection[str] = ()) -> dict[Path, Member]:
    """Every member path of `obj` (SMD ToFieldSet) with its value, minus the stripped metadata.

    `reset_fields` are top-level fields whose ownership is not tracked (e.g. `status` on the main
    resource, as upstream's ResetFieldsStrategy).
    """
    out: dict[Path, Member] = {}
    _walk(obj, schema, (), out)
    reset = {"f:" + name for name in reset_fields}
    for path in [p for p in out if p in STRIPPED or p[0] in reset]:
        del out[path]
    return out


def field_set(obj: Any, schema: Schema | None, *, reset_fields: Collection[str] = ()) -> FieldSet:
    return set(members(obj, schema, reset_fields=reset_fields))


_CONTAINERS = (dict, list)


def _walk(value: Any, schema: Schema | None, path: Path, out: dict[Path, Member]) -> None:
    # Scalar children are recorded here rather than through a call each (what _walk does for them).
    # The hot path of every write's managedFields: facts of built-in schemas are looked up inline.
    if isinstance(value, dict):
        if schema is not None and schema.get("x-kubernetes-map-type") == "atomic":
            out[path] = Member(value, True)
            return
        facts = _CHILDREN.get(id(schema)) if schema is not None else None
        if facts is None:
            facts = _facts(schema)
        if facts is not None:
            fields, extra = facts
            for key, child in value.items():
                declared = key in fields
                child_path = (*path, "f:" + key)
                if not isinstance(child, _CONTAINERS):
                    out[child_path] = Member(child, True)
                    continue
                _walk(child, fields[key] if declared else extra, child_path, out)
                if child == {}:
                    out[child_path] = Member(child, True)
                elif not declared and child_path not in out:
                    out[child_path] = Member(child, False)
            return
        for key, child in value.items():
            sub, declared = child_schema(schema, key)
            child_path = (*path, "f:" + key)
            if not isinstance(child, _CONTAINERS):
                out[child_path] = Member(child, True)
                continue
            _walk(child, sub, child_path, out)
            if child == {}:
                out[child_path] = Member(child, True)
            elif not declared and child_path not in out:
                out[child_path] = Member(child, False)
    elif isinstance(value, list):
        _kind, _keys, item_schema, elements = list_elements(schema, value)
        if elements is None:
            out[path] = Member(value, True)
            return
        for element, item in zip(elements, value, strict=True):
            item_path = (*path, element)
            if not isinstance(item, _CONTAINERS):
                out[item_path] = Member(item, True)
                continue
            _walk(item, item_schema, item_path, out)
            if item_path not in out:
                out[item_path] = Member(item, not isinstance(item, dict) or not item)
    elif path:
        out[path] = Member(value, True)


def compare(old: dict[Path, Member], new: dict[Path, Member]) -> tuple[FieldSet, FieldSet, FieldSet]:
    """(added, modified, removed) between two member maps, like SMD's TypedValue.Compare."""
    added = set(new) - set(old)
    removed = set(old) - set(new)
    modified = {
        p
        for p in set(old) & set(new)
        if (old[p].leaf or new[p].leaf) and (old[p].value != new[p].value or type(old[p].value) is not type(new[p].value))
    }
    return added, modified, removed


def closure(paths: Iterable[Path]) -> FieldSet:
    """The paths and all their prefixes (SMD's EnsureNamedFieldsAreMembers, generously)."""
    out: FieldSet = set()
    for path in paths:
        for n in range(1, len(path) + 1):
            out.add(path[:n])
    return out


# --- text forms -----------------------------------------------------------------------------


def path_string(path: Path) -> str:
    """SMD's Path.String(): `.spec.template.spec.containers[name="nginx"].image`."""
    parts = []
    for element in path:
        kind, _, text = element.partition(":")
        if kind == "f":
            parts.append("." + text)
        elif kind == "k":
            try:
                key = orjson.loads(text)
                parts.append("[" + ",".join(f"{k}={_dumps(v)}" for k, v in key.items()) + "]")
            except (orjson.JSONDecodeError, AttributeError):
                parts.append("[" + text + "]")
        elif kind == "v":
            parts.append("[=" + text + "]")
        else:
            parts.append("[" + text + "]")
    return "".join(parts)


_ORDER = {"f": 0, "k": 1, "v": 2, "i": 3}


def _element_order(element: str) -> tuple[int, str]:
    return _ORDER.get(element[:1], 4), element


_PLAIN_ORDER = frozenset({"f:", "k:", "v:"})


def encode_fields(paths: FieldSet) -> dict[str, Any]:
    """A field set as a fieldsV1 object (`.` marks a member that also has children).

    With only `f:`, `k:` and `v:` elements, the sort order of the elements (_element_order) is the
    plain string order, so the tree is built in order from the sorted paths: a member comes before
    its children, which gives its node the leading `.` when its first child arrives.
    """
    root: dict[str, Any] = {}
    member_nodes: set[int] = set()
    for path in sorted(paths):
        node = root
        for element in path:
            child = node.get(element)
            if child is None:
                if element[:2] not in _PLAIN_ORDER:
                    return _encode_fields_sorting(paths)
                if id(node) in member_nodes and "." not in node:
                    node["."] = {}
                child = node[element] = {}
            node = child
        member_nodes.add(id(node))
    return root


def _encode_fields_sorting(paths: FieldSet) -> dict[str, Any]:
    root: dict[str, Any] = {}
    member_nodes = []
    for path in paths:
        node = root
        for element in path:
            child = node.get(element)
            if child is None:
                child = node[element] = {}
            node = child
        member_nodes.append(node)
    for node in member_nodes:
        if node and "." not in node:
            node["."] = {}
    return _sorted_tree(root)


def _sorted_tree(node: dict[str, Any]) -> dict[str, Any]:
    if not node:
        return {}
    keys = [k for k in node if k != "."]
    if len(keys) > 1:
        keys.sort(key=_element_order)
    out: dict[str, Any] = {".": {}} if "." in node else {}
    for key in keys:
        out[key] = _sorted_tree(node[key])
    return out


def decode_fields(tree: Any) -> FieldSet:
    """A fieldsV1 object as a field set; raises ValueError when malformed."""
    if not isinstance(tree, dict):
        raise ValueError("fieldsV1 must be an object")
    out: FieldSet = set()
    _decode(tree, (), out)
    return out


def _decode(node: dict[str, Any], path: Path, out: FieldSet) -> None:
    for key, child in node.items():
        if not isinstance(child, dict):
            raise ValueError(f"fieldsV1 entry {key!r} must be an object")
        if key == ".":
            if path:
                out.add(path)
            continue
        if key[:2] not in ("f:", "k:", "v:", "i:"):
            raise ValueError(f"fieldsV1 key {key!r} is not a path element")
        if child:
            _decode(child, (*path, key), out)
        else:
            out.add((*path, key))
