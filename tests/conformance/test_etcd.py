"""Runs the storage conformance suite on EtcdStorage against a real etcd started for the session.

etcd listens on loopback only, on free ports, with a temporary data dir; it is killed by pid and
its dir removed afterwards. A missing /usr/bin/etcd fails the tests: CI installs it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator

import pytest

from pocketkube.storage.etcd import EtcdStorage
from pocketkube.storage.interface import UnavailableError
from tests.conformance.storage_suite import StorageSuite

ETCD = "/usr/bin/etcd"

pytestmark = pytest.mark.etcd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def etcd_url() -> Iterator[str]:
    if not os.path.exists(ETCD):
        pytest.fail(f"{ETCD} is missing: install Debian's etcd-server")
    data_dir = tempfile.mkdtemp(prefix="pocketkube-etcd-")
    client_url = f"http://127.0.0.1:{_free_port()}"
    peer_url = f"http://127.0.0.1:{_free_port()}"
    log = open(os.path.join(data_dir, "etcd.log"), "wb")  # closed in the finally below
    proc = subprocess.Popen(
        [ETCD, "--name", "conformance", "--data-dir", os.path.join(data_dir, "data"),
         "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
         "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
         "--initial-cluster", f"conformance={peer_url}", "--unsafe-no-fsync"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(client_url + "/health", timeout=1) as resp:
                    if b'"true"' in resp.read():
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(os.path.join(data_dir, "etcd.log"), "rb") as f:
                    pytest.fail(f"etcd did not become healthy:\n{f.read()[-2000:].decode(errors='replace')}")
            time.sleep(0.1)
        yield client_url
    finally:
        proc.kill()
        proc.wait()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def store(etcd_url: str) -> AsyncIterator[EtcdStorage]:
    s = EtcdStorage([etcd_url])
    await s.start()
    yield s
    await s.close()


class TestEtcd(StorageSuite):
    pass


async def test_unreachable_endpoint_is_unavailable() -> None:
    s = EtcdStorage([f"http://127.0.0.1:{_free_port()}"], timeout=2)
    try:
        with pytest.raises(UnavailableError):
            await s.start()
    finally:
        await s.close()


async def test_fails_over_to_the_next_endpoint(etcd_url: str) -> None:
    s = EtcdStorage([f"http://127.0.0.1:{_free_port()}", etcd_url], timeout=2)
    try:
        with pytest.raises(UnavailableError):
            await s.current_revision()
        assert await s.current_revision() > 0
    finally:
        await s.close()


async def test_lists_answers_over_grpc_default_limit(store: EtcdStorage) -> None:
    """A page bigger than gRPC's 4 MiB default (the watch cache relists 5000 objects a page)."""
    value = b"x" * 1_000_000
    for i in range(5):
        await store.create(f"/big/{i}", value)
    result = await store.list("/big/")
    assert [kv.key for kv in result.items] == [f"/big/{i}" for i in range(5)]
