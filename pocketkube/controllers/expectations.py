"""Controller expectations: don't act again before seeing the effects of your own writes.

After a ReplicaSet controller creates 3 pods it expects 3 ADDED events; until they arrive (or
5 minutes pass) a sync must not count the pods again and create 3 more. Same for deletions.
(kubernetes pkg/controller/controller_utils.go ControllerExpectations.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

EXPIRY_SECONDS = 300.0


@dataclass
class _Expect:
    adds: int
    dels: int
    at: float


class Expectations:
    def __init__(self) -> None:
        self._by_key: dict[str, _Expect] = {}

    def expect(self, key: str, *, adds: int = 0, dels: int = 0) -> None:
        self._by_key[key] = _Expect(adds, dels, time.monotonic())

    def satisfied(self, key: str) -> bool:
        e = self._by_key.get(key)
        if e is None:
            return True
        if (e.adds <= 0 and e.dels <= 0) or time.monotonic() - e.at > EXPIRY_SECONDS:
            self._by_key.pop(key, None)
            return True
        return False

    def observed_add(self, key: str) -> None:
        e = self._by_key.get(key)
        if e is not None:
            e.adds -= 1

    def observed_delete(self, key: str) -> None:
        e = self._by_key.get(key)
        if e is not None:
            e.dels -= 1

    def lower(self, key: str, *, adds: int = 0, dels: int = 0) -> None:
        """A create or delete we expected failed: stop waiting for it."""
        e = self._by_key.get(key)
        if e is not None:
            e.adds -= adds
            e.dels -= dels

    def forget(self, key: str) -> None:
        self._by_key.pop(key, None)
