"""Shared by the DNS unit tests: a small cluster's objects and a DNS listener on a free port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pocketkube.dns.server import DNSServer, serve

Obj = dict[str, Any]


def objects() -> tuple[list[Obj], list[Obj], list[Obj]]:
    services = [
        {"metadata": {"name": "web", "namespace": "default"},
         "spec": {"clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
        {"metadata": {"name": "db", "namespace": "prod"},
         "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}},
        {"metadata": {"name": "ext", "namespace": "default"},
         "spec": {"type": "ExternalName", "externalName": "example.org"}},
    ]
    slices = [{"metadata": {"name": "db-x", "namespace": "prod", "labels": {"kubernetes.io/service-name": "db"}},
               "addressType": "IPv4", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
               "endpoints": [{"addresses": ["10.42.0.7"], "hostname": "db-0", "conditions": {"ready": True}},
                             {"addresses": ["10.42.0.8"], "conditions": {"ready": True}},
                             {"addresses": ["10.42.0.9"], "conditions": {"ready": False}}]}]
    pods = [{"metadata": {"name": "p", "namespace": "default"}, "spec": {},
             "status": {"podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}]}}]
    return services, slices, pods


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def listening(server: DNSServer) -> AsyncIterator[int]:
    """`serve` on 127.0.0.1 at a port free for both UDP and TCP (others' tests take ports too)."""
    for _ in range(20):
        port = free_port()
        ready = asyncio.Event()
        task = asyncio.create_task(serve(server, "127.0.0.1", port, ready=ready))
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            break
        waiter.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)  # the TCP port was taken: next
    else:
        raise RuntimeError("no free port for the DNS listener")
    try:
        yield port
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
