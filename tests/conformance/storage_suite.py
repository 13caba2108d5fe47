"""The one conformance suite every storage backend must pass (cf. apiserver storage/testing/store_tests.go).

A backend's test module subclasses StorageSuite and provides a `store` fixture yielding a started
backend; `prefix` (conftest.py) gives each test its own key space so tests sharing one etcd do not
see each other. Assertions never assume absolute revision numbers, only their order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pocketkube.storage.interface import (
    CompactedError,
    ConflictError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Storage,
    WatchEvent,
)

MARKER = "~marker"


async def next_event(it: AsyncIterator[WatchEvent], wait_s: float = 10.0) -> WatchEvent:
    """The next event that is not a sync marker written by `watch_from_now`."""
    while True:
        event = await asyncio.wait_for(anext(it), wait_s)
        if not event.key.endswith(MARKER):
            return event


async def watch_from_now(store: Storage, prefix: str) -> AsyncIterator[WatchEvent]:
    """A watch with revision=0 that is known to be established (some backends start lazily).

    Writes a marker key until the watch reports it, so every later write is seen.
    """
    it = store.watch(prefix)
    pending = asyncio.ensure_future(anext(it))
    kv = await store.create(prefix + MARKER, b"0")
    for _ in range(100):
        done, _ = await asyncio.wait({pending}, timeout=0.1)
        if done:
            pending.result()
            return it
        kv = await store.update(kv.key, b"x", expected_revision=kv.mod_revision)
    pending.cancel()
    raise AssertionError("watch never became established")


async def drain(it: AsyncIterator[WatchEvent], n: int) -> list[WatchEvent]:
    return [await next_event(it) for _ in range(n)]


class StorageSuite:
    """Subclass as `TestXxx` and provide a `store` fixture."""

    async def test_create_get(self, store: Storage, prefix: str) -> None:
        kv = await store.create(prefix + "a", b"1")
        assert kv.key == prefix + "a" and kv.value == b"1"
        assert kv.create_revision == kv.mod_revision > 0
        assert await store.get(prefix + "a") == kv
        with pytest.raises(KeyExistsError):
            await store.create(prefix + "a", b"2")
        with pytest.raises(KeyNotFoundError):
            await store.get(prefix + "missing")
        assert (await store.get(prefix + "a")).value == b"1"

    async def test_update_cas(self, store: Storage, prefix: str) -> None:
        kv = await store.create(prefix + "a", b"1")
        kv2 = await store.update(prefix + "a", b"2", expected_revision=kv.mod_revision)
        assert kv2.value == b"2" and kv2.mod_revision > kv.mod_revision
        assert kv2.create_revision == kv.create_revision
        with pytest.raises(ConflictError) as err:
            await store.update(prefix + "a", b"3", expected_revision=kv.mod_revision)
        assert err.value.current == kv2
        assert await store.get(prefix + "a") == kv2
        with pytest.raises(KeyNotFoundError):
            await store.update(prefix + "missing", b"1", expected_revision=kv.mod_revision)

    async def test_delete(self, store: Storage, prefix: str) -> None:
        kv = await store.create(prefix + "a", b"1")
        with pytest.raises(ConflictError) as err:
            await store.delete(prefix + "a", expected_revision=kv.mod_revision + 1000)
        assert err.value.current == kv
        deleted, rev = await store.delete(prefix + "a", expected_revision=kv.mod_revision)
        assert deleted == kv and rev > kv.mod_revision
        with pytest.raises(KeyNotFoundError):
            await store.get(prefix + "a")
        with pytest.raises(KeyNotFoundError):
            await store.delete(prefix + "a")
        again = await store.create(prefix + "a", b"2")
        assert again.create_revision > rev
        deleted, rev2 = await store.delete(prefix + "a")
        assert deleted == again and rev2 > again.mod_revision
        assert await store.current_revision() >= rev2

    async def test_list_prefix_isolation(self, store: Storage, prefix: str) -> None:
        for key in ("a/b/1", "a/b/2", "a/bc", "a/b", "a/b/sub/x"):
            await store.create(prefix + key, key.encode())
        result = await store.list(prefix + "a/b/")
        assert [kv.key for kv in result.items] == [prefix + k for k in ("a/b/1", "a/b/2", "a/b/sub/x")]
        assert not result.more
        assert (await store.list(prefix + "nothing/")).items == []

    async def test_list_byte_order(self, store: Storage, prefix: str) -> None:
        names = ["b", "a", "B", "a/x", "a0", "~", "é", "Z", "a-"]
        for name in names:
            await store.create(prefix + name, b"v")
        got = [kv.key for kv in (await store.list(prefix)).items]
        assert got == sorted((prefix + n for n in names), key=lambda s: s.encode())

    async def test_list_pagination(self, store: Storage, prefix: str) -> None:
        keys = [f"{prefix}k{i:02d}" for i in range(7)]
        for key in keys:
            await store.create(key, b"v")
        page = await store.list(prefix, limit=3)
        assert [kv.key for kv in page.items] == keys[:3] and page.more
        seen = [kv.key for kv in page.items]
        at = page.revision
        await store.create(prefix + "k00a", b"later")  # not visible at the first page's revision
        while page.more:
            page = await store.list(prefix, revision=at, limit=3, start=page.items[-1].key + "\x00")
            assert page.revision == at
            seen += [kv.key for kv in page.items]
        assert seen == keys
        exact = await store.list(prefix, limit=7, revision=at)
        assert len(exact.items) == 7 and not exact.more

    async def test_list_at_older_revision(self, store: Storage, prefix: str) -> None:
        a = await store.create(prefix + "a", b"a1")
        b = await store.create(prefix + "b", b"b1")
        before = await store.current_revision()
        await store.update(prefix + "a", b"a2", expected_revision=a.mod_revision)
        await store.delete(prefix + "b")
        await store.create(prefix + "c", b"c1")
        old = await store.list(prefix, revision=before)
        assert old.revision == before
        assert old.items == [a, b]
        now = await store.list(prefix)
        assert [(kv.key, kv.value) for kv in now.items] == [(prefix + "a", b"a2"), (prefix + "c", b"c1")]
        assert now.revision > before

    async def test_list_future_revision(self, store: Storage, prefix: str) -> None:
        await store.create(prefix + "a", b"1")
        current = await store.current_revision()
        with pytest.raises(FutureRevisionError):
            await store.list(prefix, revision=current + 1000)

    async def test_list_compacted_revision(self, store: Storage, prefix: str) -> None:
        a = await store.create(prefix + "a", b"1")
        old = a.mod_revision
        a = await store.update(prefix + "a", b"2", expected_revision=a.mod_revision)
        a = await store.update(prefix + "a", b"3", expected_revision=a.mod_revision)
        await store.compact(a.mod_revision)
        assert await store.compacted_revision() >= a.mod_revision
        with pytest.raises(CompactedError):
            await store.list(prefix, revision=old)
        at = await store.list(prefix, revision=a.mod_revision)
        assert at.items == [a]

    async def test_revisions_strictly_increase(self, store: Storage, prefix: str) -> None:
        revs: list[int] = []
        kv = await store.create(prefix + "x", b"1")
        revs.append(kv.mod_revision)
        revs.append((await store.create(prefix + "y", b"1")).mod_revision)
        kv = await store.update(prefix + "x", b"2", expected_revision=kv.mod_revision)
        revs.append(kv.mod_revision)
        revs.append((await store.delete(prefix + "y"))[1])
        revs.append((await store.create(prefix + "y", b"2")).mod_revision)
        assert revs == sorted(set(revs))
        assert await store.current_revision() >= revs[-1]

    async def test_watch_from_now(self, store: Storage, prefix: str) -> None:
        it = await watch_from_now(store, prefix)
        try:
            a = await store.create(prefix + "a", b"1")
            ev = await next_event(it)
            assert (ev.type, ev.key, ev.value, ev.prev_value, ev.revision) == (
                "ADDED", prefix + "a", b"1", None, a.mod_revision)
        finally:
            await it.aclose()  # type: ignore[attr-defined]

    async def test_watch_event_types(self, store: Storage, prefix: str) -> None:
        start = await store.current_revision()
        it = store.watch(prefix, revision=start)
        try:
            a = await store.create(prefix + "a", b"1")
            a2 = await store.update(prefix + "a", b"2", expected_revision=a.mod_revision)
            _, drev = await store.delete(prefix + "a")
            events = await drain(it, 3)
            assert [(e.type, e.value, e.prev_value, e.revision) for e in events] == [
                ("ADDED", b"1", None, a.mod_revision),
                ("MODIFIED", b"2", b"1", a2.mod_revision),
                ("DELETED", None, b"2", drev),
            ]
        finally:
            await it.aclose()  # type: ignore[attr-defined]

    async def test_watch_replays_then_follows(self, store: Storage, prefix: str) -> None:
        a = await store.create(prefix + "a", b"1")
        b = await store.create(prefix + "b", b"1")
        a2 = await store.update(prefix + "a", b"2", expected_revision=a.mod_revision)
        it = store.watch(prefix, revision=a.mod_revision)  # changes after the create of a
        try:
            first = await drain(it, 2)
            assert [(e.key, e.revision) for e in first] == [(b.key, b.mod_revision), (a.key, a2.mod_revision)]
            c = await store.create(prefix + "c", b"1")
            live = await next_event(it)
            assert (live.key, live.revision, live.type) == (c.key, c.mod_revision, "ADDED")
        finally:
            await it.aclose()  # type: ignore[attr-defined]

    async def test_watch_prefix_filtering(self, store: Storage, prefix: str) -> None:
        start = await store.current_revision()
        it = store.watch(prefix + "in/", revision=start)
        try:
            await store.create(prefix + "out/x", b"1")
            await store.create(prefix + "inx", b"1")
            mine = await store.create(prefix + "in/x", b"1")
            ev = await next_event(it)
            assert (ev.key, ev.revision) == (mine.key, mine.mod_revision)
        finally:
            await it.aclose()  # type: ignore[attr-defined]

    async def test_watch_compacted_revision(self, store: Storage, prefix: str) -> None:
        a = await store.create(prefix + "a", b"1")
        for i in range(3):
            a = await store.update(prefix + "a", str(i).encode(), expected_revision=a.mod_revision)
        await store.compact(a.mod_revision)
        it = store.watch(prefix, revision=a.mod_revision - 3)
        with pytest.raises(CompactedError):
            await next_event(it)
        # Watching from the compaction point itself still works.
        it = store.watch(prefix, revision=a.mod_revision)
        try:
            b = await store.create(prefix + "b", b"1")
            ev = await next_event(it)
            assert (ev.key, ev.revision) == (b.key, b.mod_revision)
        finally:
            await it.aclose()  # type: ignore[attr-defined]

    async def test_watch_replay_after_compaction_keeps_prev_values(self, store: Storage, prefix: str) -> None:
        a = await store.create(prefix + "a", b"a1")
        a = await store.update(prefix + "a", b"a2", expected_revision=a.mod_revision)
        b = await store.create(prefix + "b", b"b1")
        await store.compact(b.mod_revision)
        a3 = await store.update(prefix + "a", b"a3", expected_revision=a.mod_revision)
        _, drev = await store.delete(prefix + "b")
        it = store.watch(prefix, revision=b.mod_revision)
        try:
            events = await drain(it, 2)
            assert [(e.type, e.key, e.value, e.prev_value, e.revision) for e in events] == [
                ("MODIFIED", a.key, b"a3", b"a2", a3.mod_revision),
                ("DELETED", b.key, None, b"b1", drev),
            ]
        finally:
            await it.aclose()  # type: ignore[attr-defined]
        assert (await store.list(prefix, revision=b.mod_revision)).items == [a, b]

    async def test_guaranteed_update_concurrent(self, store: Storage, prefix: str) -> None:
        key = prefix + "counter"
        await store.create(key, b"0")

        async def increment(kv: KeyValue) -> bytes:
            await asyncio.sleep(0)  # let the other writers interleave
            return str(int(kv.value) + 1).encode()

        async def worker() -> None:
            for _ in range(5):
                await store.guaranteed_update(key, increment)

        await asyncio.gather(*(worker() for _ in range(10)))
        assert (await store.get(key)).value == b"50"

        async def unchanged(kv: KeyValue) -> None:
            return None

        kv = await store.get(key)
        assert await store.guaranteed_update(key, unchanged) == kv
        with pytest.raises(KeyNotFoundError):
            await store.guaranteed_update(prefix + "missing", increment)

    async def test_many_concurrent_creates(self, store: Storage, prefix: str) -> None:
        kvs = await asyncio.gather(*(store.create(f"{prefix}{i:03d}", b"v" * 100) for i in range(100)))
        revs = [kv.mod_revision for kv in kvs]
        assert len(set(revs)) == 100
        listed = await store.list(prefix)
        assert [kv.key for kv in listed.items] == [f"{prefix}{i:03d}" for i in range(100)]
        assert listed.revision >= max(revs)

    async def test_concurrent_conflicting_creates(self, store: Storage, prefix: str) -> None:
        results = await asyncio.gather(*(store.create(prefix + "one", b"v") for _ in range(10)),
                                       return_exceptions=True)
        assert sum(isinstance(r, KeyValue) for r in results) == 1
        assert sum(isinstance(r, KeyExistsError) for r in results) == 9

    async def test_compaction_keeps_current_state(self, store: Storage, prefix: str) -> None:
        kvs = {}
        for i in range(10):
            kvs[i] = await store.create(f"{prefix}{i}", b"0")
        for i in range(0, 10, 2):
            kvs[i] = await store.update(f"{prefix}{i}", b"1", expected_revision=kvs[i].mod_revision)
        for i in range(0, 10, 3):
            await store.delete(f"{prefix}{i}")
            del kvs[i]
        await store.create(f"{prefix}0", b"again")
        before = await store.list(prefix)
        await store.compact(before.revision)
        await store.compact(before.revision)  # compacting again is harmless
        after = await store.list(prefix)
        assert after.items == before.items
        for kv in before.items:
            assert await store.get(kv.key) == kv
        with pytest.raises(KeyNotFoundError):
            await store.get(f"{prefix}3")
        more = await store.update(f"{prefix}1", b"2", expected_revision=kvs[1].mod_revision)
        assert more.mod_revision > before.revision

    async def test_close_ends_watches(self, store: Storage, prefix: str) -> None:
        it = await watch_from_now(store, prefix)

        async def consume() -> list[WatchEvent]:
            return [event async for event in it]

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.01)
        await store.close()
        await asyncio.wait_for(task, 10)
