"""The watch cache: every object of the store decoded in memory, fed by one storage watch.

Like kube-apiserver's cacher (k8s.io/apiserver/pkg/storage/cacher), it lets reads and watches
cost nothing of the store: LIST and GET are served from memory once the cache has caught up with
the store's current revision (a consistent read), and a write is fanned out to any number of
watchers from a ring buffer of recent events whose serialized form is built once and shared.

A watch may resume from any revision still in the ring buffer; older ones are answered 410 Gone
("too old resource version"), exactly as kube does, and the client relists. The buffer is trimmed
when the store is compacted, so 410 after compaction is honest.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pocketkube.storage.interface import CompactedError, KeyValue, Storage, WatchEvent

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class TooOldError(Exception):
    """The requested resourceVersion is older than the cache's window (answered 410 Gone)."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


@dataclass(slots=True)
class CachedObject:
    key: str
    obj: Obj  # with metadata.resourceVersion set; never mutated once cached
    raw: bytes  # orjson.dumps(obj)
    mod_revision: int


def decode(kv_key: str, value: bytes, revision: int) -> CachedObject:
    obj: Obj = orjson.loads(value)
    md = obj.get("metadata")
    if not isinstance(md, dict):
        md = obj["metadata"] = {}
    md["resourceVersion"] = str(revision)
    # orjson (>= 3.12) returns bytes that keep its whole output buffer (>= 4 KiB, a power of two
    # for larger objects); a cached copy holds only what it needs (ijl/orjson, see
    # home-assistant/core#181245). Costs ~0.2 us per object; saves ~3-15 KiB each.
    return CachedObject(kv_key, obj, bytes(memoryview(orjson.dumps(obj))), revision)


@dataclass(slots=True)
class CacheEvent:
    type: str
    key: str
    obj: CachedObject  # the new object; for DELETED the last state, with the delete's revision
    prev: CachedObject | None
    revision: int
    _lines: dict[str, bytes] = field(default_factory=dict)

    def line(self, event_type: str) -> bytes:
        """The watch stream line `{"type":..,"object":..}\\n`, serialized once per type."""
        cached = self._lines.get(event_type)
        if cached is None:
            raw = self.obj.raw
            if event_type == "DELETED" and self.type == "MODIFIED" and self.prev is not None:
                # The object left the watcher's filter: kube sends its previous state as DELETED,
                # carrying the new resourceVersion.
                prev = dict(self.prev.obj)
                prev["metadata"] = {**prev.get("metadata", {}), "resourceVersion": str(self.revision)}
                raw = orjson.dumps(prev)
            cached = b'{"type":"' + event_type.encode() + b'","object":' + raw + b"}\n"
            self._lines[event_type] = cached
        return cached


def resource_prefix(key: str) -> str:
    """`/registry/core/pods/default/web` → `/registry/core/pods/`."""
    parts = key.split("/", 4)
    return "/".join(parts[:4]) + "/"


Filter = Callable[[Obj], bool]


class CacheWatcher:
    """One client's watch: a bounded queue of events already filtered for it."""

    def __init__(self, prefix: str, matches: Filter | None, capacity: int) -> None:
        self.prefix = prefix
        self.matches = matches
        self.queue: asyncio.Queue[tuple[str, CacheEvent] | None] = asyncio.Queue(capacity)
        self.closed = False
        self.overflowed = False

    def offer(self, event: CacheEvent) -> None:
        if self.closed or not event.key.startswith(self.prefix):
            return
        kind = event.type
        if self.matches is not None:
            cur = self.matches(event.obj.obj)
            if kind == "MODIFIED":
                old = event.prev is not None and self.matches(event.prev.obj)
                if cur and not old:
                    kind = "ADDED"
                elif old and not cur:
                    kind = "DELETED"
                elif not cur:
                    return
            elif not cur:
                return
        try:
            self.queue.put_nowait((kind, event))
        except asyncio.QueueFull:
            self.overflowed = True
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)
            if self.queue.full():
                # Make room for the end marker: a consumer must learn it was closed.
                with contextlib.suppress(asyncio.QueueEmpty):
                    self.queue.get_nowait()
                self.queue.put_nowait(None)


class WatchCache:
    def __init__(self, storage: Storage, *, prefix: str = "/registry/", capacity: int = 100_000,
                 watcher_capacity: int = 10_000) -> None:
        self.storage = storage
        self.prefix = prefix
        self.capacity = capacity
        self.watcher_capacity = watcher_capacity
        self.revision = 0
        self.oldest = 0  # watches may start at any revision >= this
        self._objects: dict[str, dict[str, CachedObject]] = {}
        self._sorted: dict[str, list[str]] = {}
        self._events: collections.deque[CacheEvent] = collections.deque()
        self._watchers: dict[str, set[CacheWatcher]] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await self._relist()
        # Open the storage watch before returning: with revision 0 (an empty store) "from now"
        # must mean now, not whenever the task first runs, or writes in between would be missed.
        stream = self.storage.watch(self.prefix, revision=self.revision)
        self._task = asyncio.get_running_loop().create_task(self._run(stream), name="watch-cache")
        self._ready.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for watchers in self._watchers.values():
            for w in list(watchers):
                w.close()

    async def _relist(self) -> None:
        objects: dict[str, dict[str, CachedObject]] = {}
        start, revision = "", 0
        while True:
            res = await self.storage.list(self.prefix, revision=revision, limit=5000, start=start)
            revision = res.revision
            for kv in res.items:
                co = decode(kv.key, kv.value, kv.mod_revision)
                objects.setdefault(resource_prefix(kv.key), {})[kv.key] = co
            if not res.more or not res.items:
                break
            start = res.items[-1].key + "\x00"
        self._objects = objects
        self._sorted = {}
        self._events.clear()
        self.revision = revision
        self.oldest = revision
        for watchers in self._watchers.values():
            for w in list(watchers):
                w.close()

    async def _run(self, stream: AsyncIterator[WatchEvent]) -> None:
        backoff = 0.05
        while True:
            try:
                async for ev in stream:
                    await self._apply(ev)
                    backoff = 0.05
                # The store ended the watch (closing); stop quietly.
                return
            except asyncio.CancelledError:
                raise
            except CompactedError:
                log.warning("watch cache fell behind a compaction; relisting")
                await self._relist()
            except Exception:
                log.exception("watch cache: storage watch failed; retrying")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            stream = self.storage.watch(self.prefix, revision=self.revision)

    async def _apply(self, ev: WatchEvent) -> None:
        rp = resource_prefix(ev.key)
        bucket = self._objects.setdefault(rp, {})
        prev = bucket.get(ev.key)
        if ev.type == "DELETED":
            if prev is None:
                if ev.prev_value is None:
                    self._advance(ev.revision)
                    return
                prev = decode(ev.key, ev.prev_value, ev.revision)
            gone = decode(ev.key, ev.prev_value, ev.revision) if ev.prev_value is not None else prev
            bucket.pop(ev.key, None)
            self._sorted.pop(rp, None)
            event = CacheEvent("DELETED", ev.key, gone, prev, ev.revision)
        else:
            assert ev.value is not None
            co = decode(ev.key, ev.value, ev.revision)
            if prev is None:
                self._sorted.pop(rp, None)
            bucket[ev.key] = co
            event = CacheEvent("ADDED" if prev is None else "MODIFIED", ev.key, co, prev, ev.revision)
        self._events.append(event)
        if len(self._events) > self.capacity:
            dropped = self._events.popleft()
            self.oldest = dropped.revision
        for w in list(self._watchers.get(rp, ())):
            w.offer(event)
        self._advance(ev.revision)

    def _advance(self, revision: int) -> None:
        self.revision = max(self.revision, revision)
        if self._waiters:
            still = []
            for rev, fut in self._waiters:
                if rev <= self.revision:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    still.append((rev, fut))
            self._waiters = still

    # ---- reads -----------------------------------------------------------------------------
    async def wait_for(self, revision: int, wait_seconds: float = 5.0) -> None:
        """Wait until the cache has seen `revision` (used for consistent reads)."""
        if self.revision >= revision:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (revision, fut)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(fut, wait_seconds)
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    async def sync(self) -> None:
        """Catch up with the store's current revision: after this, reads are consistent."""
        if not self._ready.is_set():
            await self._ready.wait()
        revision = await self.storage.current_revision()
        if revision > self.revision:
            await self.wait_for(revision)

    def get(self, key: str) -> CachedObject | None:
        return self._objects.get(resource_prefix(key), {}).get(key)

    def list_prefix(self, prefix: str) -> list[CachedObject]:
        """Objects whose key starts with `prefix` (a resource prefix, maybe plus namespace), sorted."""
        rp = resource_prefix(prefix + "x")
        bucket = self._objects.get(rp)
        if not bucket:
            return []
        keys = self._sorted.get(rp)
        if keys is None:
            keys = sorted(bucket)
            self._sorted[rp] = keys
        if prefix == rp:
            return [bucket[k] for k in keys]
        lo = bisect.bisect_left(keys, prefix)
        hi = bisect.bisect_left(keys, prefix + "\xff")
        return [bucket[k] for k in keys[lo:hi]]

    def count(self, prefix: str) -> int:
        rp = resource_prefix(prefix + "x")
        if prefix == rp:
            return len(self._objects.get(rp, {}))
        return len(self.list_prefix(prefix))

    # ---- watch -----------------------------------------------------------------------------
    def watch(self, prefix: str, revision: int, matches: Filter | None) -> CacheWatcher:
        """Register a watcher for events after `revision`; replays buffered ones first."""
        if revision < self.oldest:
            raise TooOldError(revision, self.oldest)
        w = CacheWatcher(prefix, matches, self.watcher_capacity)
        rp = resource_prefix(prefix + "x")
        if revision < self.revision:
            for ev in self._replay_from(revision):
                if resource_prefix(ev.key) == rp:
                    w.offer(ev)
        self._watchers.setdefault(rp, set()).add(w)
        return w

    def _replay_from(self, revision: int) -> list[CacheEvent]:
        events = self._events
        # Binary search on the deque (revisions increase).
        lo, hi = 0, len(events)
        while lo < hi:
            mid = (lo + hi) // 2
            if events[mid].revision <= revision:
                lo = mid + 1
            else:
                hi = mid
        return [events[i] for i in range(lo, len(events))]

    def unwatch(self, w: CacheWatcher) -> None:
        w.close()
        rp = resource_prefix(w.prefix + "x")
        watchers = self._watchers.get(rp)
        if watchers is not None:
            watchers.discard(w)

    def compacted(self, revision: int) -> None:
        """The store was compacted at `revision`: watches from at or below it are now too old."""
        while self._events and self._events[0].revision <= revision:
            self._events.popleft()
        self.oldest = max(self.oldest, revision)

    def kv_of(self, co: CachedObject) -> KeyValue:
        return KeyValue(co.key, co.raw, 0, co.mod_revision)
