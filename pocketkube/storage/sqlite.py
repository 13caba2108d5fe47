"""SQLiteStorage: the default, single-server state store (one file, no extra process).

Schema in the spirit of k3s's kine: every write appends a row to `log`, and that row's
AUTOINCREMENT id IS the revision (sqlite_sequence keeps it monotonic across deletes and
restarts). A row records create/update/delete, the key's create revision and the row it
supersedes (prev_revision), so list-at-revision, watch-from-revision (with prev values, by joining
on prev_revision) and compaction all come from one table.

Writes: ONE writer thread owns the write connection (WAL, synchronous=FULL, so an acknowledged
write survives kill -9). Each logical operation, including the read-check-write of a CAS, runs
whole in one hop; the thread drains its queue and commits everything it found in one transaction
(group commit), then resolves the futures and publishes watch events on the event loop.
Reads: a point get runs inline on a loop-owned connection (an index seek costs less than a thread
hop); lists and watch replays, which can be large, run on a small reader pool.
"""

from __future__ import annotations

import asyncio
import builtins
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

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
    UnavailableError,
    WatchEvent,
)
from pocketkube.storage.memory import WatchFanout, prefix_end

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- the revision of this change
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER,               -- NULL: this row created the key (= id)
    prev_revision INTEGER NOT NULL,        -- the row this one supersedes, 0 for a create
    value BLOB                             -- NULL for a delete (the value is in the prev row)
);
CREATE INDEX IF NOT EXISTS log_name_id ON log (name, id);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_LATEST = "SELECT id, COALESCE(create_revision, id), deleted, value FROM log WHERE name = ? ORDER BY id DESC LIMIT 1"
_SEQ = "SELECT seq FROM sqlite_sequence WHERE name = 'log'"
_COMPACTED = "SELECT value FROM meta WHERE name = 'compacted'"
_INSERT = "INSERT INTO log (name, created, deleted, create_revision, prev_revision, value) VALUES (?, ?, ?, ?, ?, ?)"

# An operation run on the writer thread: returns (result, events to publish after commit).
_WriteFn = Callable[[sqlite3.Connection], tuple[Any, list[WatchEvent]]]


@dataclass(slots=True)
class _Op:
    fn: _WriteFn
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = None
    events: list[WatchEvent] = field(default_factory=list)


def _connect(path: str, *, readonly: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def _scalar(conn: sqlite3.Connection, sql: str) -> int:
    row = conn.execute(sql).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def _latest(conn: sqlite3.Connection, key: str) -> KeyValue | None:
    row = conn.execute(_LATEST, (key,)).fetchone()
    if row is None or row[2]:
        return None
    return KeyValue(key, row[3], row[1], row[0])


class SQLiteStorage(Storage):
    """A kine-style revision log in one SQLite file."""

    def __init__(self, path: str, *, readers: int = 2) -> None:
        self.path = path
        self._readers = readers
        self._fanout = WatchFanout()
        self._revision = 0  # the newest revision published to watchers
        # Writes handed to the writer thread, a loop iteration's worth at a time: one put (one
        # wake-up of the thread, one GIL hand-over) per iteration, not per write.
        self._queue: queue.SimpleQueue[builtins.list[_Op] | None] = queue.SimpleQueue()
        self._pending: builtins.list[_Op] = []
        self._writer: threading.Thread | None = None
        self._writer_done: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_conns: list[sqlite3.Connection] = []
        self._pool_local = threading.local()
        self._lock = threading.Lock()
        self._closed = False

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        conn = _connect(self.path, readonly=False)
        conn.executescript(_SCHEMA)
        self._revision = _scalar(conn, _SEQ)
        self._writer_done = self._loop.create_future()
        self._writer = threading.Thread(target=self._write_loop, args=(conn,), name="sqlite-writer", daemon=True)
        self._writer.start()
        self._read_conn = _connect(self.path, readonly=True)
        self._pool = ThreadPoolExecutor(self._readers, thread_name_prefix="sqlite-reader")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._fanout.close()
        if self._writer is not None and self._writer_done is not None:
            self._flush()
            self._queue.put(None)
            await self._writer_done
            self._writer.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for conn in [self._read_conn, *self._pool_conns]:
            if conn is not None:
                conn.close()

    # ---- the writer thread -----------------------------------------------------------------

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        assert self._loop is not None and self._writer_done is not None
        stopping = False
        try:
            while not stopping:
                first = self._queue.get()
                if first is None:
                    break
                batch = list(first)
                while True:  # group commit: take everything already waiting
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stopping = True
                        break
                    batch.extend(more)
                if not batch:
                    continue
                self._run_batch(conn, batch)
                self._loop.call_soon_threadsafe(self._deliver, batch)
        finally:
            conn.close()
            self._loop.call_soon_threadsafe(self._writer_done.set_result, None)

    def _run_batch(self, conn: sqlite3.Connection, batch: builtins.list[_Op]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                try:
                    op.result, op.events = op.fn(conn)
                except sqlite3.Error:
                    raise
                except Exception as e:  # every op checks before it writes, so nothing to undo
                    op.error = e
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for op in batch:
                op.error, op.events = UnavailableError(f"sqlite write failed: {e}"), []

    def _deliver(self, batch: builtins.list[_Op]) -> None:
        for op in batch:
            if op.events:
                self._revision = op.events[-1].revision
                self._fanout.publish(op.events)
            if op.future.done():
                continue
            if op.error is not None:
                op.future.set_exception(op.error)
            else:
                op.future.set_result(op.result)

    async def _write(self, fn: _WriteFn) -> Any:
        if self._closed or self._loop is None:
            raise UnavailableError("storage is closed")
        op = _Op(fn, self._loop.create_future())
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(op)
        return await op.future

    def _flush(self) -> None:
        if self._pending:
            ops, self._pending = self._pending, []
            self._queue.put(ops)

    # ---- reads -----------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._pool_local, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._pool_local.conn = conn
            with self._lock:
                self._pool_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        if self._closed or self._pool is None:
            raise UnavailableError("storage is closed")

        def run() -> Any:
            conn = self._reader()
            conn.execute("BEGIN")  # one snapshot for every statement of the read
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

        return await asyncio.get_running_loop().run_in_executor(self._pool, run)

    def _inline(self) -> sqlite3.Connection:
        if self._closed or self._read_conn is None:
            raise UnavailableError("storage is closed")
        return self._read_conn

    async def get(self, key: str) -> KeyValue:
        kv = _latest(self._inline(), key)
        if kv is None:
            raise KeyNotFoundError(key)
        return kv

    async def current_revision(self) -> int:
        # This process is the file's only writer (the writer thread), and every write's revision
        # is published here before the write's caller resumes: the newest revision any reader can
        # have been told about, without a query on every consistent GET/LIST.
        self._inline()  # UnavailableError once closed, as the query gave
        return self._revision

    async def compacted_revision(self) -> int:
        return _scalar(self._inline(), _COMPACTED)

    async def list(self, prefix: str, *, revision: int = 0, limit: int = 0, start: str = "") -> ListResult:
        end = prefix_end(prefix)
        # Walk the (name, id) index in key order and keep each key's newest row at `at`; the
        # correlated lookup lets LIMIT stop the walk early (a GROUP BY would read every key).
        sql = (
            "SELECT l.name, l.value, COALESCE(l.create_revision, l.id), l.id FROM log l"
            " WHERE l.name >= ?" + (" AND l.name < ?" if end is not None else "") + " AND l.id <= ?"
            " AND l.id = (SELECT MAX(m.id) FROM log m WHERE m.name = l.name AND m.id <= ?)"
            " AND l.deleted = 0 ORDER BY l.name" + (" LIMIT ?" if limit else "")
        )

        def read(conn: sqlite3.Connection) -> ListResult:
            current = _scalar(conn, _SEQ)
            at = revision or current
            if at > current:
                raise FutureRevisionError(at, current)
            compacted = _scalar(conn, _COMPACTED)
            if at < compacted:
                raise CompactedError(at, compacted)
            params: builtins.list[object] = [max(prefix, start)]
            if end is not None:
                params.append(end)
            params += [at, at]
            if limit:
                params.append(limit + 1)
            rows = conn.execute(sql, params).fetchall()
            more = bool(limit) and len(rows) > limit
            items = [KeyValue(r[0], r[1], r[2], r[3]) for r in rows[: limit or None]]
            return ListResult(items, at, more)

        result: ListResult = await self._read(read)
        return result

    def watch(self, prefix: str, *, revision: int = 0) -> AsyncIterator[WatchEvent]:
        return self._fanout.follow(prefix, revision or self._revision, self._history(prefix))

    def _history(self, prefix: str) -> Callable[[int], Any]:
        end = prefix_end(prefix)
        sql = (
            "SELECT l.id, l.name, l.created, l.deleted, l.value, p.value FROM log l"
            " LEFT JOIN log p ON p.id = l.prev_revision WHERE l.id > ? AND l.name >= ?"
            + (" AND l.name < ?" if end is not None else "") + " ORDER BY l.id"
        )

        def read(conn: sqlite3.Connection, after: int) -> builtins.list[WatchEvent]:
            compacted = _scalar(conn, _COMPACTED)
            if after < compacted:
                raise CompactedError(after, compacted)
            params: builtins.list[object] = [after, prefix] + ([end] if end is not None else [])
            events = []
            for rev, name, created, deleted, value, prev in conn.execute(sql, params):
                kind: EventType = "DELETED" if deleted else "ADDED" if created else "MODIFIED"
                events.append(WatchEvent(kind, name, None if deleted else value, prev, rev))
            return events

        async def history(after: int) -> builtins.list[WatchEvent]:
            events: builtins.list[WatchEvent] = await self._read(lambda conn: read(conn, after))
            return events

        return history

    # ---- writes (each function runs whole on the writer thread) ----------------------------

    async def create(self, key: str, value: bytes) -> KeyValue:
        def op(conn: sqlite3.Connection) -> tuple[KeyValue, builtins.list[WatchEvent]]:
            if _latest(conn, key) is not None:
                raise KeyExistsError(key)
            rev = conn.execute(_INSERT, (key, 1, 0, None, 0, value)).lastrowid
            assert rev is not None
            return KeyValue(key, value, rev, rev), [WatchEvent("ADDED", key, value, None, rev)]

        kv: KeyValue = await self._write(op)
        return kv

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KeyValue:
        def op(conn: sqlite3.Connection) -> tuple[KeyValue, builtins.list[WatchEvent]]:
            cur = _latest(conn, key)
            if cur is None:
                raise KeyNotFoundError(key)
            if cur.mod_revision != expected_revision:
                raise ConflictError(key, cur)
            params = (key, 0, 0, cur.create_revision, cur.mod_revision, value)
            rev = conn.execute(_INSERT, params).lastrowid
            assert rev is not None
            event = WatchEvent("MODIFIED", key, value, cur.value, rev)
            return KeyValue(key, value, cur.create_revision, rev), [event]

        kv: KeyValue = await self._write(op)
        return kv

    async def delete(self, key: str, *, expected_revision: int = 0) -> tuple[KeyValue, int]:
        def op(conn: sqlite3.Connection) -> tuple[tuple[KeyValue, int], builtins.list[WatchEvent]]:
            cur = _latest(conn, key)
            if cur is None:
                raise KeyNotFoundError(key)
            if expected_revision and cur.mod_revision != expected_revision:
                raise ConflictError(key, cur)
            params = (key, 0, 1, cur.create_revision, cur.mod_revision, None)
            rev = conn.execute(_INSERT, params).lastrowid
            assert rev is not None
            return (cur, rev), [WatchEvent("DELETED", key, None, cur.value, rev)]

        result: tuple[KeyValue, int] = await self._write(op)
        return result

    async def compact(self, revision: int) -> None:
        def op(conn: sqlite3.Connection) -> tuple[None, builtins.list[WatchEvent]]:
            current = _scalar(conn, _SEQ)
            if revision > current:
                raise FutureRevisionError(revision, current)
            if revision <= _scalar(conn, _COMPACTED):
                return None, []
            # Rows superseded at or below `revision` first (a tombstone's prev included), then
            # the tombstones; the newest row of each live key at `revision` stays, so every
            # later row can still find its prev value.
            conn.execute(
                "DELETE FROM log WHERE id IN (SELECT prev_revision FROM log WHERE prev_revision != 0 AND id <= ?)",
                (revision,),
            )
            conn.execute("DELETE FROM log WHERE deleted = 1 AND id <= ?", (revision,))
            conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('compacted', ?)", (revision,))
            return None, []

        await self._write(op)
