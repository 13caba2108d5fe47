"""Subresources: status, scale (autoscaling/v1 Scale), pods/binding, namespaces/finalize.

Streaming subresources (pods/log, exec, attach, portforward) belong to the node agent: the
streaming proxy (streaming.py) forwards them to the kubelet of the pod's node.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pocketkube.api import errors, meta
from pocketkube.api.resources import ResourceInfo
from pocketkube.api.selectors import format_selector
from pocketkube.apiserver import negotiation
from pocketkube.apiserver.handlers import field_validation_mode, write_options
from pocketkube.apiserver.registry.store import Store
from pocketkube.apiserver.request_info import RequestInfo

if TYPE_CHECKING:
    from pocketkube.apiserver.server import APIServer

Obj = dict[str, Any]

_STREAMING = frozenset({"log", "exec", "attach", "portforward", "proxy"})


def to_scale(info: ResourceInfo, obj: Obj) -> Obj:
    md = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    selector = spec.get("selector")
    scale_status: Obj = {"replicas": int(status.get("replicas") or 0)}
    sel_text = format_selector(selector) if isinstance(selector, dict) else ""
    if sel_text and sel_text != "<none>":
        scale_status["selector"] = sel_text
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in md},
        "spec": {"replicas": int(spec["replicas"]) if isinstance(spec.get("replicas"), int) else 1},
        "status": scale_status,
    }


class Subresources:
    def __init__(self, server: APIServer) -> None:
        self.server = server

    async def handle(self, request: web.Request, ri: RequestInfo, info: ResourceInfo,
                     store: Store) -> web.StreamResponse:
        sub = info.subresource(ri.subresource)
        if sub is None:
            raise errors.NotFound(f'the server could not find the requested resource ({ri.verb} {info.plural}/'
                                  f'{ri.subresource})')
        if ri.subresource in _STREAMING:
            stream = getattr(self.server, "streaming", None)
            if stream is None:
                raise errors.ServiceUnavailable(
                    f"{ri.subresource} is served by the pod's node agent, and no node agent is connected")
            response: web.StreamResponse = await stream.handle(request, ri, info, store)
            return response
        verb = ri.verb
        if verb not in sub.verbs:
            raise errors.MethodNotAllowed(f"{verb} is not supported on {info.plural}/{sub.name}")
        accept = negotiation.parse_accept(request.headers.get("Accept", ""))
        if sub.name == "status":
            return await self._status(request, ri, info, store, accept)
        if sub.name == "scale":
            return await self._scale(request, ri, info, store)
        if sub.name == "binding":
            return await self._binding(request, ri, store)
        if sub.name == "finalize":
            return await self._finalize(request, ri, info, store, accept)
        if sub.name == "eviction":
            return await self._eviction(request, ri, store)
        raise errors.NotFound(f"subresource {sub.name} is not served")

    async def _status(self, request: web.Request, ri: RequestInfo, info: ResourceInfo, store: Store,
                      accept: negotiation.Accept) -> web.Response:
        handlers = self.server.handlers
        if ri.verb == "get":
            return handlers.render_object(info, await store.get(ri.namespace, ri.name), accept)
        if ri.verb == "update":
            obj = negotiation.decode_object(await request.read(), request.headers.get("Content-Type", ""))
            handlers.check_kind(info, obj)
            opts = write_options(request)
            warnings = self.server.check_fields(info, obj, b"", field_validation_mode(request.query))
            updated = await store.update(ri.namespace, ri.name, obj, opts, subresource="status")
            return handlers.render_object(info, updated, accept, warnings=warnings)
        from pocketkube.apiserver.registry.patch import patch_resource

        patched, _, warnings = await patch_resource(self.server, request, store, ri, subresource="status")
        return handlers.render_object(info, patched, accept, warnings=warnings)

    async def _scale(self, request: web.Request, ri: RequestInfo, info: ResourceInfo, store: Store) -> web.Response:
        from pocketkube.apiserver.handlers import json_response

        if ri.verb == "get":
            return json_response(to_scale(info, await store.get(ri.namespace, ri.name)))
        opts = write_options(request)
        if ri.verb == "update":
            scale = negotiation.decode_object(await request.read(), request.headers.get("Content-Type", ""))
            patch_body: Any = None
        else:
            from pocketkube.apiserver.registry.patch import read_patch

            patch_body, patch_type = await read_patch(request)
            scale = {}
        expected = 0

        async def mutate(current: Obj) -> Obj:
            nonlocal expected
            cur_scale = to_scale(info, current)
            if patch_body is not None:
                from pocketkube.apiserver.registry.patch import apply_patch_document

                new_scale = apply_patch_document(cur_scale, patch_body, patch_type, None, "Scale")
            else:
                new_scale = scale
            if not isinstance(new_scale, dict):
                raise errors.BadRequest("Scale: must be an object")
            replicas = _object_field(new_scale, "spec").get("replicas")
            if replicas is None:
                replicas = 0  # Scale.spec.replicas is an omitempty int32: absent or null means 0
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise errors.Invalid("autoscaling", "Scale", ri.name, [errors.FieldError(
                    "spec.replicas", "must be greater than or equal to 0", value=replicas)])
            current.setdefault("spec", {})["replicas"] = replicas
            return current

        rv = str(_object_field(scale, "metadata").get("resourceVersion") or "")
        if rv:
            try:
                expected = int(rv)
            except ValueError as e:
                raise errors.BadRequest(f'invalid resource version "{rv}"') from e
        updated = await store.guaranteed_update(ri.namespace, ri.name, mutate, opts, expected_revision=expected,
                                                subresource="scale")
        return json_response(to_scale(info, updated))

    async def _binding(self, request: web.Request, ri: RequestInfo, store: Store) -> web.Response:
        from pocketkube.apiserver.handlers import json_response

        binding = negotiation.decode_object(await request.read(), request.headers.get("Content-Type", ""))
        target = binding.get("target") or {}
        node = target.get("name")
        if not node:
            raise errors.Invalid("", "Binding", ri.name, [errors.FieldError("target.name", "", kind="FieldValueRequired")])
        opts = write_options(request)

        async def mutate(pod: Obj) -> Obj:
            if pod["metadata"].get("deletionTimestamp"):
                raise errors.Conflict.for_resource("", "pods", ri.name, "pod is being deleted, cannot be assigned "
                                                   "to a host")
            spec = pod.setdefault("spec", {})
            if spec.get("nodeName"):
                raise errors.Conflict.for_resource("", "pods", ri.name, f"pod {ri.name} is already assigned to "
                                                   f"node \"{spec['nodeName']}\"")
            spec["nodeName"] = node
            status = pod.setdefault("status", {})
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": meta.now_rfc3339()})
            status["conditions"] = conds
            return pod

        # Binding writes spec.nodeName, which a normal update may not change: bypass the update
        # strategy by writing as a status-like internal update.
        await _internal_update(store, ri.namespace, ri.name, mutate, opts.dry_run)
        return json_response(negotiation.success_status({}) | {"code": 201}, 201)

    async def _finalize(self, request: web.Request, ri: RequestInfo, info: ResourceInfo, store: Store,
                        accept: negotiation.Accept) -> web.Response:
        from pocketkube.apiserver.registry.namespaces import NamespaceStrategy

        obj = negotiation.decode_object(await request.read(), request.headers.get("Content-Type", ""))
        strategy = store.strategy
        assert isinstance(strategy, NamespaceStrategy)
        opts = write_options(request)

        async def mutate(current: Obj) -> Obj:
            return strategy.prepare_for_finalize(obj, current)

        updated = await _internal_update(store, "", ri.name, mutate, opts.dry_run)
        return self.server.handlers.render_object(info, updated, accept)

    async def _eviction(self, request: web.Request, ri: RequestInfo, store: Store) -> web.Response:
        from pocketkube.apiserver.eviction import evict
        from pocketkube.apiserver.handlers import json_response

        body = negotiation.decode_object(await request.read(), request.headers.get("Content-Type", ""))
        await evict(self.server, store, ri.namespace, ri.name, body, write_options(request).dry_run)
        return json_response(negotiation.success_status({}) | {"code": 201}, 201)


async def _internal_update(store: Store, namespace: str, name: str, mutate: Any, dry_run: bool) -> Obj:
    """Write through the store without the update strategy (for writes kube does internally)."""
    from pocketkube.apiserver.registry.store import encode, with_rv
    from pocketkube.storage.interface import ConflictError

    for _ in range(32):
        co = await store.get_cached(namespace, name)
        new = await mutate(copy.deepcopy(co.obj))
        md = new["metadata"]
        if md.get("deletionTimestamp") and not md.get("finalizers") and not store.strategy.delete_pending(new):
            return await store._delete_now(namespace, name, co.mod_revision, new, dry_run)
        if dry_run:
            return dict(new)
        try:
            kv = await store.storage.update(store.key(namespace, name), encode(new), expected_revision=co.mod_revision)
        except ConflictError as e:
            if e.current is not None:
                await store.cache.wait_for(e.current.mod_revision)
            continue
        return with_rv(new, kv.mod_revision)
    raise store.conflict(name)


def _object_field(obj: Obj, name: str) -> Obj:
    """obj[name] as a dict ({} when absent); 400 when a client sent something else there."""
    value = obj.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.BadRequest(f"{name}: must be an object")
    return value
