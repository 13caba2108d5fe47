"""Validation of the smaller core kinds: ConfigMap, Secret, Namespace, Node, quotas and limits, claims, Lease.

Each function mirrors its kube counterpart in pkg/apis/core/validation (or coordination for Lease)
with the same field paths and messages.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from typing import Any

from pocketkube.api import names
from pocketkube.api.quantity import Quantity
from pocketkube.api.validation_common import (
    IMMUTABLE,
    Errors,
    GoLiteral,
    Obj,
    as_dict,
    as_list,
    dict_items,
    enum,
    forbidden,
    invalid,
    non_negative,
    parse_quantity_at,
    required,
    too_long,
    wrap,
)

MAX_DATA_SIZE = 1024 * 1024  # core.MaxSecretSize, also the ConfigMap limit
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_QUOTA_RESOURCES = frozenset({
    "pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
    "persistentvolumeclaims", "services.nodeports", "services.loadbalancers", "cpu", "memory",
    "requests.cpu", "requests.memory", "requests.storage", "requests.ephemeral-storage", "limits.cpu",
    "limits.memory", "limits.ephemeral-storage", "ephemeral-storage",
})
_INTEGER_QUOTA = frozenset({"pods", "services", "replicationcontrollers", "resourcequotas", "secrets",
                            "configmaps", "persistentvolumeclaims", "services.nodeports", "services.loadbalancers"})


def _data_size(value: Any, *, base64_encoded: bool) -> int:
    text = value if isinstance(value, str) else str(value)
    if base64_encoded:
        try:
            return len(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            return len(text)
    return len(text.encode())


def _immutable_data(obj: Obj, old: Obj | None, keys: tuple[str, ...]) -> Errors:
    if old is None or old.get("immutable") is not True:
        return []
    errs = [forbidden(k, "field is immutable when `immutable` is set") for k in keys if obj.get(k) != old.get(k)]
    if obj.get("immutable") is not True:
        errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    return errs


def validate_config_map(obj: Obj, old: Obj | None) -> Errors:
    errs: Errors = []
    total = 0
    data, binary = as_dict(obj.get("data")), as_dict(obj.get("binaryData"))
    for key, value in data.items():
        errs += wrap(f"data[{key}]", names.is_config_map_key(key), key)
        total += _data_size(value, base64_encoded=False)
    for key, value in binary.items():
        errs += wrap(f"binaryData[{key}]", names.is_config_map_key(key), key)
        if key in data:
            errs.append(invalid("data", key, "duplicate of key present in binaryData"))
        total += _data_size(value, base64_encoded=True)
    if total > MAX_DATA_SIZE:
        errs.append(too_long("[]", MAX_DATA_SIZE))
    errs += _immutable_data(obj, old, ("data", "binaryData"))
    return errs


_SECRET_REQUIRED_KEYS = {
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}


def validate_secret(obj: Obj, old: Obj | None) -> Errors:
    errs: Errors = []
    total = 0
    data, string_data = as_dict(obj.get("data")), as_dict(obj.get("stringData"))
    # stringData is merged into data before validation in kube (conversion), so it reports as data[k].
    keys = set(data) | set(string_data)
    for key in sorted(keys):
        errs += wrap(f"data[{key}]", names.is_config_map_key(key), key)
        if key in string_data:
            total += _data_size(string_data[key], base64_encoded=False)
        else:
            total += _data_size(data[key], base64_encoded=True)
    if total > MAX_DATA_SIZE:
        errs.append(too_long("data", MAX_DATA_SIZE))
    stype = obj.get("type") or ""
    for key in _SECRET_REQUIRED_KEYS.get(stype, ()):
        if key not in keys:
            errs.append(required(f"data[{key}]"))
    if stype == "kubernetes.io/service-account-token":
        annotations = as_dict(as_dict(obj.get("metadata")).get("annotations"))
        if not annotations.get("kubernetes.io/service-account.name"):
            errs.append(required("metadata.annotations[kubernetes.io/service-account.name]"))
    if stype == "kubernetes.io/basic-auth" and "username" not in keys and "password" not in keys:
        errs.append(required("data[username]"))
    if old is not None and (old.get("type") or "") != stype:
        errs.append(invalid("type", stype, IMMUTABLE))
    errs += _immutable_data(obj, old, ("data",))
    return errs


def validate_namespace(obj: Obj, old: Obj | None) -> Errors:
    del old
    errs: Errors = []
    for finalizer in as_list(as_dict(obj.get("spec")).get("finalizers")):
        text = str(finalizer)
        msgs = names.is_qualified_name(text)
        errs += wrap("spec.finalizers", msgs, text)
        if not msgs and "/" not in text and text != "kubernetes":
            errs.append(invalid("spec.finalizers", text,
                                "name is neither a standard finalizer name nor is it fully qualified"))
    return errs


def _valid_cidr(text: Any) -> bool:
    try:
        ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        return False
    return "/" in str(text)


def validate_node(obj: Obj, old: Obj | None) -> Errors:
    spec = as_dict(obj.get("spec"))
    errs: Errors = []
    for i, taint in enumerate(dict_items(spec.get("taints"))):
        path = f"spec.taints[{i}]"
        key = taint.get("key") or ""
        if not key:
            errs.append(required(f"{path}.key"))
        else:
            errs += wrap(f"{path}.key", names.is_qualified_name(str(key)), key)
        value = taint.get("value")
        if value:
            errs += wrap(f"{path}.value", names.is_valid_label_value(str(value)), value)
        errs += enum(f"{path}.effect", taint.get("effect"), TAINT_EFFECTS)
    cidrs = as_list(spec.get("podCIDRs")) or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    for i, cidr in enumerate(cidrs):
        if not _valid_cidr(cidr):
            errs.append(invalid(f"spec.podCIDRs[{i}]", cidr, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"))
    status = as_dict(obj.get("status"))
    for field_name in ("capacity", "allocatable"):
        for name, raw in as_dict(status.get(field_name)).items():
            quantity, qerrs = parse_quantity_at(f"status.{field_name}[{name}]", raw)
            errs += qerrs
            if quantity is not None and quantity.value < 0:
                errs.append(invalid(f"status.{field_name}[{name}]", str(quantity), "must be greater than or equal to 0"))
    if old is not None:
        old_spec = as_dict(old.get("spec"))
        for key in ("podCIDR", "providerID"):
            if old_spec.get(key) and spec.get(key) != old_spec.get(key):
                errs.append(forbidden(f"spec.{key}", f"{key} is immutable once set" if key == "providerID"
                                      else "podCIDR may not be changed once set"))
    return errs


def _quota_name_errors(name: str, path: str) -> Errors:
    errs = wrap(path, names.is_qualified_name(name), name)
    if "/" not in name and name not in _QUOTA_RESOURCES and not name.startswith(("count/", "hugepages-",
                                                                                "requests.hugepages-")):
        errs.append(invalid(path, name, "must be a standard resource for quota"))
    return errs


def _quantity_nonneg(raw: Any, path: str, *, integer: bool = False) -> tuple[Quantity | None, Errors]:
    quantity, errs = parse_quantity_at(path, raw)
    if quantity is not None:
        if quantity.value < 0:
            errs.append(invalid(path, str(quantity), "must be greater than or equal to 0"))
        elif integer and quantity.value.denominator != 1:
            errs.append(invalid(path, str(quantity), "must be an integer"))
    return quantity, errs


def validate_resource_quota(obj: Obj, old: Obj | None) -> Errors:
    del old
    spec = as_dict(obj.get("spec"))
    errs: Errors = []
    for name, raw in as_dict(spec.get("hard")).items():
        path = f"spec.hard[{name}]"
        errs += _quota_name_errors(name, path)
        errs += _quantity_nonneg(raw, path, integer=name in _INTEGER_QUOTA or name.startswith("count/"))[1]
    for i, scope in enumerate(as_list(spec.get("scopes"))):
        errs += enum(f"spec.scopes[{i}]", scope, ("Terminating", "NotTerminating", "BestEffort", "NotBestEffort",
                                                 "PriorityClass", "CrossNamespacePodAffinity"))
    return errs


_LIMIT_ORDER = (
    ("min", "max", "min value {a} is greater than max value {b}", "min"),
    ("min", "defaultRequest", "min value {a} is greater than default request value {b}", "defaultRequest"),
    ("defaultRequest", "max", "default request value {a} is greater than max value {b}", "defaultRequest"),
    ("defaultRequest", "default", "default request value {a} is greater than default limit value {b}", "defaultRequest"),
    ("min", "default", "min value {a} is greater than default value {b}", "default"),
    ("default", "max", "default value {a} is greater than max value {b}", "default"),
)


def validate_limit_range(obj: Obj, old: Obj | None) -> Errors:
    del old
    errs: Errors = []
    for i, item in enumerate(dict_items(as_dict(obj.get("spec")).get("limits"))):
        path = f"spec.limits[{i}]"
        ltype = item.get("type")
        errs += enum(f"{path}.type", ltype, ("Container", "Pod", "PersistentVolumeClaim"))
        parsed: dict[str, dict[str, Quantity]] = {}
        for field_name in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            values = as_dict(item.get(field_name))
            if values and ltype == "Pod" and field_name in ("default", "defaultRequest"):
                errs.append(forbidden(f"{path}.{field_name}", "may not be specified when `type` is 'Pod'"))
            for name, raw in values.items():
                quantity, qerrs = _quantity_nonneg(raw, f"{path}.{field_name}[{name}]")
                errs += qerrs
                if quantity is not None:
                    parsed.setdefault(field_name, {})[name] = quantity
        for low, high, message, at in _LIMIT_ORDER:
            for name, a in parsed.get(low, {}).items():
                b = parsed.get(high, {}).get(name)
                if b is not None and a > b:
                    bad = a if at == low else b
                    # a resource.Quantity prints through its String(), unquoted
                    errs.append(invalid(f"{path}.{at}[{name}]", GoLiteral(str(bad)), message.format(a=a, b=b)))
    return errs


def validate_pvc(obj: Obj, old: Obj | None) -> Errors:
    spec = as_dict(obj.get("spec"))
    errs: Errors = []
    modes = as_list(spec.get("accessModes"))
    if not modes:
        errs.append(required("spec.accessModes", "at least 1 access mode is required"))
    for mode in modes:
        errs += enum("spec.accessModes", mode, ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"))
    storage = as_dict(as_dict(spec.get("resources")).get("requests")).get("storage")
    if storage is None:
        errs.append(required("spec.resources[storage]"))
    else:
        quantity, qerrs = parse_quantity_at("spec.resources[storage]", storage)
        errs += qerrs
        if quantity is not None and quantity.value <= 0:
            errs.append(invalid("spec.resources[storage]", str(quantity), "must be greater than zero"))
    errs += enum("spec.volumeMode", spec.get("volumeMode"), ("Block", "Filesystem"), optional=True)
    if old is not None:
        old_spec = as_dict(old.get("spec"))
        for key in ("accessModes", "selector", "volumeMode", "storageClassName", "dataSource"):
            if old_spec.get("volumeName") and key == "storageClassName":
                continue
            if spec.get(key) != old_spec.get(key):
                errs.append(forbidden("spec", "spec is immutable after creation except resources.requests and "
                                      "volumeAttributesClassName for bound claims"))
                break
    return errs


def validate_pv(obj: Obj, old: Obj | None) -> Errors:
    del old
    spec = as_dict(obj.get("spec"))
    errs: Errors = []
    if not as_list(spec.get("accessModes")):
        errs.append(required("spec.accessModes"))
    capacity = as_dict(spec.get("capacity"))
    if "storage" not in capacity:
        errs.append(required("spec.capacity"))
    for name, raw in capacity.items():
        errs += _quantity_nonneg(raw, f"spec.capacity[{name}]")[1]
    errs += enum("spec.persistentVolumeReclaimPolicy", spec.get("persistentVolumeReclaimPolicy"),
                 ("Delete", "Recycle", "Retain"), optional=True)
    return errs


def validate_lease(obj: Obj, old: Obj | None) -> Errors:
    del old
    spec = as_dict(obj.get("spec"))
    errs: Errors = []
    duration = spec.get("leaseDurationSeconds")
    if isinstance(duration, int) and duration <= 0:
        errs.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    errs += non_negative("spec.leaseTransitions", spec.get("leaseTransitions"))
    return errs


def validate_priority_class(obj: Obj, old: Obj | None) -> Errors:
    errs: Errors = []
    value = obj.get("value")
    if isinstance(value, int) and value > 1_000_000_000 and not str(
        as_dict(obj.get("metadata")).get("name", "")
    ).startswith("system-"):
        errs.append(forbidden("value", "maximum allowed value of a user defined priority is 1000000000"))
    errs += enum("preemptionPolicy", obj.get("preemptionPolicy"), ("Never", "PreemptLowerPriority"), optional=True)
    if old is not None and obj.get("value") != old.get("value"):
        errs.append(forbidden("value", "may not be changed in an update."))
    return errs
