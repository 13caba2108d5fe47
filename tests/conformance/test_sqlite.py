"""Runs the storage conformance suite on SQLiteStorage, plus what only a file can show: persistence."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
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


_WRITER = """
import asyncio, sys
from pocketkube.storage.sqlite import SQLiteStorage

async def main():
    s = SQLiteStorage(sys.argv[1])
    await s.start()
    async def writer(w):
        for i in range(100000):
            kv = await s.create(f"/k/{w}/{i}", b"x" * 2000)
            print(kv.key, kv.mod_revision, flush=True)
    await asyncio.gather(*(writer(w) for w in range(20)))

asyncio.run(main())
"""


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, path], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parents[2])
    acked: dict[str, int] = {}
    try:
        assert proc.stdout is not None
        while len(acked) < 500:
            line = proc.stdout.readline()
            assert line, "writer process died"
            key, rev = line.split()
            acked[key] = int(rev)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    async def check() -> None:
        s = SQLiteStorage(path)
        await s.start()
        try:
            for key, rev in acked.items():
                assert (await s.get(key)).mod_revision == rev
            assert await s.current_revision() >= max(acked.values())
        finally:
            await s.close()

    asyncio.run(check())
