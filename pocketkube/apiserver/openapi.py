"""What kube-apiserver serves at /openapi/v3: an index of group-versions and one document each.

kubectl reads these for default `--validate=strict` (it must find a PATCH operation for the
object's GVK declaring `fieldValidation`, else create/apply fail without `--validate=false`) and
for `kubectl explain` (which walks `components.schemas` by `x-kubernetes-group-version-kind`).
The documents are generated from the resource table (openapi_paths.py) and the real Kubernetes
schemas (openapi_schemas.py); custom resources bring their CRD's openAPIV3Schema through the
`crd_schemas` callback. Serialised bytes and their sha512 hashes are cached per
`ResourceTable.generation`, so repeat requests cost a dict lookup.

HTTP semantics follow kube-openapi's handler3: the index links each document as
`/openapi/v3/<path>?hash=<HASH>`; a request with the current hash is answered with
`Cache-Control: public, immutable`, a stale hash is redirected (301) to the current one, and
`ETag`/`If-None-Match` give 304s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import orjson
from aiohttp import web

from pocketkube.api import schema as k8s_schema
from pocketkube.api.field_validation import custom_resource_schema
from pocketkube.api.resources import ResourceInfo, ResourceTable
from pocketkube.apiserver import openapi_schemas as oas
from pocketkube.apiserver.openapi_paths import DELETE_OPTIONS, PATCH, STATUS, resource_paths

CRDSchemaLookup = Callable[[ResourceInfo], "dict[str, Any] | None"]

_ALWAYS = (DELETE_OPTIONS, STATUS, PATCH)
_SECURITY = {"BearerToken": {"description": "Bearer Token authentication", "in": "header",
                             "name": "authorization", "type": "apiKey"}}


def gv_path(group: str, version: str) -> str:
    """The index key of a group-version: "api/v1" or "apis/<group>/<version>"."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _parse_gv_path(path: str) -> tuple[str, str] | None:
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "api":
        return "", parts[1]
    if len(parts) == 3 and parts[0] == "apis":
        return parts[1], parts[2]
    return None


def digest(data: bytes) -> str:
    """kube-openapi's document hash: sha512, upper-case hex."""
    return hashlib.sha512(data).hexdigest().upper()


@dataclass(frozen=True, slots=True)
class CachedDocument:
    data: bytes
    hash: str

    @property
    def etag(self) -> str:
        return f'"{self.hash}"'


class OpenAPIBuilder:
    """Builds and caches /openapi/v3 for one resource table."""

    def __init__(self, table: ResourceTable, crd_schemas: CRDSchemaLookup) -> None:
        self.table = table
        self.crd_schemas = crd_schemas
        self._generation = -1
        self._docs: dict[str, CachedDocument | None] = {}
        self._index: CachedDocument | None = None

    def invalidate(self) -> None:
        """Forget everything (e.g. a CRD's schema changed without a table change)."""
        self._generation = -1

    def _fresh(self) -> None:
        if self._generation != self.table.generation:
            self._generation = self.table.generation
            self._docs = {}
            self._index = None

    def group_versions(self) -> list[tuple[str, str]]:
        return sorted({(info.group, info.version) for info in self.table})

    # -- documents ------------------------------------------------------------------------------

    def document(self, path: str) -> dict[str, Any] | None:
        """The OpenAPI 3.0 document for "api/v1" or "apis/<group>/<version>", or None."""
        cached = self.cached(path)
        return None if cached is None else dict(orjson.loads(cached.data))

    def document_bytes(self, path: str) -> bytes | None:
        cached = self.cached(path)
        return None if cached is None else cached.data

    def cached(self, path: str) -> CachedDocument | None:
        self._fresh()
        path = path.strip("/")
        if path not in self._docs:
            doc = self._build(path)
            if doc is None:
                self._docs[path] = None
            else:
                data = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
                self._docs[path] = CachedDocument(data, digest(data))
        return self._docs[path]

    def _build(self, path: str) -> dict[str, Any] | None:
        gv = _parse_gv_path(path)
        if gv is None:
            return None
        infos = sorted(self.table.in_group_version(*gv), key=lambda i: i.plural)
        if not infos:
            return None
        custom: dict[str, dict[str, Any]] = {}
        custom_kinds: dict[tuple[str, str, str], str] = {}
        for info in infos:
            if not info.custom:
                continue
            name = oas.custom_component_name(info.group, info.version, info.kind)
            list_name = oas.custom_component_name(info.group, info.version, info.list_kind_name)
            custom[name] = oas.convert(custom_resource_schema(
                self.crd_schemas(info), group=info.group, version=info.version, kind=info.kind))
            custom[list_name] = oas.custom_list_schema(
                group=info.group, version=info.version, kind=info.kind, list_kind=info.list_kind_name)
            custom_kinds[(info.group, info.version, info.kind)] = name
            custom_kinds[(info.group, info.version, info.list_kind_name)] = list_name

        def lookup(group: str, version: str, kind: str) -> str | None:
            return custom_kinds.get((group, version, kind)) or k8s_schema.definition_name(group, version, kind)

        paths: dict[str, Any] = {}
        roots: list[str] = list(_ALWAYS)
        for info in infos:
            paths.update(resource_paths(info, lookup))
            for kind in (info.kind, info.list_kind_name):
                found = lookup(info.group, info.version, kind)
                if found is not None:
                    roots.append(found)
            for sub in info.subresources:
                found = lookup(sub.group or info.group, sub.version or info.version, sub.kind)
                if found is not None:
                    roots.append(found)
        schemas: dict[str, Any] = {n: oas.convert_definition(n)
                                   for n in oas.reachable(roots, custom.values())}
        schemas.update(custom)
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": k8s_schema.SCHEMA_VERSION},
            "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": _SECURITY},
            "security": [{"BearerToken": []}],
        }

    # -- index ----------------------------------------------------------------------------------

    def index(self) -> dict[str, Any]:
        """`{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=…"}, …}}`."""
        return dict(orjson.loads(self.cached_index().data))

    def index_bytes(self) -> bytes:
        return self.cached_index().data

    def cached_index(self) -> CachedDocument:
        self._fresh()
        if self._index is None:
            paths: dict[str, Any] = {}
            for group, version in self.group_versions():
                path = gv_path(group, version)
                doc = self.cached(path)
                if doc is not None:
                    paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={doc.hash}"}
            data = orjson.dumps({"paths": paths}, option=orjson.OPT_SORT_KEYS)
            self._index = CachedDocument(data, digest(data))
        return self._index


# -- HTTP -----------------------------------------------------------------------------------------

_JSON_ACCEPTS = ("application/json", "application/*", "*/*")


def _accepts_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    if not accept.strip():
        return True
    return any(part.split(";")[0].strip() in _JSON_ACCEPTS for part in accept.split(","))


def _not_modified(request: web.Request, etag: str) -> bool:
    header = request.headers.get("If-None-Match")
    return header is not None and (header.strip() == "*" or etag in (t.strip() for t in header.split(",")))


def _respond(request: web.Request, doc: CachedDocument, headers: dict[str, str]) -> web.Response:
    headers = {**headers, "ETag": doc.etag}
    if _not_modified(request, doc.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=doc.data, content_type="application/json", headers=headers)


def openapi_routes(builder: OpenAPIBuilder) -> list[web.RouteDef]:
    """aiohttp routes for GET /openapi/v3 and GET /openapi/v3/<group-version path>."""

    async def index(request: web.Request) -> web.StreamResponse:
        if not _accepts_json(request):
            return web.Response(status=406, text="406 Not Acceptable")
        return _respond(request, builder.cached_index(), {"Cache-Control": "no-cache, private"})

    async def document(request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        doc = builder.cached(path)
        if doc is None:
            return web.Response(status=404, text="404 page not found\n")
        if not _accepts_json(request):
            return web.Response(status=406, text="406 Not Acceptable")
        wanted = request.query.get("hash")
        if wanted is None:
            return _respond(request, doc, {"Cache-Control": "no-cache, private"})
        if wanted != doc.hash:
            raise web.HTTPMovedPermanently(f"/openapi/v3/{path.strip('/')}?hash={doc.hash}")
        expires = format_datetime(datetime.now(UTC) + timedelta(days=365), usegmt=True)
        return _respond(request, doc, {"Cache-Control": "public, immutable", "Expires": expires,
                                       "Vary": "Accept"})

    return [web.get("/openapi/v3", index), web.get("/openapi/v3/{path:.+}", document)]
