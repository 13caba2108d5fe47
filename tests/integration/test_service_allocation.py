"""Service addresses against a real API server: ClusterIPs and NodePorts never handed out twice —
not by concurrent creates, not across a restart — and the bad input of issue 5 (a NodePort or
ClusterIP already taken, addresses that are not IPs or lie outside the service CIDR) answered with
a 422 that names the field and the value, as kube-apiserver words it."""

from __future__ import annotations

import asyncio
import ipaddress
import random
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import ServerProcess, start_server

SERVICE_CIDR = ipaddress.ip_network("10.43.0.0/16")


def _service(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("ports", [{"port": 80, "targetPort": 8080}])
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, **spec}}


async def _post(session: aiohttp.ClientSession, server: ServerProcess, path: str,
                body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with session.post(f"{server.url}{path}", json=body, ssl=server.ssl_context()) as r:
        out: dict[str, Any] = await r.json()
        return r.status, out


async def _create_services(server: ServerProcess, names: list[str]) -> list[dict[str, Any]]:
    """All at once: the allocators see truly concurrent creates."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        results = await asyncio.gather(*(_post(session, server, "/api/v1/namespaces/default/services",
                                               _service(n, type="NodePort")) for n in names))
    assert [status for status, _ in results] == [201] * len(names), [out for status, out in results if status != 201]
    return [out for _, out in results]


def _addresses(services: list[dict[str, Any]]) -> tuple[list[str], list[int]]:
    return ([s["spec"]["clusterIP"] for s in services],
            [p["nodePort"] for s in services for p in s["spec"]["ports"]])


async def test_no_address_or_node_port_is_handed_out_twice_across_concurrent_creates_and_a_restart(
        tmp_path: Path) -> None:
    server = start_server(str(tmp_path / "srv"), command="apiserver")
    try:
        before = await _create_services(server, [f"a{i}" for i in range(40)])
        server.restart()
        after = await _create_services(server, [f"b{i}" for i in range(40)])
    finally:
        server.stop()
    ips, ports = _addresses(before + after)
    assert len(set(ips)) == len(ips) == 80
    assert all(ipaddress.ip_address(ip) in SERVICE_CIDR for ip in ips)
    assert len(set(ports)) == len(ports) == 80
    assert all(30000 <= p <= 32767 for p in ports)


async def test_taken_node_port_and_cluster_ip_are_refused_naming_them(server: ServerProcess, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/services"
    async with aiohttp.ClientSession() as session:
        for _ in range(10):  # the session's server is shared: find a port no other test holds
            port = random.randrange(30000, 32768)
            status, first = await _post(session, server, path,
                                        _service("first", type="NodePort",
                                                 ports=[{"port": 80, "nodePort": port}]))
            if status == 201:
                break
        assert status == 201, first
        status, dup = await _post(session, server, path,
                                  _service("second", type="NodePort", ports=[{"port": 81, "nodePort": port}]))
        assert status == 422, dup
        assert dup["reason"] == "Invalid" and dup["details"]["name"] == "second"
        assert f"spec.ports[0].nodePort: Invalid value: {port}: provided port is already allocated" in dup["message"]
        assert [c["field"] for c in dup["details"]["causes"]] == ["spec.ports[0].nodePort"]

        ip = first["spec"]["clusterIP"]
        status, dup_ip = await _post(session, server, path, _service("third", clusterIP=ip))
        assert status == 422, dup_ip
        assert (f'spec.clusterIPs: Invalid value: []string{{"{ip}"}}: failed to allocate IP {ip}: '
                "provided IP is already allocated") in dup_ip["message"]


async def test_addresses_that_are_not_ips_or_outside_the_range_are_422(server: ServerProcess, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/services"
    cases = [
        (_service("bad-ip", clusterIP="300.1.2.3"), "300.1.2.3", "must be a valid IP address"),
        (_service("bad-text", clusterIP="ten.dot.one"), "ten.dot.one", "must be a valid IP address"),
        (_service("bad-external", externalIPs=["not-an-ip"]), "not-an-ip", "must be a valid IP address"),
        (_service("out-of-range", clusterIP="192.168.7.7"), "192.168.7.7",
         "the provided IP (192.168.7.7) is not in the valid range. The range of valid IPs is 10.43.0.0/16"),
    ]
    async with aiohttp.ClientSession() as session:
        for body, value, words in cases:
            status, out = await _post(session, server, path, body)
            assert status == 422, (body, out)
            assert out["kind"] == "Status" and out["reason"] == "Invalid", out
            assert f'"{value}"' in out["message"] and words in out["message"], out["message"]
            assert out["details"]["causes"], out
        listed = await (await session.get(f"{server.url}{path}", ssl=server.ssl_context())).json()
    assert listed["items"] == []  # nothing half-created, nothing allocated for the refused ones
