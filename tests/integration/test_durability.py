"""Acknowledged writes survive `kill -9`, and resourceVersions never go backwards.

A write storm from several threads (creates, and updates guarded by the acknowledged
resourceVersion) runs against a server of our own; the server is SIGKILLed in the middle of it
and restarted on the same data directory. Every write answered 2xx must then be there with its
content — an update at least at its acknowledged version, since a write in flight at the kill may
or may not have landed — and new writes must get larger resourceVersions than any seen before.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import ServerProcess, start_server

THREADS = 8
STORM_SECONDS = 1.5
NS = "storm"
CM = f"/api/v1/namespaces/{NS}/configmaps"


@dataclass
class Acked:
    """What one writer was told: the last acknowledged version and resourceVersion of each object."""

    version: dict[str, int] = field(default_factory=dict)
    rv: dict[str, int] = field(default_factory=dict)
    rvs: list[int] = field(default_factory=list)  # every acknowledged resourceVersion, in order
    in_flight: str | None = None  # the object of the write that got no answer (may or may not exist)
    error: str = ""


def _request(conn: http.client.HTTPSConnection, method: str, path: str,
             body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    raw = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=raw, headers={"Content-Type": "application/json", "Accept": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def _connect(server: ServerProcess, ctx: ssl.SSLContext) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=10)


def _payload(name: str, version: int) -> dict[str, str]:
    return {"version": str(version), "owner": name, "blob": f"{name}:{version}:" + "x" * 200}


def _writer(server: ServerProcess, ctx: ssl.SSLContext, tid: int, stop: threading.Event, acked: Acked) -> None:
    conn = _connect(server, ctx)
    i = 0
    try:
        while not stop.is_set():
            i += 1
            if i % 3 == 0 and acked.version:  # update one of ours, guarded by its acknowledged RV
                name = sorted(acked.version)[i % len(acked.version)]
                version = acked.version[name] + 1
                body = {"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "resourceVersion": str(acked.rv[name])},
                        "data": _payload(name, version)}
                method, path = "PUT", f"{CM}/{name}"
            else:
                name, version = f"w{tid}-{i}", 0
                body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                        "data": _payload(name, version)}
                method, path = "POST", CM
            acked.in_flight = name
            status, obj = _request(conn, method, path, body)
            if status not in (200, 201):
                acked.error = f"{method} {name}: {status} {obj}"
                return
            acked.in_flight = None
            rv = int(obj["metadata"]["resourceVersion"])
            acked.version[name], acked.rv[name] = version, rv
            acked.rvs.append(rv)
    except (OSError, http.client.HTTPException, json.JSONDecodeError):
        return  # the server died under us: this write was never acknowledged
    finally:
        conn.close()


def test_acknowledged_writes_survive_kill_9(tmp_path: Any) -> None:
    data_dir = str(tmp_path / "durable")
    srv = start_server(data_dir)
    try:
        ctx = srv.ssl_context()
        conn = _connect(srv, ctx)
        status, _ = _request(conn, "POST", "/api/v1/namespaces",
                             {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        conn.close()
        assert status == 201

        stop = threading.Event()
        results = [Acked() for _ in range(THREADS)]
        threads = [threading.Thread(target=_writer, args=(srv, ctx, t, stop, results[t]), daemon=True)
                   for t in range(THREADS)]
        for t in threads:
            t.start()
        time.sleep(STORM_SECONDS)
        srv.proc.kill()  # SIGKILL mid-storm: no shutdown hooks, no flush
        srv.proc.wait(5)
        stop.set()
        for t in threads:
            t.join(10)
            assert not t.is_alive()

        assert not [r.error for r in results if r.error]
        all_rvs = [rv for r in results for rv in r.rvs]
        assert len(all_rvs) >= 50, f"the storm barely ran ({len(all_rvs)} acknowledged writes)"
        assert len(set(all_rvs)) == len(all_rvs), "two acknowledged writes share a resourceVersion"
        for r in results:
            assert r.rvs == sorted(r.rvs), "one writer's sequential writes went back in resourceVersion"
        highest_before = max(all_rvs)

        srv = start_server(data_dir, port=srv.port)
        ctx = srv.ssl_context()
        conn = _connect(srv, ctx)
        status, listed = _request(conn, "GET", CM)
        assert status == 200
        stored = {o["metadata"]["name"]: o for o in listed["items"]}
        assert int(listed["metadata"]["resourceVersion"]) >= highest_before

        lost, stale = [], []
        for r in results:
            for name, version in r.version.items():
                obj = stored.get(name)
                if obj is None:
                    lost.append(name)
                    continue
                got = int(obj["data"]["version"])
                allowed = {version, version + 1} if name == r.in_flight else {version}
                if got not in allowed or obj["data"] != _payload(name, got):
                    stale.append((name, version, obj["data"]["version"]))
                elif got == version:
                    assert int(obj["metadata"]["resourceVersion"]) == r.rv[name]
        assert not lost, f"acknowledged creates lost after kill -9: {lost[:10]}"
        assert not stale, f"acknowledged updates lost or mangled (name, acked, stored): {stale[:10]}"
        unexpected = set(stored) - {n for r in results for n in r.version} - {r.in_flight for r in results}
        assert not unexpected, f"objects nobody wrote: {sorted(unexpected)[:10]}"

        # New writes continue above everything acknowledged before the crash.
        status, created = _request(conn, "POST", CM, {"apiVersion": "v1", "kind": "ConfigMap",
                                                      "metadata": {"name": "after-restart"}})
        assert status == 201
        assert int(created["metadata"]["resourceVersion"]) > highest_before
        some = next(n for r in results for n in r.version)
        status, updated = _request(conn, "PUT", f"{CM}/{some}", {
            **stored[some], "data": {**stored[some]["data"], "after": "yes"}})
        assert status == 200, updated
        assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
        # A client resuming its pre-crash watch gets the new writes, or 410 Gone and relists; never silence.
        conn.request("GET", f"{CM}?watch=true&resourceVersion={highest_before}&timeoutSeconds=2")
        resp = conn.getresponse()
        assert resp.status == 200
        events = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
        first = events[0] if events else {}
        if first.get("type") == "ERROR":
            assert first["object"]["code"] == 410, first
        else:
            names = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
            assert ("ADDED", "after-restart") in names and ("MODIFIED", some) in names, names
        conn.close()
        log = srv.log()
        assert "Traceback" not in log, log[-4000:]
    finally:
        srv.stop()


def test_resource_versions_grow_across_a_clean_restart(tmp_path: Any) -> None:
    srv = start_server(str(tmp_path / "restarts"))
    try:
        seen = 0
        for round_ in range(2):
            if round_:
                srv.restart()
            conn = _connect(srv, srv.ssl_context())
            status, obj = _request(conn, "POST", "/api/v1/namespaces",
                                   {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"r{round_}"}})
            status_list, listed = _request(conn, "GET", "/api/v1/namespaces")
            conn.close()
            assert (status, status_list) == (201, 200)
            rv = int(obj["metadata"]["resourceVersion"])
            assert rv > seen
            assert int(listed["metadata"]["resourceVersion"]) >= rv
            assert {"r0", f"r{round_}"} <= {n["metadata"]["name"] for n in listed["items"]}
            seen = rv
    finally:
        srv.stop()
