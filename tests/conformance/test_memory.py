"""Runs the storage conformance suite on MemoryStorage."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pocketkube.storage.memory import MemoryStorage
from tests.conformance.storage_suite import StorageSuite


@pytest.fixture
async def store() -> AsyncIterator[MemoryStorage]:
    s = MemoryStorage()
    await s.start()
    yield s
    await s.close()


class TestMemory(StorageSuite):
    pass
