"""REST handlers for resources: decode the request, call the store, encode the answer.

One entry point (`ResourceHandlers.handle`) serves every verb of every resource and subresource;
watches are streamed by watch_stream.py and patches are applied by registry/patch.py. Query
parameters are read exactly as kube-apiserver reads them (dryRun, fieldManager, fieldValidation,
labelSelector, fieldSelector, limit, continue, resourceVersion, resourceVersionMatch, watch,
allowWatchBookmarks, timeoutSeconds, propagationPolicy, gracePeriodSeconds).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from pocketkube.api import errors, meta
from pocketkube.api.resources import REVIEW_PLURALS, ResourceInfo
from pocketkube.api.selectors import parse_field_selector, parse_label_selector
from pocketkube.apiserver import negotiation
from pocketkube.apiserver.authn import USER_KEY
from pocketkube.apiserver.registry.store import DeleteOptions, ListOptions, Store, WriteOptions
from pocketkube.apiserver.request_info import RequestInfo

if TYPE_CHECKING:
    from pocketkube.apiserver.server import APIServer

Obj = dict[str, Any]


def json_response(body: Any, status: int = 200, *, headers: Mapping[str, str] | None = None) -> web.Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return web.Response(body=raw, status=status, content_type="application/json", headers=headers)


def _bool(query: Mapping[str, str], name: str) -> bool:
    return query.get(name, "").lower() in ("1", "true")


def _int(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value in (None, ""):
        return None
    try:
        n = int(value)
    except ValueError as e:
        raise errors.BadRequest(f'invalid value for {name}: "{value}" is not an integer') from e
    return _int64(name, n)


def _int64(name: str, n: int) -> int:
    """kube parses these as int64 (strconv.ParseInt), so larger values are a 400, not a Python bigint."""
    if not -(1 << 63) <= n < (1 << 63):
        raise errors.BadRequest(f'invalid value for {name}: "{n}" is out of range for an int64')
    return n


def default_manager(request: web.Request) -> str:
    """kube names the manager of a write without fieldManager after the User-Agent's first word."""
    agent = request.headers.get("User-Agent", "")
    return agent.split("/", 1)[0][:128] or "unknown"


def write_options(request: web.Request) -> WriteOptions:
    query = request.query
    dry = query.getall("dryRun", [])
    for d in dry:
        if d not in ("", "All"):
            raise errors.BadRequest(f'Invalid dryRun value: "{d}"; supported values are "All"')
    manager = query.get("fieldManager", "") or default_manager(request)
    if len(manager) > 128:
        raise errors.BadRequest("fieldManager: Too long: may not be more than 128 bytes")
    return WriteOptions(dry_run="All" in dry, field_manager=manager)


def field_validation_mode(query: Mapping[str, str]) -> str:
    mode = query.get("fieldValidation", "") or "Warn"
    if mode not in ("Strict", "Warn", "Ignore"):
        raise errors.BadRequest(f'fieldValidation: Unsupported value: "{mode}": supported values: '
                                '"Ignore", "Strict", "Warn"')
    return mode


def list_options(query: Mapping[str, str], *, watch: bool = False) -> ListOptions:
    limit = _int(query, "limit") or 0
    if limit < 0:
        limit = 0
    opts = ListOptions(
        label_selector=parse_label_selector(query.get("labelSelector")),
        field_selector=parse_field_selector(query.get("fieldSelector")),
        limit=limit,
        continue_token=query.get("continue", ""),
        resource_version=query.get("resourceVersion", ""),
        resource_version_match=query.get("resourceVersionMatch", ""),
    )
    if opts.resource_version_match and opts.resource_version_match not in ("Exact", "NotOlderThan"):
        raise errors.BadRequest(f'resourceVersionMatch: Unsupported value: "{opts.resource_version_match}"')
    # A watch may use resourceVersionMatch without a resourceVersion (a consistent watch-list:
    # sendInitialEvents=true, NotOlderThan, ""); kube's validateWatchOptions has its own rules.
    if opts.resource_version_match and not opts.resource_version and not watch:
        raise errors.BadRequest("resourceVersionMatch is forbidden unless resourceVersion is provided")
    if opts.continue_token and opts.resource_version not in ("", "0"):
        raise errors.BadRequest("specifying resource version is not allowed when using continue")
    return opts


class ResourceHandlers:
    def __init__(self, server: APIServer) -> None:
        self.server = server

    async def handle(self, request: web.Request, ri: RequestInfo, info: ResourceInfo) -> web.StreamResponse:
        store = self.server.store_for(info)
        if info.namespaced and not ri.namespace and ri.name:
            raise errors.NotFound(f"the server could not find the requested resource ({ri.verb} {info.plural})")
        if not info.namespaced and ri.namespace:
            raise errors.NotFound("the server could not find the requested resource")
        if ri.subresource:
            return await self.server.subresources.handle(request, ri, info, store)
        verb = ri.verb
        if verb not in info.verbs and not (verb == "watch" and "list" in info.verbs):
            raise errors.MethodNotAllowed(f"{verb} is not supported on resources of kind \"{info.plural}\"")
        query = request.query
        accept = negotiation.parse_accept(request.headers.get("Accept", ""))
        if verb == "get":
            rv = query.get("resourceVersion", "")
            if accept.form == "object":
                # The cached object's JSON (orjson.dumps of the very object) is the answer as is.
                co = await store.get_cached(ri.namespace, ri.name, resource_version=rv)
                return json_response(co.raw)
            obj = await store.get(ri.namespace, ri.name, resource_version=rv)
            return self.render_object(info, obj, accept)
        if verb == "list":
            return await self.list(store, ri, info, accept, query)
        if verb == "watch":
            from pocketkube.apiserver.watch_stream import serve_watch

            return await serve_watch(request, self.server, store, ri.namespace, accept)
        if verb == "create":
            if ri.name:
                raise errors.MethodNotAllowed("POST to a named resource is not allowed")
            return await self.create(request, store, ri, info, accept)
        if verb in ("update", "patch") and not ri.name:
            # kube registers PUT and PATCH only on named objects: a collection answers 405
            raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
        if verb == "update":
            return await self.update(request, store, ri, info, accept)
        if verb == "patch":
            from pocketkube.apiserver.registry.patch import patch_resource

            obj, created, warnings = await patch_resource(self.server, request, store, ri)
            return self.render_object(info, obj, accept, status=201 if created else 200, warnings=warnings)
        if verb == "delete":
            return await self.delete(request, store, ri, info, accept)
        if verb == "deletecollection":
            return await self.delete_collection(request, store, ri, info)
        raise errors.MethodNotAllowed(f"verb {verb} is not supported")

    # ---- rendering -------------------------------------------------------------------------
    def render_object(self, info: ResourceInfo, obj: Obj, accept: negotiation.Accept, *, status: int = 200,
                      warnings: list[str] | None = None) -> web.Response:
        headers = _warning_headers(warnings)
        if accept.form == "table":
            from pocketkube.api.tables import to_table

            table = to_table(info, [obj], include_object=accept.include_object,
                             list_metadata={"resourceVersion": obj.get("metadata", {}).get("resourceVersion", "")},
                             **self.server.printer_kwargs(info))
            return json_response(table, status, headers=headers)
        if accept.form == "partial":
            return json_response(negotiation.partial_metadata(obj), status, headers=headers)
        return json_response(obj, status, headers=headers)

    async def list(self, store: Store, ri: RequestInfo, info: ResourceInfo, accept: negotiation.Accept,
                   query: Mapping[str, str]) -> web.Response:
        opts = list_options(query)
        result = await store.list(ri.namespace, opts)
        list_md: Obj = {"resourceVersion": result.resource_version}
        if result.continue_token:
            list_md["continue"] = result.continue_token
        if result.remaining is not None:
            list_md["remainingItemCount"] = result.remaining
        if accept.form == "table":
            from pocketkube.api.tables import to_table

            table = to_table(info, [co.obj for co in result.items], include_object=accept.include_object,
                             list_metadata=list_md, **self.server.printer_kwargs(info))
            return json_response(table)
        if accept.form == "partial":
            body = {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_md,
                    "items": [negotiation.partial_metadata(co.obj) for co in result.items]}
            return json_response(body)
        head = orjson.dumps({"kind": info.list_kind_name, "apiVersion": info.api_version, "metadata": list_md})
        # One join, one copy of the (possibly tens of MB) body: head, items with commas, tail.
        parts = [head[:-1] + b',"items":[']
        for co in result.items:
            parts.append(co.raw)
            parts.append(b",")
        if result.items:
            parts.pop()
        parts.append(b"]}")
        return json_response(b"".join(parts))

    # ---- writes ----------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> tuple[Obj, bytes]:
        if request.content_length is not None and request.content_length > negotiation.MAX_BODY_BYTES:
            raise errors.RequestEntityTooLarge(f"Request entity too large: limit is {negotiation.MAX_BODY_BYTES}")
        raw = await request.read()
        return negotiation.decode_object(raw, request.headers.get("Content-Type", "")), raw

    def check_kind(self, info: ResourceInfo, obj: Obj) -> None:
        # Like kube-apiserver's decoder, a body without kind/apiVersion takes them from the URL.
        kind = obj.setdefault("kind", info.kind)
        api_version = obj.setdefault("apiVersion", info.api_version)
        if api_version != info.api_version:
            raise errors.BadRequest(f"the API version in the data ({api_version}) does not match the expected API "
                                    f"version ({info.api_version})")
        if kind != info.kind:
            raise errors.BadRequest(f"the kind in the data ({kind}) does not match the expected kind ({info.kind})")
        md = obj.get("metadata")
        if md is not None and not isinstance(md, dict):
            raise errors.BadRequest("metadata: must be an object")

    async def create(self, request: web.Request, store: Store, ri: RequestInfo, info: ResourceInfo,
                     accept: negotiation.Accept) -> web.Response:
        obj, raw = await self._body(request)
        self.check_kind(info, obj)
        if info.plural in REVIEW_PLURALS:
            return json_response(review(info.plural, obj, request[USER_KEY]), 201)
        opts = write_options(request)
        warnings = self.server.check_fields(info, obj, raw, field_validation_mode(request.query))
        created = await store.create(ri.namespace, obj, opts)
        return self.render_object(info, created, accept, status=201, warnings=warnings)

    async def update(self, request: web.Request, store: Store, ri: RequestInfo, info: ResourceInfo,
                     accept: negotiation.Accept) -> web.Response:
        obj, raw = await self._body(request)
        self.check_kind(info, obj)
        opts = write_options(request)
        warnings = self.server.check_fields(info, obj, raw, field_validation_mode(request.query))
        updated = await store.update(ri.namespace, ri.name, obj, opts)
        return self.render_object(info, updated, accept, warnings=warnings)

    async def delete_options(self, request: web.Request) -> DeleteOptions:
        body: Obj = {}
        raw = await request.read()
        if raw.strip():
            decoded = negotiation.decode_body(raw, request.headers.get("Content-Type", "") or "application/json")
            if not isinstance(decoded, dict):
                raise errors.BadRequest("DeleteOptions must be an object")
            body = decoded
        q = request.query
        grace = _int(q, "gracePeriodSeconds")
        if grace is None and body.get("gracePeriodSeconds") is not None:
            try:
                grace = _int64("gracePeriodSeconds", int(body["gracePeriodSeconds"]))
            except (TypeError, ValueError) as e:
                raise errors.BadRequest("gracePeriodSeconds must be an integer") from e
        policy = q.get("propagationPolicy") or body.get("propagationPolicy")
        if policy is None:
            orphan = q.get("orphanDependents") or body.get("orphanDependents")
            if orphan in (True, "true"):
                policy = "Orphan"
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise errors.BadRequest(f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                                    '"Background", "Foreground", "Orphan"')
        pre = body.get("preconditions") or {}
        dry = [d for d in q.getall("dryRun", [])] + list(body.get("dryRun") or [])
        for d in dry:
            if d != "All":
                raise errors.BadRequest(f'Invalid dryRun value: "{d}"; supported values are "All"')
        if grace is not None and grace < 0:
            grace = 1 if grace != 0 else 0
        return DeleteOptions(grace_period_seconds=grace, propagation_policy=policy,
                             precondition_uid=pre.get("uid"), precondition_rv=pre.get("resourceVersion"),
                             dry_run="All" in dry)

    async def delete(self, request: web.Request, store: Store, ri: RequestInfo, info: ResourceInfo,
                     accept: negotiation.Accept) -> web.Response:
        opts = await self.delete_options(request)
        obj, deleted_now = await store.delete(ri.namespace, ri.name, opts)
        if not deleted_now or store.strategy.return_deleted_object:
            return self.render_object(info, obj, accept)
        md = obj.get("metadata", {})
        return json_response(negotiation.success_status(
            {"name": ri.name, "group": info.group, "kind": info.plural, "uid": md.get("uid", "")}))

    async def delete_collection(self, request: web.Request, store: Store, ri: RequestInfo,
                                info: ResourceInfo) -> web.Response:
        opts = await self.delete_options(request)
        lopts = list_options(request.query)
        lopts.limit = 0
        lopts.continue_token = ""
        result = await store.list(ri.namespace, lopts)
        deleted = []
        for co in result.items:
            try:
                obj, _ = await store.delete(meta.namespace_of(co.obj), meta.name_of(co.obj), copy.copy(opts))
            except errors.NotFound:
                continue
            deleted.append(obj)
        body = {"kind": info.list_kind_name, "apiVersion": info.api_version,
                "metadata": {"resourceVersion": result.resource_version}, "items": deleted}
        return json_response(body)


def review(plural: str, obj: Obj, user: Any) -> Obj:
    """Answer an access review or who-am-i. Authorization is not enforced yet (RBAC objects are
    stored, not evaluated): every authenticated user may do everything, and reviews say so."""
    out: Obj = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": {"creationTimestamp": None}}
    if plural == "selfsubjectreviews":
        out["status"] = {"userInfo": {"username": user.name, "groups": list(user.groups)}}
        return out
    out["spec"] = obj.get("spec") or {}
    out["status"] = {"allowed": True, "reason": "pocketkube does not enforce RBAC yet: authenticated users may do "
                                                 "everything"}
    return out


def _warning_headers(warnings: list[str] | None) -> dict[str, str] | None:
    if not warnings:
        return None
    # aiohttp takes one value per header name in a dict; several warnings are joined, which
    # RFC 7234 allows (a comma-separated list of warning-values).
    values = ", ".join('299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"' for w in warnings)
    return {"Warning": values}
