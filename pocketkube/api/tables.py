"""Objects → `meta.k8s.io/v1 Table`, the answer to `Accept: application/json;as=Table;…`.

kubectl `get` asks for a Table and prints its cells verbatim; a plain list would show only NAME
and AGE. This module picks the columns the way the API server does — a builtin printer
(table_printers.py), a CRD's additionalPrinterColumns (printer_columns.py), the CRD default
"Name, Age", or the generic "Name, Created At" — and embeds each row's object as
PartialObjectMetadata, the full object, or nothing (`includeObject`). Pure: `now` is a parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pocketkube.api.duration import parse_timestamp, since, utc_now
from pocketkube.api.errors import BadRequest
from pocketkube.api.printer_columns import JSONPathError, PrinterColumn
from pocketkube.api.resources import ResourceInfo
from pocketkube.api.table_format import CREATED_DESC, NAME_COLUMN, Column, d, name_of
from pocketkube.api.table_printers import printer_for
from pocketkube.api.table_printers_core import TablePrinter

TABLE_API_VERSION = "meta.k8s.io/v1"
INCLUDE_OBJECT_VALUES = ("Metadata", "Object", "None")

# The generic apiserver's default convertor (apiserver/pkg/registry/rest/table.go), used for
# builtin kinds with no printer: kubectl shows "NAME  CREATED AT" with an RFC 3339 time.
CREATED_AT_COLUMN = Column("Created At", "date", CREATED_DESC)
# The CRD default when a version declares no additionalPrinterColumns (serveDefaultColumnsIfEmpty).
CRD_AGE_COLUMN = Column("Age", "date", CREATED_DESC)


def _created_at(obj: dict[str, Any]) -> str:
    ts = parse_timestamp(d(obj, "metadata", "creationTimestamp"))
    if ts is None:
        return "0001-01-01T00:00:00Z"  # Go's zero time, as the default convertor prints it
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


DEFAULT_PRINTER = TablePrinter(
    (NAME_COLUMN, CREATED_AT_COLUMN),
    lambda o, now: [name_of(o), _created_at(o)],
)
CUSTOM_RESOURCE_DEFAULT_PRINTER = TablePrinter(
    (NAME_COLUMN, CRD_AGE_COLUMN),
    lambda o, now: [name_of(o), since(d(o, "metadata", "creationTimestamp"), now)],
)


def custom_columns_printer(printer_columns: Sequence[dict[str, Any]]) -> TablePrinter:
    """A printer for a CRD version's additionalPrinterColumns (Name is always first)."""
    if not printer_columns:
        return CUSTOM_RESOURCE_DEFAULT_PRINTER
    try:
        parsed = [PrinterColumn.from_spec(dict(spec)) for spec in printer_columns]
    except (JSONPathError, ValueError, TypeError) as e:
        raise BadRequest(f"unrecognized column definition: {e}") from e
    columns = (
        NAME_COLUMN,
        *(Column(c.name, c.type, c.description, c.priority, c.format) for c in parsed),
    )

    def cells(obj: dict[str, Any], now: datetime) -> list[Any]:
        return [name_of(obj), *(c.cell(obj, now) for c in parsed)]

    return TablePrinter(columns, cells)


def select_printer(
    info: ResourceInfo, printer_columns: Sequence[dict[str, Any]] | None = None
) -> TablePrinter:
    if printer_columns is not None or info.custom:
        return custom_columns_printer(printer_columns or ())
    return printer_for(info.group, info.kind) or DEFAULT_PRINTER


def column_definitions(
    info: ResourceInfo, printer_columns: Sequence[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    return [c.to_dict() for c in select_printer(info, printer_columns).columns]


def _row_object(info: ResourceInfo, obj: dict[str, Any], include_object: str) -> dict[str, Any] | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        full = dict(obj)
        full.setdefault("apiVersion", info.api_version)
        full.setdefault("kind", info.kind)
        return full
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": TABLE_API_VERSION,
        "metadata": obj.get("metadata") or {},
    }


def _table_metadata(list_metadata: dict[str, Any] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if not list_metadata:
        return meta
    for key in ("resourceVersion", "continue"):
        value = list_metadata.get(key)
        if value:
            meta[key] = str(value)
    remaining = list_metadata.get("remainingItemCount")
    if isinstance(remaining, int) and not isinstance(remaining, bool):
        meta["remainingItemCount"] = remaining
    return meta


def to_table(
    info: ResourceInfo,
    objects: list[dict[str, Any]],
    *,
    include_object: str = "Metadata",
    list_metadata: dict[str, Any] | None = None,
    now: datetime | None = None,
    printer_columns: Sequence[dict[str, Any]] | None = None,
    no_headers: bool = False,
) -> dict[str, Any]:
    """Render `objects` of resource `info` as a complete `meta.k8s.io/v1` Table.

    include_object: "Metadata" (default; PartialObjectMetadata), "Object" or "None" (omitted),
    as the `includeObject` query parameter; "" means the default. list_metadata: the list's
    `metadata` (resourceVersion, continue, remainingItemCount), copied as the server does; for
    a single-object GET pass `[obj]` and `{"resourceVersion": <the object's>}`.
    printer_columns: a CRD version's additionalPrinterColumns (`[]` gives the CRD default
    "Name, Age"). no_headers: omit columnDefinitions (`TableOptions.noHeaders`, used by watches).
    Raises BadRequest for an unknown include_object or an unusable printer-column path.
    """
    mode = include_object or "Metadata"
    if mode not in INCLUDE_OBJECT_VALUES:
        raise BadRequest(f'unrecognized includeObject value: "{include_object}"')
    moment = now if now is not None else utc_now()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    printer = select_printer(info, printer_columns)
    rows: list[dict[str, Any]] = []
    for obj in objects:
        row: dict[str, Any] = {"cells": printer.cells(obj, moment)}
        if printer.conditions is not None:
            conditions = printer.conditions(obj)
            if conditions:
                row["conditions"] = conditions
        embedded = _row_object(info, obj, mode)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    table: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": _table_metadata(list_metadata),
    }
    if not no_headers:
        table["columnDefinitions"] = [c.to_dict() for c in printer.columns]
    table["rows"] = rows
    return table
