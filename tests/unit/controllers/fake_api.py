"""An in-memory API for controller unit tests: resource clients over plain dicts, shared with the
controllers' informer stores, so a test calls `sync(key)` and reads the result back without a
server. Writes are visible at once (no cache lag) and fire the informers' handlers, so
expectations are met as they would be by watch events."""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime
from typing import Any

from pocketkube.api import errors, meta
from pocketkube.api.merge_patch import apply_merge_patch
from pocketkube.api.resources import ResourceInfo
from pocketkube.client.informer import Informer, object_key
from pocketkube.client.rest import APIClient, ClientConfig, ResourceClient
from pocketkube.controllers.base import Controller

Obj = dict[str, Any]


class FakeResource(ResourceClient):
    def __init__(self, api: FakeAPI, info: ResourceInfo) -> None:
        super().__init__(api, info)
        self.api = api
        self.store = api.objects.setdefault(info.plural, {})

    def _key(self, name: str, namespace: str | None) -> str:
        return f"{namespace}/{name}" if self.info.namespaced and namespace else name

    def _bump(self, obj: Obj) -> Obj:
        obj["metadata"]["resourceVersion"] = str(next(self.api.rv))
        return obj

    async def get(self, name: str, namespace: str | None = None) -> Obj:
        obj = self.store.get(self._key(name, namespace))
        if obj is None:
            raise errors.NotFound(f'{self.info.plural} "{name}" not found')
        return copy.deepcopy(obj)

    async def list(self, namespace: str | None = None, **_: Any) -> Obj:
        items = [copy.deepcopy(o) for o in self.store.values()
                 if namespace is None or o["metadata"].get("namespace") == namespace]
        return {"items": items, "metadata": {"resourceVersion": str(next(self.api.rv))}}

    async def create(self, obj: Obj, namespace: str | None = None, *, field_manager: str = "") -> Obj:
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        if namespace and self.info.namespaced:
            md["namespace"] = namespace
        if not md.get("name"):
            md["name"] = f"{md['generateName']}{next(self.api.suffix):05d}"
        key = self._key(md["name"], md.get("namespace"))
        if key in self.store:
            raise errors.AlreadyExists(f'{self.info.plural} "{md["name"]}" already exists')
        md.update(uid=meta.new_uid(), creationTimestamp=meta.format_time(self.api.clock), generation=1)
        obj.setdefault("apiVersion", self.info.api_version)
        obj.setdefault("kind", self.info.kind)
        if self.info.plural == "pods":
            obj.setdefault("status", {"phase": "Pending"})
        self.store[key] = self._bump(obj)
        self.api.calls.append(("create", self.info.plural, md["name"]))
        self.api.emit(self.info.plural, None, obj)
        return copy.deepcopy(obj)

    async def patch(self, name: str, patch: Any, namespace: str | None = None, *, patch_type: str = "merge",
                    subresource: str | None = None, field_manager: str = "", force: bool = False) -> Obj:
        key = self._key(name, namespace)
        current = self.store.get(key)
        if current is None:
            raise errors.NotFound(f'{self.info.plural} "{name}" not found')
        rv = ((patch.get("metadata") or {}) if isinstance(patch, dict) else {}).get("resourceVersion")
        if rv is not None and rv != current["metadata"]["resourceVersion"]:
            raise errors.Conflict(f'{self.info.plural} "{name}": the object has been modified')
        updated = apply_merge_patch(current, patch)
        if updated["metadata"].get("deletionTimestamp") and not updated["metadata"].get("finalizers"):
            del self.store[key]
            self.api.emit(self.info.plural, current, None)
        else:
            self.store[key] = self._bump(updated)
            self.api.emit(self.info.plural, current, updated)
        self.api.calls.append(("patch" + (f"/{subresource}" if subresource else ""), self.info.plural, name))
        return copy.deepcopy(updated)

    async def delete(self, name: str, namespace: str | None = None, *, propagation_policy: str | None = None,
                     grace_period_seconds: int | None = None, uid: str | None = None) -> Obj:
        key = self._key(name, namespace)
        current = self.store.get(key)
        if current is None:
            raise errors.NotFound(f'{self.info.plural} "{name}" not found')
        if uid and current["metadata"].get("uid") != uid:
            raise errors.Conflict("uid precondition failed")
        self.api.calls.append(("delete", self.info.plural, name))
        self.api.deletes.append((self.info.plural, name, propagation_policy))
        if current["metadata"].get("finalizers"):
            updated = copy.deepcopy(current)
            updated["metadata"]["deletionTimestamp"] = meta.format_time(self.api.clock)
            self.store[key] = self._bump(updated)
            self.api.emit(self.info.plural, current, updated)
        else:
            del self.store[key]
            self.api.emit(self.info.plural, current, None)
        return copy.deepcopy(current)


class FakeAPI(APIClient):
    def __init__(self) -> None:
        super().__init__(ClientConfig(server="http://fake.invalid"))
        self.objects: dict[str, dict[str, Obj]] = {}
        self.rv = itertools.count(1)
        self.suffix = itertools.count(1)
        self.calls: list[tuple[str, str, str]] = []
        self.deletes: list[tuple[str, str, str | None]] = []
        self.clock = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
        self.informers: dict[str, list[Informer]] = {}

    def emit(self, plural: str, old: Obj | None, new: Obj | None) -> None:
        for inf in self.informers.get(plural, []):
            inf._emit(copy.deepcopy(old), copy.deepcopy(new))

    def resource(self, group: str, version: str, plural: str) -> FakeResource:
        info = self.table.get(group, version, plural)
        assert info is not None, plural
        return FakeResource(self, info)

    def attach(self, controller: Controller) -> None:
        """Make the controller's informer caches the fake's stores (always in sync)."""
        for inf in controller.informers:
            inf.store = self.objects.setdefault(inf.client.info.plural, {})
            self.informers.setdefault(inf.client.info.plural, []).append(inf)

    def put(self, plural: str, obj: Obj) -> Obj:
        """Store an object as if created by someone else."""
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        md.setdefault("uid", meta.new_uid())
        md.setdefault("creationTimestamp", meta.format_time(self.clock))
        md.setdefault("generation", 1)
        md["resourceVersion"] = str(next(self.rv))
        self.objects.setdefault(plural, {})[object_key(obj)] = obj
        return obj

    async def remove(self, plural: str, key: str) -> None:
        """Delete as a user would (through the API, so handlers see it)."""
        ns, _, name = key.rpartition("/")
        info = next(i for i in self.table if i.plural == plural)
        await FakeResource(self, info).delete(name, ns or None)

    def get(self, plural: str, key: str) -> Obj:
        return self.objects[plural][key]

    def items(self, plural: str) -> list[Obj]:
        return sorted(self.objects.get(plural, {}).values(), key=lambda o: str(o["metadata"]["name"]))

    def set_pod_phase(self, key: str, phase: str, *, ready: bool | None = None) -> None:
        pod = self.objects["pods"][key]
        ready = phase == "Running" if ready is None else ready
        stamp = meta.format_time(self.clock)
        pod["status"] = {"phase": phase, "conditions": [
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": stamp}]}
        pod["metadata"]["resourceVersion"] = str(next(self.rv))
