"""Cancelling the client mid-connection must leave no socket behind.

An HTTPS connection closed gracefully stays open until the server answers the TLS close_notify;
if the event loop ends first (a test's `asyncio.run`, a component's shutdown), the socket is
collected unclosed and its ResourceWarning fails whichever test runs then. The server process is
paused (SIGSTOP) so it cannot answer: cancelling a request, a watch or a TLS handshake and
closing the client, or closing it under a streaming watch, must still close every socket, within
a bounded time, before the loop ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import time
import warnings

import aiohttp
import pytest

from pocketkube.client.informer import Informer
from pocketkube.client.rest import APIClient, ClientConfig, ResourceClient
from tests.conftest import ServerProcess


async def _scenario(server: ServerProcess, namespace: str, where: str) -> None:
    client = APIClient(ClientConfig.from_kubeconfig(server.kubeconfig))
    configmaps = client.core("configmaps")
    informer = Informer(configmaps, namespace=namespace)
    seen = asyncio.Event()
    informer.add_handler(lambda old, new: seen.set() if new and new["metadata"]["name"] == "probe" else None)
    try:
        async with asyncio.TaskGroup() as tg:
            if where == "handshake":  # the server accepts TCP (kernel backlog) but never answers TLS
                os.kill(server.proc.pid, signal.SIGSTOP)
                informer.start(tg)
            elif where == "request":  # a pooled connection, its request sent, no answer yet
                await configmaps.list(namespace)
                os.kill(server.proc.pid, signal.SIGSTOP)
                tg.create_task(configmaps.list(namespace))
            elif where == "close-mid-watch":  # the client closed under a streaming watch: promptly, too
                tg.create_task(_watch_until_broken(configmaps, namespace, seen))
                await asyncio.sleep(0.3)
                await configmaps.create({"apiVersion": "v1", "kind": "ConfigMap",
                                         "metadata": {"name": "probe"}}, namespace)
                await asyncio.wait_for(seen.wait(), 20)
                os.kill(server.proc.pid, signal.SIGSTOP)
                start = time.monotonic()
                await client.close()
                assert time.monotonic() - start < 2.5
            else:  # the watch streams: an event came through it
                informer.start(tg)
                await asyncio.wait_for(informer.synced.wait(), 20)
                await configmaps.create({"apiVersion": "v1", "kind": "ConfigMap",
                                         "metadata": {"name": "probe"}}, namespace)
                await asyncio.wait_for(seen.wait(), 20)
                os.kill(server.proc.pid, signal.SIGSTOP)
            await asyncio.sleep(0.3)
            await informer.stop()
            raise _Stop
    except* _Stop:
        pass
    finally:
        await client.close()


async def _watch_until_broken(configmaps: ResourceClient, namespace: str, seen: asyncio.Event) -> None:
    with contextlib.suppress(aiohttp.ClientError):
        async for _, obj in configmaps.watch(namespace):
            if obj["metadata"]["name"] == "probe":
                seen.set()


class _Stop(Exception):
    """Ends the task group, cancelling what still runs in it (the in-flight request)."""


@pytest.mark.parametrize("where", ["handshake", "request", "watch", "close-mid-watch"])
def test_cancel_then_close_leaves_no_socket(server: ServerProcess, namespace: str, where: str) -> None:
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            asyncio.run(_scenario(server, namespace, where))
            gc.collect()
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, leaks
