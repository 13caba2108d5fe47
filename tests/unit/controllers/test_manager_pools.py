"""Every informer's watch holds one of its APIClient's pooled connections (64) for minutes; a client
whose loops watch more than that leaves no connection for lists and writes, and they hang."""

from __future__ import annotations

from collections import Counter

from pocketkube.client.rest import APIClient, ClientConfig
from pocketkube.controllers.manager import ControllerManagerConfig, build_controllers

POOL = 64  # aiohttp.TCPConnector(limit=64) in client/rest.py


def test_watches_fit_in_each_client_pool() -> None:
    main = APIClient(ClientConfig(server="http://fake.invalid"))
    workloads = APIClient(ClientConfig(server="http://fake.invalid"))
    controllers = build_controllers(main, ControllerManagerConfig(kubeconfig="unused"), workloads=workloads)
    watches = Counter(id(inf.client.client) for c in controllers for inf in c.informers)
    assert watches[id(workloads)] > 0
    for client, name in ((main, "main"), (workloads, "workloads")):
        assert watches[id(client)] < POOL, f"{name} client: {watches[id(client)]} watches for {POOL} connections"
