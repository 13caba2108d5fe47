"""Informers: list, then watch from the list's resourceVersion, keeping a local cache of objects.

Handlers get (old, new) callbacks and should only enqueue keys (see workqueue.py). On a 410 Gone
(too old resourceVersion) or a broken stream the informer relists and reports the differences as
adds, updates and deletes, so controllers never miss a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from pocketkube.api import errors
from pocketkube.client.rest import ResourceClient

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Handler = Callable[[Obj | None, Obj | None], None]  # (old, new): add = (None, new), delete = (old, None)


def object_key(obj: Obj) -> str:
    md = obj.get("metadata") or {}
    ns = md.get("namespace")
    return f"{ns}/{md.get('name')}" if ns else str(md.get("name"))


def split_key(key: str) -> tuple[str, str]:
    ns, _, name = key.rpartition("/")
    return ns, name


class Informer:
    def __init__(self, client: ResourceClient, *, namespace: str | None = None, label_selector: str = "",
                 field_selector: str = "") -> None:
        self.client = client
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.store: dict[str, Obj] = {}
        self.handlers: list[Handler] = []
        self.synced = asyncio.Event()
        self.resource_version = ""
        self._task: asyncio.Task[None] | None = None

    def add_handler(self, handler: Handler) -> None:
        self.handlers.append(handler)

    def get(self, key: str) -> Obj | None:
        return self.store.get(key)

    def list(self) -> list[Obj]:
        return list(self.store.values())

    def _emit(self, old: Obj | None, new: Obj | None) -> None:
        for h in self.handlers:
            try:
                h(old, new)
            except Exception:
                log.exception("informer handler failed")

    async def _relist(self) -> None:
        items: dict[str, Obj] = {}
        cont = ""
        rv = ""
        while True:
            page = await self.client.list(self.namespace, label_selector=self.label_selector,
                                          field_selector=self.field_selector, limit=500, continue_=cont)
            for obj in page.get("items") or []:
                items[object_key(obj)] = obj
            md = page.get("metadata") or {}
            rv = rv or str(md.get("resourceVersion", ""))
            cont = str(md.get("continue") or "")
            if not cont:
                rv = str(md.get("resourceVersion", rv))
                break
        old = self.store
        self.store = items
        self.resource_version = rv
        for key, obj in items.items():
            prev = old.get(key)
            if prev is None:
                self._emit(None, obj)
            elif prev.get("metadata", {}).get("resourceVersion") != obj.get("metadata", {}).get("resourceVersion"):
                self._emit(prev, obj)
        for key, prev in old.items():
            if key not in items:
                self._emit(prev, None)
        self.synced.set()

    async def run(self) -> None:
        backoff = 0.1
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                async for etype, obj in self.client.watch(self.namespace, resource_version=self.resource_version,
                                                           label_selector=self.label_selector,
                                                           field_selector=self.field_selector):
                    backoff = 0.1
                    rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
                    if rv:
                        self.resource_version = rv
                    if etype == "BOOKMARK":
                        continue
                    key = object_key(obj)
                    prev = self.store.get(key)
                    if etype == "DELETED":
                        self.store.pop(key, None)
                        self._emit(prev or obj, None)
                    else:
                        self.store[key] = obj
                        self._emit(prev, obj)
            except asyncio.CancelledError:
                raise
            except errors.Gone:
                need_list = True
            except Exception as e:  # network trouble: back off and resume from the last RV
                log.debug("informer %s: %s; retrying", self.client.info.plural, e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def start(self, tg: asyncio.TaskGroup) -> None:
        self._task = tg.create_task(self.run(), name=f"informer-{self.client.info.plural}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
