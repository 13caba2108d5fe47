"""An in-memory Storage for unit tests, plus the in-process watch fan-out it shares with SQLite.

MemoryStorage keeps the current keys in a dict and every change in an event log, so list at an
older revision (undo the log backwards), watch from a past revision (replay the log) and
compaction (drop the head of the log) behave exactly as the durable backends do. Every method
runs to completion without awaiting, so each operation is atomic on the event loop.

WatchFanout delivers committed events to watchers in the same process; `follow` replays history
first and then switches to live events without gaps or duplicates (deduplicated by revision).
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

from pocketkube.storage.interface import (
    CompactedError,
    ConflictError,
    EventType,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    ListResult,
    Storage,
    WatchEvent,
)


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None: no bound)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # surrogates never appear in keys; skip past them
                nxt = 0xE000
            return prefix[:-1] + chr(nxt)
        prefix = prefix[:-1]
    return None


class _Watcher:
    __slots__ = ("prefix", "queue")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()


class WatchFanout:
    """Hands each committed event to every in-process watcher whose prefix matches."""

    def __init__(self) -> None:
        self._watchers: set[_Watcher] = set()
        self._closed = False

    def publish(self, events: Iterable[WatchEvent]) -> None:
        for event in events:
            for w in self._watchers:
                if event.key.startswith(w.prefix):
                    w.queue.put_nowait(event)

    def close(self) -> None:
        self._closed = True
        for w in self._watchers:
            w.queue.put_nowait(None)
        self._watchers.clear()

    async def follow(
        self, prefix: str, after: int, history: Callable[[int], Awaitable[list[WatchEvent]]]
    ) -> AsyncIterator[WatchEvent]:
        """Events under `prefix` with revision > `after`: history(after) first, then live ones.

        The watcher subscribes before reading history, so an event committed meanwhile is in the
        history, in the live queue, or both (then skipped by revision) — never lost.
        """
        watcher = _Watcher(prefix)
        if self._closed:
            return
        self._watchers.add(watcher)
        try:
            last = after
            for event in await history(after):
                if event.revision > last:
                    last = event.revision
                    yield event
            while True:
                live = await watcher.queue.get()
                if live is None:
                    return
                if live.revision > last:
                    last = live.revision
                    yield live
        finally:
            self._watchers.discard(watcher)


@dataclass(frozen=True, slots=True)
class _Change:
    revision: int
    key: str
    prev: KeyValue | None  # None: the change created the key
    new: KeyValue | None  # None: the change deleted the key

    def event(self) -> WatchEvent:
        prev_value = self.prev.value if self.prev is not None else None
        if self.new is None:
            return WatchEvent("DELETED", self.key, None, prev_value, self.revision)
        kind: EventType = "ADDED" if self.prev is None else "MODIFIED"
        return WatchEvent(kind, self.key, self.new.value, prev_value, self.revision)


class MemoryStorage(Storage):
    """Dicts and an event log; fast, exact, and gone when the process ends."""

    def __init__(self) -> None:
        self._kvs: dict[str, KeyValue] = {}
        self._log: list[_Change] = []
        self._revision = 0
        self._compacted = 0
        self._fanout = WatchFanout()

    async def close(self) -> None:
        self._fanout.close()

    def _commit(self, key: str, prev: KeyValue | None, new: KeyValue | None) -> None:
        self._revision += 1
        if new is None:
            del self._kvs[key]
        else:
            self._kvs[key] = new
        change = _Change(self._revision, key, prev, new)
        self._log.append(change)
        self._fanout.publish((change.event(),))

    async def create(self, key: str, value: bytes) -> KeyValue:
        if key in self._kvs:
            raise KeyExistsError(key)
        rev = self._revision + 1
        kv = KeyValue(key, value, rev, rev)
        self._commit(key, None, kv)
        return kv

    async def get(self, key: str) -> KeyValue:
        kv = self._kvs.get(key)
        if kv is None:
            raise KeyNotFoundError(key)
        return kv

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KeyValue:
        cur = self._kvs.get(key)
        if cur is None:
            raise KeyNotFoundError(key)
        if cur.mod_revision != expected_revision:
            raise ConflictError(key, cur)
        kv = KeyValue(key, value, cur.create_revision, self._revision + 1)
        self._commit(key, cur, kv)
        return kv

    async def delete(self, key: str, *, expected_revision: int = 0) -> tuple[KeyValue, int]:
        cur = self._kvs.get(key)
        if cur is None:
            raise KeyNotFoundError(key)
        if expected_revision and cur.mod_revision != expected_revision:
            raise ConflictError(key, cur)
        self._commit(key, cur, None)
        return cur, self._revision

    def _check_revision(self, revision: int) -> None:
        if revision > self._revision:
            raise FutureRevisionError(revision, self._revision)
        if revision < self._compacted:
            raise CompactedError(revision, self._compacted)

    async def list(self, prefix: str, *, revision: int = 0, limit: int = 0, start: str = "") -> ListResult:
        at = revision or self._revision
        self._check_revision(at)
        state = {k: kv for k, kv in self._kvs.items() if k.startswith(prefix)}
        # Undo the changes newer than `at`, newest first.
        first_newer = bisect.bisect_right(self._log, at, key=lambda c: c.revision)
        for change in reversed(self._log[first_newer:]):
            if not change.key.startswith(prefix):
                continue
            if change.prev is None:
                state.pop(change.key, None)
            else:
                state[change.key] = change.prev
        keys = sorted(k for k in state if k >= start)
        more = bool(limit) and len(keys) > limit
        if limit:
            keys = keys[:limit]
        return ListResult([state[k] for k in keys], at, more)

    def watch(self, prefix: str, *, revision: int = 0) -> AsyncIterator[WatchEvent]:
        return self._fanout.follow(prefix, revision or self._revision, self._history(prefix))

    def _history(self, prefix: str) -> Callable[[int], Awaitable[builtins.list[WatchEvent]]]:
        async def history(after: int) -> builtins.list[WatchEvent]:
            if after < self._compacted:
                raise CompactedError(after, self._compacted)
            first = bisect.bisect_right(self._log, after, key=lambda c: c.revision)
            return [c.event() for c in self._log[first:] if c.key.startswith(prefix)]

        return history

    async def compact(self, revision: int) -> None:
        if revision > self._revision:
            raise FutureRevisionError(revision, self._revision)
        if revision <= self._compacted:
            return
        first_kept = bisect.bisect_right(self._log, revision, key=lambda c: c.revision)
        del self._log[:first_kept]
        self._compacted = revision

    async def current_revision(self) -> int:
        return self._revision

    async def compacted_revision(self) -> int:
        return self._compacted
