"""Creates per second of each storage backend, beside the raw floor measured in the same run.

SQLite is compared with a plain sqlite3 INSERT+COMMIT loop (WAL, synchronous=FULL) and the same
with 50 rows per commit; etcd with raw aetcd puts. Values are 2 KB JSON documents. Run:

    PYTHONPATH=. python bench/bench_storage.py [--seconds 2] [--no-etcd]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import orjson

from pocketkube.storage.interface import Storage
from pocketkube.storage.memory import MemoryStorage
from pocketkube.storage.sqlite import SQLiteStorage

VALUE = orjson.dumps({"kind": "Pod", "metadata": {"name": "web"}, "spec": {"pad": "x" * 1950}})
WRITERS = 50


async def rate(seconds: float, writers: int, op: Callable[[int], Awaitable[object]]) -> float:
    """Operations per second with `writers` tasks each calling op(i) until the time is up."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def writer(w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < deadline:
            await op(w * 10_000_000 + i)
            i += 1
            done += 1

    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for w in range(writers):
            tg.create_task(writer(w))
    return done / (time.perf_counter() - start)


def raw_sqlite(path: str, seconds: float, batch: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, value BLOB)")
    n, deadline, start = 0, time.perf_counter() + seconds, time.perf_counter()
    while time.perf_counter() < deadline:
        conn.execute("BEGIN IMMEDIATE")
        for _ in range(batch):
            conn.execute("INSERT INTO t (name, value) VALUES (?, ?)", (f"/k/{n}", VALUE))
            n += 1
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


async def backend(name: str, make: Callable[[], Storage], seconds: float, floor: str) -> None:
    store = make()
    await store.start()
    try:
        seq = await rate(seconds, 1, lambda i: store.create(f"/bench/s/{i}", VALUE))
        conc = await rate(seconds, WRITERS, lambda i: store.create(f"/bench/c/{i}", VALUE))
        gets = await rate(seconds / 2, 1, lambda i: store.get("/bench/s/0"))
        t = time.perf_counter()
        listed = await store.list("/bench/s/", limit=500)
        list_ms = (time.perf_counter() - t) * 1000
    finally:
        await store.close()
    print(f"{name:8} creates/s: {seq:8.0f} sequential, {conc:8.0f} with {WRITERS} writers | "
          f"gets/s {gets:8.0f} | list {len(listed.items)} in {list_ms:.1f} ms | {floor}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def etcd_server(workdir: str) -> Iterator[str]:
    client, peer = f"http://127.0.0.1:{_free_port()}", f"http://127.0.0.1:{_free_port()}"
    proc = subprocess.Popen(
        ["/usr/bin/etcd", "--name", "bench", "--data-dir", os.path.join(workdir, "etcd"),
         "--listen-client-urls", client, "--advertise-client-urls", client,
         "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", f"bench={peer}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(client + "/health", timeout=1) as resp:
                    if b'"true"' in resp.read():
                        break
            except OSError:
                time.sleep(0.1)
        yield client
    finally:
        proc.kill()
        proc.wait()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--no-etcd", action="store_true")
    args = parser.parse_args()
    s = args.seconds
    workdir = tempfile.mkdtemp(prefix="bench-storage-")
    try:
        one = raw_sqlite(os.path.join(workdir, "raw1.db"), s, 1)
        fifty = raw_sqlite(os.path.join(workdir, "raw50.db"), s, WRITERS)
        floor = f"raw sqlite3 FULL: {one:.0f}/s one row per commit, {fifty:.0f}/s {WRITERS} per commit"
        await backend("sqlite", lambda: SQLiteStorage(os.path.join(workdir, "state.db")), s, floor)
        await backend("memory", MemoryStorage, s, "")
        if not args.no_etcd:
            import aetcd

            from pocketkube.storage.etcd import EtcdStorage

            with etcd_server(workdir) as url:
                host, port = url.removeprefix("http://").split(":")
                async with aetcd.Client(host, int(port)) as client:
                    put = lambda i: client.put(f"/raw/{i}".encode(), VALUE)  # noqa: E731
                    raw1 = await rate(s, 1, put)
                    raw50 = await rate(s, WRITERS, put)
                floor = f"raw aetcd put: {raw1:.0f}/s sequential, {raw50:.0f}/s with {WRITERS} writers"
                await backend("etcd", lambda: EtcdStorage([url]), s, floor)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
