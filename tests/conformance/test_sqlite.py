"""Runs the storage conformance suite on SQLiteStorage, plus what only a file can show: persistence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pocketkube.storage.interface import UnavailableError
from pocketkube.storage.sqlite import SQLiteStorage
from tests.conformance.storage_suite import StorageSuite


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    s = SQLiteStorage(str(tmp_path / "state.db"))
    await s.start()
    yield s
    await s.close()


class TestSQLite(StorageSuite):
    pass


async def test_reopen_keeps_data_and_revisions(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    s = SQLiteStorage(path)
    await s.start()
    a = await s.create("/r/a", b"1")
    await s.update("/r/a", b"2", expected_revision=a.mod_revision)
    b = await s.create("/r/b", b"1")
    _, last = await s.delete("/r/b", expected_revision=b.mod_revision)
    await s.compact(last)  # compaction deletes the newest row; the revision must not go back
    await s.close()

    s = SQLiteStorage(path)
    await s.start()
    try:
        assert await s.current_revision() == last
        assert await s.compacted_revision() == last
        assert (await s.get("/r/a")).value == b"2"
        c = await s.create("/r/c", b"1")
        assert c.mod_revision == last + 1
        assert [kv.key for kv in (await s.list("/r/")).items] == ["/r/a", "/r/c"]
    finally:
        await s.close()


async def test_group_commit_under_concurrency(tmp_path: Path) -> None:
    s = SQLiteStorage(str(tmp_path / "state.db"))
    await s.start()
    try:
        kvs = await asyncio.gather(*(s.create(f"/g/{i:03d}", b"x") for i in range(200)))
        assert sorted(kv.mod_revision for kv in kvs) == list(range(1, 201))
    finally:
        await s.close()


async def test_closed_store_is_unavailable(tmp_path: Path) -> None:
    s = SQLiteStorage(str(tmp_path / "state.db"))
    await s.start()
    await s.close()
    with pytest.raises(UnavailableError):
        await s.create("/x", b"1")
    with pytest.raises(UnavailableError):
        await s.get("/x")


def test_factory_picks_the_backend_from_the_url(tmp_path: Path) -> None:
    from pocketkube.storage.etcd import EtcdStorage
    from pocketkube.storage.factory import storage_from_url
    from pocketkube.storage.memory import MemoryStorage

    default = storage_from_url(None, data_dir=str(tmp_path))
    assert isinstance(default, SQLiteStorage) and default.path == str(tmp_path / "state.db")
    assert isinstance(storage_from_url("", data_dir="/d"), SQLiteStorage)
    explicit = storage_from_url("sqlite:///var/lib/x.db", data_dir="/d")
    assert isinstance(explicit, SQLiteStorage) and explicit.path == "/var/lib/x.db"
    assert isinstance(storage_from_url("memory://", data_dir="/d"), MemoryStorage)
    etcd = storage_from_url("http://h1:2379,h2:2380", data_dir="/d")
    assert isinstance(etcd, EtcdStorage) and etcd.supports_multiple_servers
    assert etcd._endpoints == [("h1", 2379), ("h2", 2380)]
    for bad in ("postgres://x", "nonsense", "sqlite://", "http://", "https://h1:2379"):
        with pytest.raises(ValueError):
            storage_from_url(bad, data_dir="/d")
