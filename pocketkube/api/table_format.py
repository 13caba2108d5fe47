"""Small formatters shared by the table printers: columns, selectors, labels, containers, ports.

Each mirrors the helper of the same job in kubernetes `pkg/printers/internalversion/printers.go`
or `k8s.io/apimachinery` (FormatLabels, FormatLabelSelector, LabelSelectorAsSelector().String()),
so cells read byte-for-byte like a real cluster's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

NONE = "<none>"
UNSET = "<unset>"

NAME_DESC = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name automatically. "
    "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
    "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
CREATED_DESC = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. "
    "It is not guaranteed to be set in happens-before order across separate operations. Clients "
    "may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the "
    "system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/"
    "sig-architecture/api-conventions.md#metadata"
)
CONTAINERS_DESC = "Names of each container in the template."
IMAGES_DESC = "Images referenced by each container in the template."


@dataclass(frozen=True, slots=True)
class Column:
    """One metav1 TableColumnDefinition (all five fields are always serialised, as Go does)."""

    name: str
    type: str = "string"
    description: str = ""
    priority: int = 0
    format: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


NAME_COLUMN = Column("Name", "string", NAME_DESC, format="name")
AGE_COLUMN = Column("Age", "string", CREATED_DESC)


def wide(name: str, description: str = "", type_: str = "string") -> Column:
    return Column(name, type_, description, priority=1)


def d(obj: Mapping[str, Any] | None, *path: str) -> Any:
    """Nested lookup that tolerates missing or null levels."""
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def dmap(obj: Mapping[str, Any] | None, *path: str) -> dict[str, Any]:
    value = d(obj, *path)
    return value if isinstance(value, dict) else {}


def dlist(obj: Mapping[str, Any] | None, *path: str) -> list[Any]:
    value = d(obj, *path)
    return value if isinstance(value, list) else []


def dstr(obj: Mapping[str, Any] | None, *path: str) -> str:
    value = d(obj, *path)
    return value if isinstance(value, str) else ("" if value is None else str(value))


def dint(obj: Mapping[str, Any] | None, *path: str, default: int = 0) -> int:
    value = d(obj, *path)
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return default


def name_of(obj: Mapping[str, Any]) -> str:
    return dstr(obj, "metadata", "name")


def go_bool(value: bool) -> str:
    return "True" if value else "False"


def bool_ptr(value: Any) -> str:
    """printers.go `printBoolPtr`: True/False, `<unset>` when nil."""
    return go_bool(value) if isinstance(value, bool) else UNSET


def format_labels(labels: Mapping[str, Any] | None) -> str:
    """labels.FormatLabels: sorted `k=v` pairs, `<none>` when empty."""
    if not labels:
        return NONE
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """metav1.LabelSelectorAsSelector(sel).String(): "" for nil or empty selectors."""
    if not isinstance(selector, Mapping):
        return ""
    reqs: list[tuple[str, str]] = []
    for key, value in dmap(selector, "matchLabels").items():
        reqs.append((key, f"{key}={value}"))
    for expr in dlist(selector, "matchExpressions"):
        if not isinstance(expr, Mapping):
            continue
        key = dstr(expr, "key")
        op = dstr(expr, "operator")
        values = sorted({str(v) for v in dlist(expr, "values")})
        if op == "In":
            reqs.append((key, f"{key} in ({','.join(values)})"))
        elif op == "NotIn":
            reqs.append((key, f"{key} notin ({','.join(values)})"))
        elif op == "Exists":
            reqs.append((key, key))
        elif op == "DoesNotExist":
            reqs.append((key, f"!{key}"))
    reqs.sort(key=lambda r: r[0])
    return ",".join(text for _, text in reqs)


def format_label_selector(selector: Mapping[str, Any] | None) -> str:
    """metav1.FormatLabelSelector: the selector string, `<none>` when it selects nothing/everything."""
    return selector_string(selector) or NONE


def container_cells(containers: Iterable[Any]) -> tuple[str, str]:
    """printers.go `layoutContainerCells`: comma-joined names and images."""
    items = [c for c in containers if isinstance(c, Mapping)]
    return ",".join(dstr(c, "name") for c in items), ",".join(dstr(c, "image") for c in items)


def join_host_port(host: str, port: int | str) -> str:
    """net.JoinHostPort: IPv6 literals go in brackets."""
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return f"[{host}]:{port}"
    except ValueError:
        if ":" in host:
            return f"[{host}]:{port}"
    return f"{host}:{port}"


def list_with_more(items: list[str], more: bool, count: int, maximum: int) -> str:
    """printers.go `listWithMoreString`: `a,b,c + 2 more...`, `<unset>` when empty."""
    ret = ",".join(items)
    if more:
        return f"{ret} + {count - maximum} more..."
    return ret or UNSET


def quantity(value: Any) -> str:
    """A resource.Quantity's String(); "0" for a missing quantity like Go's zero value."""
    if value is None or value == "":
        return "0"
    return str(value)


def int_or_string(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


_ACCESS_MODES = (
    ("ReadWriteOnce", "RWO"),
    ("ReadOnlyMany", "ROX"),
    ("ReadWriteMany", "RWX"),
    ("ReadWriteOncePod", "RWOP"),
)


def access_modes(modes: Iterable[Any]) -> str:
    """storage helper `GetAccessModesAsString`: RWO,ROX,RWX,RWOP in that fixed order."""
    present = set(modes)
    return ",".join(short for mode, short in _ACCESS_MODES if mode in present)


def lb_ingress(status: Mapping[str, Any] | None) -> str:
    """printers.go `loadBalancerStatusStringer` (wide, as the server always prints): sorted IPs/hosts."""
    result: set[str] = set()
    for ing in dlist(status, "ingress"):
        ip, host = dstr(ing, "ip"), dstr(ing, "hostname")
        if ip:
            result.add(ip)
        elif host:
            result.add(host)
    return ",".join(sorted(result))
