"""Builders of Service and EndpointSlice dicts for the proxy tests and the proxy bench, and a
throwaway network namespace for the tests that load rules into a real kernel."""

from __future__ import annotations

import contextlib
import random
import subprocess
from collections.abc import Iterator
from typing import Any

from pocketkube.proxy import nftables_apply

Obj = dict[str, Any]


def service(name: str, ip: str, ports: list[Obj], *, namespace: str = "default", type_: str = "ClusterIP",
            **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"type": type_, "clusterIP": ip, "ports": ports, **spec}}


def endpoint(ip: str, *, ready: bool = True, terminating: bool = False, node: str = "node-a") -> Obj:
    return {"addresses": [ip], "conditions": {"ready": ready, "serving": ready, "terminating": terminating},
            "nodeName": node}


def endpoint_slice(svc: str, endpoints: list[Obj], ports: list[Obj], *, namespace: str = "default",
                   suffix: str = "abc") -> Obj:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{svc}-{suffix}", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": svc}},
            "endpoints": endpoints, "ports": ports}


def many(n: int, endpoints_each: int = 2) -> tuple[list[Obj], list[Obj]]:
    """n Services in 10.43/16 with `endpoints_each` ready endpoints each in 10.42/16."""
    services, slices = [], []
    for i in range(n):
        ip = f"10.43.{16 + i // 250}.{1 + i % 250}"
        name = f"svc-{i:05d}"
        services.append(service(name, ip, [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]))
        eps = [endpoint(f"10.42.{(i * endpoints_each + k) // 250 % 250}.{1 + (i * endpoints_each + k) % 250}")
               for k in range(endpoints_each)]
        slices.append(endpoint_slice(name, eps, [{"name": "http", "port": 8080, "protocol": "TCP"}]))
    return services, slices


@contextlib.contextmanager
def scratch_netns(*ip_commands: list[str]) -> Iterator[str]:
    """A network namespace of its own (`pkt<hex>`), each `ip -n NS …` command run in it first; yields
    its /run/netns path and deletes it afterwards (the in-process nft context of it released first)."""
    name = f"pkt{random.randrange(16**6):06x}"
    path = f"/run/netns/{name}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in ip_commands:
            subprocess.run(["ip", "-n", name, *cmd], check=True)
        yield path
    finally:
        nftables_apply.release(path)  # a libnftables thread would keep the namespace alive
        subprocess.run(["ip", "netns", "delete", name], check=False)
