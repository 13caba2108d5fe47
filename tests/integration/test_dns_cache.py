"""The cluster DNS against a real API server: every Service, EndpointSlice or Pod change reaches the
answers through the informers and empties the wire cache, so a name that was cached (positively or
as NXDOMAIN) is answered anew within a second and never stale again afterwards."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable

from dnslib import RCODE, DNSRecord

from pocketkube.client.rest import APIClient, ClientConfig
from pocketkube.dns.run import ClusterDNS, DNSConfig
from tests.conftest import ServerProcess
from tests.unit.dns.dns_support import free_port

Answer = tuple[int, list[str]]


def ask(port: int, name: str, qtype: str = "A") -> Answer:
    q = DNSRecord.question(name, qtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(q.pack(), ("127.0.0.1", port))
        reply = DNSRecord.parse(s.recv(4096))
    assert reply.header.id == q.header.id
    return reply.header.rcode, sorted(str(rr.rdata) for rr in reply.rr)


async def switch(port: int, name: str, old: Answer, new: Answer | None,
                 change: Callable[[], Awaitable[Answer | None]], qtype: str = "A") -> float:
    """Ask until `change` shows (must be within 1 s), then keep asking: the old answer never returns.

    `new` None: the answer `change` returns (e.g. an allocated ClusterIP)."""
    for _ in range(5):  # warm: the old answer is in the cache
        assert await asyncio.to_thread(ask, port, name, qtype) == old
    start = time.monotonic()
    new = await change() or new
    while (got := await asyncio.to_thread(ask, port, name, qtype)) != new:
        assert got == old, got
        assert time.monotonic() - start < 1.0, f"{name} still {got} after 1 s"
    seen = time.monotonic() - start
    for _ in range(50):
        assert await asyncio.to_thread(ask, port, name, qtype) == new
    return seen


def test_changes_invalidate_cached_answers(server: ServerProcess, namespace: str) -> None:
    async def main() -> list[float]:
        client = APIClient(ClientConfig.from_kubeconfig(server.kubeconfig))
        services = client.core("services")
        slices = client.resource("discovery.k8s.io", "v1", "endpointslices")
        pods = client.core("pods")
        ns = namespace
        await services.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
                               "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}, ns)

        def endpoint_slice(ip: str) -> dict[str, object]:
            return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                    "metadata": {"name": "db-1", "namespace": ns, "labels": {"kubernetes.io/service-name": "db"}},
                    "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
                    "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}]}

        await slices.create(endpoint_slice("10.99.0.1"), ns)
        await pods.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, ns)
        for _ in range(20):  # a port free for UDP may be taken for TCP by another process: try another
            port = free_port()
            dns = ClusterDNS(client, DNSConfig(client_config=client.config, listen=f"127.0.0.1:{port}",
                                               upstream="127.0.0.1:9", register=False))
            ready = asyncio.Event()
            task = asyncio.create_task(dns.run(ready=ready))
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait({task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            if ready.is_set():
                break
            waiter.cancel()
            task.cancel()
            failed = await asyncio.gather(task, waiter, return_exceptions=True)
            assert task.done() and not task.cancelled(), "the DNS did not start within 30 s"
            assert "address already in use" in repr(failed[0]), failed[0]
        try:
            assert ready.is_set()
            db = f"db.{ns}.svc.cluster.local"
            web = f"web.{ns}.svc.cluster.local"
            ok, nx = RCODE.NOERROR, RCODE.NXDOMAIN

            async def move_endpoint() -> None:
                current = await slices.get("db-1", ns)
                body = endpoint_slice("10.99.0.2")
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]  # type: ignore[index]
                await slices.update(body)

            async def add_service() -> Answer:
                svc = await services.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                             "spec": {"ports": [{"port": 80}]}}, ns)
                return ok, [svc["spec"]["clusterIP"]]

            async def pod_ip() -> None:
                await pods.patch("p", {"status": {"podIP": "10.99.0.9", "podIPs": [{"ip": "10.99.0.9"}]}}, ns,
                                 subresource="status")

            async def delete_service() -> None:
                await services.delete("web", ns)

            return [
                await switch(port, db, (ok, ["10.99.0.1"]), (ok, ["10.99.0.2"]), move_endpoint),  # EndpointSlice
                await switch(port, web, (nx, []), None, add_service),  # a cached NXDOMAIN
                await switch(port, f"10-99-0-9.{ns}.pod.cluster.local", (nx, []), (ok, ["10.99.0.9"]), pod_ip),
                await switch(port, web, await asyncio.to_thread(ask, port, web), (nx, []), delete_service),
            ]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()

    seen = asyncio.run(main())
    print("change → new DNS answer (s):", [round(s, 3) for s in seen])
