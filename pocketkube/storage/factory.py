"""Choose the state store from the datastore URL, as k3s/kine do with --datastore-endpoint.

none or "" → SQLite at <data_dir>/state.db (the default, one server); sqlite://PATH → SQLite at
PATH; memory:// → in memory (tests); http://h1:2379,h2:2379 → etcd (several servers, so the
caller turns leader election on: see Storage.supports_multiple_servers).
"""

from __future__ import annotations

import os

from pocketkube.storage.interface import Storage
from pocketkube.storage.memory import MemoryStorage
from pocketkube.storage.sqlite import SQLiteStorage


def storage_from_url(url: str | None, *, data_dir: str) -> Storage:
    """The backend for `url`; ValueError names the accepted forms for anything else."""
    if not url:
        return SQLiteStorage(os.path.join(data_dir, "state.db"))
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"datastore URL {url!r} has no scheme; {_ACCEPTED}")
    if scheme == "sqlite":
        if not rest:
            raise ValueError(f"datastore URL {url!r} has no path; use sqlite:///abs/path.db or sqlite://rel.db")
        return SQLiteStorage(rest)
    if scheme == "memory":
        return MemoryStorage()
    if scheme in ("http", "https"):
        # k3s form: http://h1:2379,h2:2379 (the scheme written once) or full URLs, comma-separated.
        endpoints = [e if "://" in e else f"{scheme}://{e}" for e in rest.split(",") if e]
        if not endpoints:
            raise ValueError(f"datastore URL {url!r} names no etcd endpoint")
        from pocketkube.storage.etcd import EtcdStorage  # grpc is slow to import; only load it for etcd

        return EtcdStorage(endpoints)
    raise ValueError(f"datastore URL {url!r}: unknown scheme {scheme!r}; {_ACCEPTED}")


_ACCEPTED = "expected nothing (SQLite in the data dir), sqlite://PATH, memory:// or http://HOST:PORT[,HOST:PORT...]"
