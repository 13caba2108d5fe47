"""PATCH: JSON patch, merge patch, strategic merge patch and server-side apply.

The patch is applied to the current object inside the store's compare-and-swap loop, so a
concurrent writer makes the patch re-apply to the newer object (kube's patcher does the same);
a patch that names a resourceVersion turns that into a precondition. Server-side apply creates
the object when it is missing and keeps managedFields (api/apply.py).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import jsonpatch
import jsonpointer
from aiohttp import web

from pocketkube.api import errors, meta, schema
from pocketkube.api.merge_patch import apply_merge_patch
from pocketkube.api.strategic_merge import apply_strategic_merge_patch
from pocketkube.apiserver import negotiation
from pocketkube.apiserver.handlers import field_validation_mode, write_options
from pocketkube.apiserver.registry.store import Store
from pocketkube.apiserver.request_info import RequestInfo

if TYPE_CHECKING:
    from pocketkube.apiserver.server import APIServer

Obj = dict[str, Any]


async def read_patch(request: web.Request) -> tuple[Any, str]:
    patch_type = negotiation.media_type(request.headers.get("Content-Type", ""))
    if patch_type not in negotiation.PATCH_TYPES:
        raise errors.UnsupportedMediaType(
            f'the body of the request was in an unknown format - accepted media types include: '
            f'{", ".join(negotiation.PATCH_TYPES)}')
    if request.content_length is not None and request.content_length > negotiation.MAX_BODY_BYTES:
        raise errors.RequestEntityTooLarge(f"Request entity too large: limit is {negotiation.MAX_BODY_BYTES}")
    raw = await request.read()
    return negotiation.decode_body(raw, patch_type), patch_type


def apply_patch_document(current: Obj, body: Any, patch_type: str, sch: dict[str, Any] | None, kind: str) -> Obj:
    """Apply a JSON, merge or strategic merge patch to `current` (never mutated)."""
    if patch_type == negotiation.JSON_PATCH:
        if not isinstance(body, list):
            raise errors.BadRequest("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        try:
            patch = jsonpatch.JsonPatch(body)
            result = patch.apply(copy.deepcopy(current))
        except jsonpatch.InvalidJsonPatch as e:
            raise errors.BadRequest(f"invalid JSON patch: {e}") from e
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
            raise errors.Invalid("", kind, meta.name_of(current), [
                errors.FieldError("", f"the JSON patch could not be applied: {e}", kind="FieldValueInvalid")]) from e
        except (TypeError, KeyError, IndexError, AttributeError) as e:
            raise errors.BadRequest(f"invalid JSON patch: {e}") from e
        if not isinstance(result, dict):
            raise errors.BadRequest("the JSON patch produced something that is not an object")
        return result
    if not isinstance(body, dict):
        raise errors.BadRequest("the patch must be a JSON object")
    if patch_type == negotiation.MERGE_PATCH:
        result = apply_merge_patch(current, body)
    elif patch_type == negotiation.STRATEGIC_MERGE_PATCH:
        result = apply_strategic_merge_patch(current, body, sch)
    else:
        raise errors.UnsupportedMediaType(f"unsupported patch type {patch_type}")
    if not isinstance(result, dict):
        raise errors.BadRequest("the patch produced something that is not an object")
    return result


async def patch_resource(server: APIServer, request: web.Request, store: Store, ri: RequestInfo, *,
                         subresource: str = "") -> tuple[Obj, bool, list[str]]:
    """Apply the request's patch; returns (object, created, warnings)."""
    info = store.info
    body, patch_type = await read_patch(request)
    query = request.query
    opts = write_options(request)
    mode = field_validation_mode(query)
    sch = None if info.custom else schema.definition_for(info.group, info.version, info.kind)
    if patch_type == negotiation.STRATEGIC_MERGE_PATCH and info.custom:
        raise errors.UnsupportedMediaType("the body of the request was in an unknown format - accepted media types "
                                          "include: application/json-patch+json, application/merge-patch+json, "
                                          "application/apply-patch+yaml")
    warnings: list[str] = []
    if patch_type == negotiation.APPLY_PATCH:
        return await _server_side_apply(server, request, store, ri, body, opts, mode, subresource)

    expected = [0]

    async def mutate(current: Obj) -> Obj:
        rv = current["metadata"].get("resourceVersion")
        new = apply_patch_document(current, body, patch_type, sch, info.kind)
        new_md = new.get("metadata")
        if not isinstance(new_md, dict):
            raise errors.BadRequest("metadata: the patched object has no metadata")
        if new_md.get("resourceVersion") not in (None, "", rv):
            raise store.conflict(ri.name)
        new_md["resourceVersion"] = rv
        # kube's patcher runs checkName and the namespace check on the patched object (handlers/patch.go)
        if new_md.get("name") != ri.name:
            raise errors.BadRequest(f"the name of the object ({new_md.get('name') or ''}) does not match the name "
                                    f"on the URL ({ri.name})")
        if ri.namespace and new_md.get("namespace") not in (None, "", ri.namespace):
            raise errors.BadRequest("the namespace of the provided object does not match the namespace sent on "
                                    "the request")
        if new.get("kind") != info.kind or new.get("apiVersion") != info.api_version:
            raise errors.BadRequest(f"the patch may not change the object's kind or apiVersion "
                                    f"({new.get('apiVersion')}/{new.get('kind')})")
        warnings[:] = server.check_fields(info, new, b"", mode)
        return new

    obj = await store.guaranteed_update(ri.namespace, ri.name, mutate, opts, expected_revision=expected[0],
                                        subresource=subresource)
    return obj, False, warnings


async def _server_side_apply(server: APIServer, request: web.Request, store: Store, ri: RequestInfo, body: Any,
                             opts: Any, mode: str, subresource: str) -> tuple[Obj, bool, list[str]]:
    from pocketkube.api import apply as ssa

    info = store.info
    if not isinstance(body, dict):
        raise errors.BadRequest("the apply patch must be an object")
    if not request.query.get("fieldManager"):
        raise errors.Invalid(info.group, info.kind, ri.name, [
            errors.FieldError("fieldManager", "is required for apply patch", kind="FieldValueRequired")])
    server.handlers.check_kind(info, body)
    md = body.get("metadata") or {}
    if md.get("name") and md["name"] != ri.name:
        raise errors.BadRequest(f"the name of the object ({md['name']}) does not match the name on the URL ({ri.name})")
    force = request.query.get("force", "").lower() in ("1", "true")
    sch = None if info.custom else schema.definition_for(info.group, info.version, info.kind)
    warnings = server.check_fields(info, body, b"", mode)
    now = meta.now_rfc3339()
    # Through the main resource, status belongs to the status subresource (and the reverse).
    reset: tuple[str, ...] = ()
    if store.strategy.has_status:
        reset = ("status",) if not subresource else ()
    try:
        await store.get_cached(ri.namespace, ri.name)
        exists = True
    except errors.NotFound:
        exists = False
    if not exists:
        if subresource:
            raise store.not_found(ri.name)
        obj = ssa.apply(None, body, manager=opts.field_manager, force=force, schema=sch, now=now,
                        reset_fields=reset)
        obj.setdefault("metadata", {})["name"] = ri.name
        try:
            created = await store.create(ri.namespace, obj, _no_manager(opts))
            return created, True, warnings
        except errors.AlreadyExists:
            pass  # raced with a create: apply to what is there now

    async def mutate(current: Obj) -> Obj:
        applied: Obj = ssa.apply(current, body, manager=opts.field_manager, force=force, schema=sch, now=now,
                                 subresource=subresource, reset_fields=reset)
        return applied

    obj = await store.guaranteed_update(ri.namespace, ri.name, mutate, opts, subresource=subresource,
                                        operation="Apply")
    return obj, False, warnings


def _no_manager(opts: Any) -> Any:
    out = copy.copy(opts)
    out.field_manager = ""
    return out
