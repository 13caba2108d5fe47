"""fieldValidation for writes: refuse (Strict), warn about (Warn) or silently drop unknown fields.

kube-apiserver decodes built-in objects into Go structs, so unknown fields never reach storage
whatever the mode; for custom resources the CRD's structural schema prunes them the same way.
Wrong JSON types fail in every mode (400 for built-ins, 422 for custom resources).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pocketkube.api import errors, schema
from pocketkube.api.field_validation import (
    cannot_be_handled,
    check,
    custom_resource_schema,
    duplicate_fields,
    field_problems,
    strict_decoding_error,
)
from pocketkube.api.resources import ResourceInfo

if TYPE_CHECKING:
    from pocketkube.apiserver.server import APIServer

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def object_schema(server: APIServer, info: ResourceInfo) -> dict[str, Any] | None:
    if info.custom:
        return custom_resource_schema(server.crd_schema(info), group=info.group, version=info.version,
                                      kind=info.kind)
    return schema.definition_for(info.group, info.version, info.kind)


def prune(obj: Any, path: str) -> None:
    """Remove the field at a path like `spec.containers[0].foo` (no-op if it is not there)."""
    parts: list[str | int] = [m.group(1) if m.group(1) is not None else int(m.group(2))
                              for m in _SEGMENT.finditer(path)]
    cur = obj
    for p in parts[:-1]:
        if isinstance(p, int):
            if not isinstance(cur, list) or p >= len(cur):
                return
            cur = cur[p]
        else:
            if not isinstance(cur, dict) or p not in cur:
                return
            cur = cur[p]
    last = parts[-1] if parts else None
    if isinstance(cur, dict) and isinstance(last, str):
        cur.pop(last, None)


def check_fields(server: APIServer, info: ResourceInfo, obj: dict[str, Any], raw: bytes, mode: str) -> list[str]:
    sch = object_schema(server, info)
    if sch is None:
        return []
    found = check(obj, sch, custom=info.custom)
    if found.type_errors:
        if info.custom:
            raise errors.Invalid(info.group, info.kind, str((obj.get("metadata") or {}).get("name", "")), [
                # kube: field.TypeInvalid(path, <JSON type>, detail) →
                # `spec.size: Invalid value: "string": spec.size in body must be of type integer: "string"`
                errors.FieldError(p or "<root>", m, kind="FieldValueTypeInvalid",
                                  value=m.rsplit(": ", 1)[-1].strip('"') if ": " in m else None)
                for p, m in found.type_errors])
        raise errors.BadRequest(cannot_be_handled(info.kind, info.version, found.type_errors[0][1]))
    dups = duplicate_fields(raw) if raw and mode != "Ignore" else []
    problems = field_problems(unknown=found.unknown, duplicate=dups)
    if mode == "Strict" and problems:
        message = strict_decoding_error(problems)
        if raw:
            # A whole request body (create/update; patches pass b""): kube-apiserver's create and
            # update handlers wrap decode errors (handlers/rest.go transformDecodeError).
            message = cannot_be_handled(info.kind, info.version, message)
        raise errors.BadRequest(message)
    for path in found.unknown:
        prune(obj, path)
    return problems if mode == "Warn" else []
