"""The storage interface every backend implements (memory, SQLite, etcd) and the cacher wraps.

Modelled on k8s.io/apiserver/pkg/storage/interfaces.go, reduced to what pocketkube needs:
keys are strings such as `/registry/core/pods/default/web-1`, values are opaque bytes (the
API layer stores JSON), and ONE cluster-wide, strictly increasing revision numbers every write.
The API layer uses an object's mod_revision as its resourceVersion, so revisions must never go
backwards, not even across restarts.

Semantics shared by all backends (checked by tests/conformance/storage_suite.py):
- create fails with KeyExistsError if the key exists.
- update is a compare-and-swap on the key's mod_revision (ConflictError carries the current kv).
- delete optionally checks the mod_revision first; it returns the deleted kv and the new revision.
- list returns keys under a prefix in byte order, optionally at an older revision (CompactedError
  if that revision was compacted away), with limit and a start key for pagination.
- watch yields every change under a prefix with revision > the given one, in revision order,
  with the previous value on MODIFIED and DELETED; a revision older than the compaction point
  raises CompactedError. revision 0 means "from now".
- compact(rev) forgets history at or below rev; reads of current state are unaffected.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

EventType = Literal["ADDED", "MODIFIED", "DELETED"]


class StorageError(Exception):
    """Base class of the errors a backend raises; the API layer maps them to Status errors."""


class KeyNotFoundError(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key not found: {key}")
        self.key = key


class KeyExistsError(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key exists: {key}")
        self.key = key


class ConflictError(StorageError):
    """The key's mod_revision is not the expected one; `current` is what is stored now."""

    def __init__(self, key: str, current: KeyValue | None) -> None:
        super().__init__(f"revision conflict on {key}")
        self.key = key
        self.current = current


class CompactedError(StorageError):
    """The requested revision is older than the oldest one the store still has."""

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(f"revision {requested} has been compacted (compacted revision {compacted})")
        self.requested = requested
        self.compacted = compacted


class FutureRevisionError(StorageError):
    """The requested revision is newer than the store's current revision."""

    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"revision {requested} is newer than the current revision {current}")
        self.requested = requested
        self.current = current


class UnavailableError(StorageError):
    """The backend cannot be reached right now (the API answers 503 or retries)."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    key: str
    value: bytes | None  # the new value; None for DELETED
    prev_value: bytes | None  # the value before this change; None for ADDED
    revision: int  # the revision of this change (the object's new mod_revision)


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[KeyValue]
    revision: int  # the revision the list was read at
    more: bool  # more keys follow the last item returned (limit reached)


UpdateFn = Callable[[KeyValue], Awaitable[bytes | None]]


class Storage(abc.ABC):
    """A key-value store with one monotonic revision, compare-and-swap and watch."""

    # Whether several API servers can share this store (decides leader election).
    supports_multiple_servers: bool = False

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections, create tables; called once before use."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release everything; pending watches end."""

    @abc.abstractmethod
    async def create(self, key: str, value: bytes) -> KeyValue:
        """Store a new key; KeyExistsError if present."""

    @abc.abstractmethod
    async def get(self, key: str) -> KeyValue:
        """The current value; KeyNotFoundError if absent."""

    @abc.abstractmethod
    async def list(self, prefix: str, *, revision: int = 0, limit: int = 0, start: str = "") -> ListResult:
        """Keys with `prefix`, in byte order, from `start` (inclusive), at `revision` (0 = latest)."""

    @abc.abstractmethod
    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KeyValue:
        """Replace the value if mod_revision == expected_revision, else ConflictError."""

    @abc.abstractmethod
    async def delete(self, key: str, *, expected_revision: int = 0) -> tuple[KeyValue, int]:
        """Delete (checking mod_revision unless 0); returns the deleted kv and the delete's revision."""

    @abc.abstractmethod
    def watch(self, prefix: str, *, revision: int = 0) -> AsyncIterator[WatchEvent]:
        """Changes under `prefix` with revision > `revision` (0 = from now), in order."""

    @abc.abstractmethod
    async def compact(self, revision: int) -> None:
        """Forget history at or below `revision`."""

    @abc.abstractmethod
    async def current_revision(self) -> int:
        """The newest revision of the store (of any key)."""

    async def compacted_revision(self) -> int:
        """The revision history was compacted at (0 if never)."""
        return 0

    async def guaranteed_update(self, key: str, update: UpdateFn, *, attempts: int = 64) -> KeyValue | None:
        """Read-modify-write with compare-and-swap, retried on conflict.

        `update` gets the current kv and returns the new value, or None to leave the key as it is
        (then the current kv is returned).  KeyNotFoundError propagates.
        """
        kv = await self.get(key)
        for _ in range(attempts):
            new_value = await update(kv)
            if new_value is None:
                return kv
            try:
                return await self.update(key, new_value, expected_revision=kv.mod_revision)
            except ConflictError as e:
                kv = e.current if e.current is not None else await self.get(key)
        raise ConflictError(key, kv)
