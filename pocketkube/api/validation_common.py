"""Building blocks of validation: kube-style field errors, Go value rendering, metadata, selectors.

kube-apiserver's 422 messages print the bad value the way field.Error does (a type's String() when
it has one, as for LabelSelector and IntOrString, else Go's %#v: `map[string]string{...}`, `null`), and say `Unsupported value`/`Not found` for those error types.
`KubeFieldError` renders exactly that; it is an api.errors.FieldError, so `Invalid` takes it as is.
The per-area modules (validation_pod, validation_workloads, ...) build on the helpers here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pocketkube.api import names
from pocketkube.api.errors import FieldError
from pocketkube.api.quantity import Quantity, QuantityError

Obj = dict[str, Any]
Errors = list[FieldError]

NON_NEGATIVE = "must be greater than or equal to 0"
IMMUTABLE = "field is immutable"
STANDARD_FINALIZERS = frozenset({"kubernetes", "orphan", "foregroundDeletion",
                                 "customresourcecleanup.apiextensions.k8s.io"})


class GoLiteral(str):
    """A value already written as Go's fmt would print it; rendered without quotes."""

    __slots__ = ()


def go_repr(value: Any) -> str:
    """How field.Error prints a bad value (%q for strings, %v for numbers, %#v for the rest)."""
    if isinstance(value, GoLiteral):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        if all(isinstance(v, str) for v in value.values()):
            body = ", ".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in sorted(value.items()))
            return "map[string]string{" + body + "}"
        return "map[string]interface {}{" + ", ".join(f"{json.dumps(k)}:{go_repr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        if all(isinstance(v, str) for v in value):
            return "[]string{" + ", ".join(json.dumps(v) for v in value) + "}"
        return "[]interface {}{" + ", ".join(go_repr(v) for v in value) + "}"
    return str(value)


def go_string_map(value: Any) -> GoLiteral:
    if not value:
        return GoLiteral("map[string]string(nil)")
    return GoLiteral(go_repr(value))


def go_label_selector(selector: Any) -> GoLiteral:
    """A *metav1.LabelSelector as field errors print it: through its generated String() method."""
    if not isinstance(selector, dict):
        return GoLiteral("null")
    labels = as_dict(selector.get("matchLabels"))
    label_text = "".join(f"{k}: {v}," for k, v in sorted(labels.items()))
    exprs = ""
    for e in dict_items(selector.get("matchExpressions")):
        values = " ".join(str(v) for v in as_list(e.get("values")))
        exprs += f"LabelSelectorRequirement{{Key:{e.get('key', '')},Operator:{e.get('operator', '')},Values:[{values}],}},"
    return GoLiteral(
        f"&LabelSelector{{MatchLabels:map[string]string{{{label_text}}},MatchExpressions:[]LabelSelectorRequirement{{{exprs}}},}}"
    )


class KubeFieldError(FieldError):
    """A FieldError rendered as k8s.io/apimachinery/pkg/util/validation/field.Error.Error()."""

    __slots__ = ()

    def render(self) -> str:
        kind = self.kind
        if kind == "FieldValueRequired":
            text = "Required value"
        elif kind == "FieldValueForbidden":
            text = "Forbidden"
        elif kind == "FieldValueTooLong":
            text = "Too long"
        elif kind == "FieldValueNotSupported":
            text = f"Unsupported value: {go_repr(self.value)}"
        elif kind == "FieldValueNotFound":
            text = f"Not found: {go_repr(self.value)}"
        elif kind == "FieldValueDuplicate":
            text = f"Duplicate value: {go_repr(self.value)}"
        else:
            text = f"Invalid value: {go_repr(self.value)}"
        if self.message:
            text += f": {self.message}"
        return f"{self.field}: {text}"


def required(path: str, detail: str = "") -> FieldError:
    return KubeFieldError(path, detail, kind="FieldValueRequired")


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return KubeFieldError(path, detail, kind="FieldValueInvalid", value=value)


def forbidden(path: str, detail: str) -> FieldError:
    return KubeFieldError(path, detail, kind="FieldValueForbidden")


def duplicate(path: str, value: Any) -> FieldError:
    return KubeFieldError(path, "", kind="FieldValueDuplicate", value=value)


def not_found(path: str, value: Any) -> FieldError:
    return KubeFieldError(path, "", kind="FieldValueNotFound", value=value)


def too_long(path: str, max_bytes: int) -> FieldError:
    return KubeFieldError(path, f"must have at most {max_bytes} bytes", kind="FieldValueTooLong")


def not_supported(path: str, value: Any, valid: Iterable[str]) -> FieldError:
    detail = "supported values: " + ", ".join(f'"{v}"' for v in valid)
    return KubeFieldError(path, detail, kind="FieldValueNotSupported", value=value)


def enum(path: str, value: Any, valid: Iterable[str], *, optional: bool = False) -> Errors:
    """Required when empty (unless optional), Unsupported when not one of `valid`."""
    valid = list(valid)
    if value in (None, ""):
        return [] if optional else [required(path)]
    return [] if value in valid else [not_supported(path, value, valid)]


def non_negative(path: str, value: Any) -> Errors:
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return [invalid(path, value, NON_NEGATIVE)]
    return []


def as_dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def dict_items(value: Any) -> list[Obj]:
    return [v if isinstance(v, dict) else {} for v in as_list(value)]


def unique_label_name(path: str, name: Any, seen: set[str]) -> Errors:
    """A list item's name: a DNS-1123 label, not seen before in the list (records it in `seen`)."""
    msgs = names.is_dns1123_label(str(name))
    errs = wrap(path, msgs, name)
    if not msgs and name in seen:
        errs.append(duplicate(path, name))
    seen.add(str(name))
    return errs


def wrap(path: str, messages: Iterable[str], value: Any) -> Errors:
    return [invalid(path, value, m) for m in messages]


def parse_quantity_at(path: str, raw: Any) -> tuple[Quantity | None, Errors]:
    try:
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise QuantityError("quantities must match the regular expression "
                                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
        return Quantity.parse(raw), []
    except QuantityError as e:
        return None, [invalid(path, raw, str(e))]


# --- metadata ------------------------------------------------------------------------------------


def validate_labels(labels: Any, path: str) -> Errors:
    errs: Errors = []
    for key, value in as_dict(labels).items():
        errs += wrap(path, names.is_qualified_name(key), key)
        if not isinstance(value, str):
            errs.append(invalid(path, value, "must be a string"))
        else:
            errs += wrap(path, names.is_valid_label_value(value), value)
    return errs


def validate_annotations(annotations: Any, path: str) -> Errors:
    errs: Errors = []
    total = 0
    for key, value in as_dict(annotations).items():
        errs += wrap(path, names.is_qualified_name(key.lower()), key)
        total += len(key) + len(value if isinstance(value, str) else str(value))
    if total > names.TOTAL_ANNOTATION_SIZE:
        errs.append(too_long(path, names.TOTAL_ANNOTATION_SIZE))
    return errs


def _validate_finalizers(finalizers: Any, path: str) -> Errors:
    errs: Errors = []
    for finalizer in as_list(finalizers):
        text = str(finalizer)
        msgs = names.is_qualified_name(text)
        errs += wrap(path, msgs, text)
        if not msgs and "/" not in text and text not in STANDARD_FINALIZERS:
            errs.append(invalid(path, text, "name is neither a standard finalizer name nor is it fully qualified"))
    return errs


def _validate_owner_references(refs: Any, path: str) -> Errors:
    errs: Errors = []
    controllers = []
    for ref in dict_items(refs):
        for key, what in (("apiVersion", "version"), ("kind", "kind"), ("name", "name"), ("uid", "uid")):
            if not ref.get(key):
                errs.append(invalid(f"{path}.{key}", ref.get(key, ""), f"{what} must not be empty"))
        if ref.get("controller") is True:
            controllers.append(f"{ref.get('kind')}/{ref.get('name')}")
    if len(controllers) > 1:
        errs.append(invalid(path, GoLiteral("[]v1.OwnerReference{...}"),
                            'Only one reference can have Controller set to true. Found "true" in references for '
                            + " and ".join(controllers)))
    return errs


def validate_object_meta(
    meta: Any,
    *,
    namespaced: bool | None,
    name_rule: names.NameValidator,
    path: str = "metadata",
) -> Errors:
    """ValidateObjectMeta. `namespaced=None` (custom kinds of unknown scope) skips the scope check."""
    meta = as_dict(meta)
    errs: Errors = []
    generate = meta.get("generateName") or ""
    name = meta.get("name") or ""
    if generate:
        errs += wrap(f"{path}.generateName", name_rule(str(generate), True), generate)
    if not name:
        if not generate:
            errs.append(required(f"{path}.name", "name or generateName is required"))
    else:
        errs += wrap(f"{path}.name", name_rule(str(name), False), name)
    namespace = meta.get("namespace") or ""
    if namespaced is True:
        if not namespace:
            errs.append(required(f"{path}.namespace"))
        else:
            errs += wrap(f"{path}.namespace", names.is_dns1123_label(str(namespace)), namespace)
    elif namespaced is False and namespace:
        errs.append(forbidden(f"{path}.namespace", "not allowed on this type"))
    errs += non_negative(f"{path}.generation", meta.get("generation"))
    errs += validate_labels(meta.get("labels"), f"{path}.labels")
    errs += validate_annotations(meta.get("annotations"), f"{path}.annotations")
    errs += _validate_owner_references(meta.get("ownerReferences"), f"{path}.ownerReferences")
    errs += _validate_finalizers(meta.get("finalizers"), f"{path}.finalizers")
    return errs


def validate_object_meta_update(new: Any, old: Any, path: str = "metadata") -> Errors:
    new, old = as_dict(new), as_dict(old)
    errs: Errors = []
    for key in ("name", "namespace", "uid", "creationTimestamp"):
        if old.get(key) and new.get(key) != old.get(key):
            errs.append(invalid(f"{path}.{key}", new.get(key), IMMUTABLE))
    return errs


# --- label selectors -----------------------------------------------------------------------------


def validate_label_selector(selector: Any, path: str) -> Errors:
    selector = as_dict(selector)
    errs = validate_labels(selector.get("matchLabels"), f"{path}.matchLabels")
    for i, expr in enumerate(dict_items(selector.get("matchExpressions"))):
        epath = f"{path}.matchExpressions[{i}]"
        op = expr.get("operator")
        values = as_list(expr.get("values"))
        if op in ("In", "NotIn"):
            if not values:
                errs.append(required(f"{epath}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(forbidden(f"{epath}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            errs.append(invalid(f"{epath}.operator", op, "not a valid selector operator"))
        errs += wrap(f"{epath}.key", names.is_qualified_name(str(expr.get("key", ""))), expr.get("key", ""))
    return errs


def selector_is_empty(selector: Any) -> bool:
    selector = as_dict(selector)
    return not selector.get("matchLabels") and not selector.get("matchExpressions")


def selector_matches(selector: Any, labels: Any) -> bool:
    """metav1.LabelSelectorAsSelector(selector).Matches(labels)."""
    selector, labels = as_dict(selector), as_dict(labels)
    for key, value in as_dict(selector.get("matchLabels")).items():
        if labels.get(key) != value:
            return False
    for expr in dict_items(selector.get("matchExpressions")):
        ekey, op, values = expr.get("key"), expr.get("operator"), as_list(expr.get("values"))
        present = ekey in labels
        if op == "In" and not (present and labels[ekey] in values):
            return False
        if op == "NotIn" and present and labels[ekey] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def validate_port_num_or_name(port: Any, path: str) -> Errors:
    if port is None:  # an unset IntOrString is the int 0
        port = 0
    if isinstance(port, bool):
        return [invalid(path, port, "unknown type")]
    if isinstance(port, int):
        return wrap(path, names.is_valid_port_num(port), port)
    if isinstance(port, str):
        return wrap(path, names.is_valid_port_name(port), port)
    return [invalid(path, port, "unknown type")]
