"""EtcdStorage: the state store for several API servers sharing one etcd v3 cluster (aetcd, gRPC).

etcd already has the model the interface describes (one revision, mod_revision CAS, watch with
prev_kv, compaction), so this module only translates: create is a txn on create_revision == 0,
update and delete are txns on mod_revision, and the failure branch reads the key back so a
ConflictError carries the current value. Paginated and at-revision lists go through
`kvstub.Range` because aetcd's public get_range has no limit or revision (libraries.md §4).

Connection failures become UnavailableError, and the next call tries the next endpoint; open
watches then end, and their consumers re-watch from the last revision they saw.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import aetcd
import aetcd.exceptions
from aetcd import rpc

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
    StorageError,
    UnavailableError,
    WatchEvent,
)

_UNAVAILABLE = {rpc.StatusCode.UNAVAILABLE, rpc.StatusCode.DEADLINE_EXCEEDED, rpc.StatusCode.CANCELLED}
_CLIENT_UNAVAILABLE = (
    aetcd.exceptions.ConnectionFailedError,
    aetcd.exceptions.ConnectionTimeoutError,
    aetcd.exceptions.WatchTimeoutError,
)


_MAX_RECEIVE = 2**31 - 1


def _range_end(prefix: bytes) -> bytes:
    """etcd's range end for a prefix; b"\\0" (every key from the start key on) if there is none."""
    for i in reversed(range(len(prefix))):
        if prefix[i] < 0xFF:
            return prefix[:i] + bytes([prefix[i] + 1])
    return b"\0"


def _kv(kv: Any) -> KeyValue:
    return KeyValue(kv.key.decode(), kv.value, kv.create_revision, kv.mod_revision)


def parse_endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme != "http":
        raise ValueError(f"etcd endpoint {url!r}: only http:// is supported (no TLS client yet)")
    if not parts.hostname:
        raise ValueError(f"etcd endpoint {url!r} has no host")
    return parts.hostname, parts.port or 2379


class EtcdStorage(Storage):
    """A thin translation of the storage interface onto etcd v3 transactions and watches."""

    supports_multiple_servers = True

    def __init__(self, endpoints: builtins.list[str], *, timeout: int = 10) -> None:
        if not endpoints:
            raise ValueError("EtcdStorage needs at least one endpoint")
        self._endpoints = [parse_endpoint(e) for e in endpoints]
        self._timeout = timeout
        self._next = 0
        self._client: aetcd.Client | None = None
        self._broken: builtins.list[aetcd.Client] = []  # failed clients, closed on the next call
        self._compacted = 0  # the highest compaction revision seen; etcd does not report it
        self._closed = False

    async def start(self) -> None:
        await self.current_revision()

    async def close(self) -> None:
        self._closed = True
        clients, self._broken = [*self._broken, self._client], []
        self._client = None
        for client in clients:
            if client is not None:
                await client.close()

    async def _connect(self) -> aetcd.Client:
        if self._closed:
            raise UnavailableError("storage is closed")
        while self._broken:
            await self._broken.pop().close()
        if self._client is None:
            host, port = self._endpoints[self._next % len(self._endpoints)]
            # gRPC refuses answers over 4 MiB by default: a page of a few thousand pods is more.
            # kube-apiserver's etcd client lifts the limit the same way (MaxCallRecvMsgSize).
            self._client = aetcd.Client(host, port, timeout=self._timeout,
                                        options={"grpc.max_receive_message_length": _MAX_RECEIVE})
        client = self._client
        await client.connect()  # idempotent, and aetcd serialises concurrent connects
        return client

    @contextlib.contextmanager
    def _errors(self, client: aetcd.Client) -> Iterator[None]:
        try:
            yield
        except rpc.AioRpcError as e:
            if e.code() in _UNAVAILABLE:
                self._failover(client)
                raise UnavailableError(f"etcd: {e.details()}") from e
            raise StorageError(f"etcd: {e.code().name}: {e.details()}") from e
        except _CLIENT_UNAVAILABLE as e:
            self._failover(client)
            raise UnavailableError(f"etcd: {e}") from e

    def _failover(self, client: aetcd.Client) -> None:
        """Drop `client` (once, however many calls saw it fail); the next call tries the next endpoint."""
        if client is self._client:
            self._broken.append(client)
            self._client = None
            self._next += 1

    async def _range(self, key: bytes, **kwargs: Any) -> Any:
        client = await self._connect()
        with self._errors(client):
            return await client.kvstub.Range(rpc.RangeRequest(key=key, **kwargs), timeout=self._timeout)

    async def _txn(self, compare: builtins.list[Any], success: Any, key: bytes) -> Any:
        """Run success if every compare holds; otherwise read `key` back (responses[0])."""
        client = await self._connect()
        request = rpc.TxnRequest(
            compare=compare,
            success=[success],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key))],
        )
        with self._errors(client):
            return await client.kvstub.Txn(request, timeout=self._timeout)

    @staticmethod
    def _compare(key: bytes, target: str, result: str, value: int) -> Any:
        field = {"CREATE": "create_revision", "MOD": "mod_revision"}[target]
        return rpc.Compare(
            key=key,
            target=rpc.Compare.CompareTarget.Value(target),
            result=rpc.Compare.CompareResult.Value(result),
            **{field: value},
        )

    @staticmethod
    def _current(resp: Any) -> KeyValue | None:
        kvs = resp.responses[0].response_range.kvs
        return _kv(kvs[0]) if kvs else None

    async def create(self, key: str, value: bytes) -> KeyValue:
        k = key.encode()
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value))
        resp = await self._txn([self._compare(k, "CREATE", "EQUAL", 0)], put, k)
        if not resp.succeeded:
            raise KeyExistsError(key)
        rev = resp.header.revision
        return KeyValue(key, value, rev, rev)

    async def get(self, key: str) -> KeyValue:
        resp = await self._range(key.encode())
        if not resp.kvs:
            raise KeyNotFoundError(key)
        return _kv(resp.kvs[0])

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KeyValue:
        k = key.encode()
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value, prev_kv=True))
        compare = [self._compare(k, "MOD", "EQUAL", expected_revision), self._compare(k, "CREATE", "GREATER", 0)]
        resp = await self._txn(compare, put, k)
        if not resp.succeeded:
            current = self._current(resp)
            if current is None:
                raise KeyNotFoundError(key)
            raise ConflictError(key, current)
        prev = resp.responses[0].response_put.prev_kv
        return KeyValue(key, value, prev.create_revision, resp.header.revision)

    async def delete(self, key: str, *, expected_revision: int = 0) -> tuple[KeyValue, int]:
        k = key.encode()
        op = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k, prev_kv=True))
        compare = [self._compare(k, "CREATE", "GREATER", 0)]
        if expected_revision:
            compare.append(self._compare(k, "MOD", "EQUAL", expected_revision))
        resp = await self._txn(compare, op, k)
        if not resp.succeeded:
            current = self._current(resp)
            if current is None:
                raise KeyNotFoundError(key)
            raise ConflictError(key, current)
        prev = resp.responses[0].response_delete_range.prev_kvs[0]
        return _kv(prev), resp.header.revision

    async def list(self, prefix: str, *, revision: int = 0, limit: int = 0, start: str = "") -> ListResult:
        p = prefix.encode()
        first = max(p, start.encode()) or b"\0"
        try:
            resp = await self._range(first, range_end=_range_end(p), limit=limit, revision=revision)
        except StorageError as e:
            cause = e.__cause__
            if isinstance(cause, rpc.AioRpcError) and cause.code() == rpc.StatusCode.OUT_OF_RANGE:
                if "compacted" in (cause.details() or ""):
                    raise CompactedError(revision, await self.compacted_revision()) from e
                raise FutureRevisionError(revision, await self.current_revision()) from e
            raise
        return ListResult([_kv(kv) for kv in resp.kvs], revision or resp.header.revision, bool(resp.more))

    async def watch(self, prefix: str, *, revision: int = 0) -> AsyncIterator[WatchEvent]:
        """etcd's watch with prev_kv; with revision 0, "now" is when iteration starts (not the call)."""
        p = prefix.encode()
        client = await self._connect()
        try:
            with self._errors(client):
                watch = await client.watch(
                    p or b"\0", range_end=_range_end(p), start_revision=revision + 1 if revision else None, prev_kv=True
                )
        except aetcd.exceptions.RevisionCompactedError as e:
            self._compacted = max(self._compacted, e.compacted_revision)
            raise CompactedError(revision, e.compacted_revision) from e
        events = aiter(watch)
        try:
            with self._errors(client):
                async for event in events:
                    yield self._event(event)
        except aetcd.exceptions.RevisionCompactedError as e:
            self._compacted = max(self._compacted, e.compacted_revision)
            raise CompactedError(revision, e.compacted_revision) from e
        finally:
            await events.aclose()
            if client is self._client and not self._closed:
                with contextlib.suppress(Exception):
                    await watch.cancel()

    @staticmethod
    def _event(event: Any) -> WatchEvent:
        kv, prev = event.kv, event.prev_kv
        prev_value = prev.value if prev is not None else None
        if event.kind == "DELETE":
            return WatchEvent("DELETED", kv.key.decode(), None, prev_value, kv.mod_revision)
        kind: EventType = "ADDED" if kv.version == 1 else "MODIFIED"
        return WatchEvent(kind, kv.key.decode(), kv.value, None if kind == "ADDED" else prev_value, kv.mod_revision)

    async def compact(self, revision: int) -> None:
        client = await self._connect()
        try:
            with self._errors(client):
                await client.kvstub.Compact(rpc.CompactionRequest(revision=revision), timeout=self._timeout)
        except StorageError as e:
            cause = e.__cause__
            if not (isinstance(cause, rpc.AioRpcError) and cause.code() == rpc.StatusCode.OUT_OF_RANGE):
                raise
            if "compacted" not in (cause.details() or ""):
                raise FutureRevisionError(revision, await self.current_revision()) from e
            # Already compacted at or past `revision`: nothing to do.
        self._compacted = max(self._compacted, revision)

    async def current_revision(self) -> int:
        resp = await self._range(b"\0", count_only=True)
        return int(resp.header.revision)

    async def compacted_revision(self) -> int:
        """Found by bisection (etcd does not report it): the oldest revision a range still reads."""
        lo, hi = self._compacted, await self.current_revision()
        while lo < hi:  # invariant: reading at hi works; reading below lo is known to fail
            mid = (lo + hi) // 2
            if mid == 0:
                lo = 1
                continue
            try:
                await self._range(b"\0", revision=mid, count_only=True)
                hi = mid
            except StorageError as e:
                cause = e.__cause__
                if not (isinstance(cause, rpc.AioRpcError) and cause.code() == rpc.StatusCode.OUT_OF_RANGE):
                    raise
                lo = mid + 1
        self._compacted = max(self._compacted, lo if lo > 1 else 0)
        return self._compacted
