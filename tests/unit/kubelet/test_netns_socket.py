"""Sockets made inside another network namespace (a node that is a netns)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from pocketkube.kubelet.netns_socket import listening_socket, socket_in

SIOCGSKNS = 0x894C  # ioctl: an fd for the namespace a socket belongs to


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace")
    name = f"pkt-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def _ns_inode(sock_fd: int) -> int:
    fd = fcntl.ioctl(sock_fd, SIOCGSKNS)
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def test_socket_belongs_to_the_namespace(netns: str) -> None:
    with socket_in(netns) as inside, socket_in(None) as here:
        assert _ns_inode(inside.fileno()) == os.stat(f"/run/netns/{netns}").st_ino
        assert _ns_inode(here.fileno()) == os.stat("/proc/self/ns/net").st_ino
    # Our own thread is back in our namespace.
    assert os.stat("/proc/thread-self/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino


def test_listening_socket_binds_an_address_only_the_namespace_has(netns: str) -> None:
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "-n", netns, "addr", "add", "10.254.77.1/32", "dev", "lo"], check=True)
    with listening_socket(netns, "10.254.77.1", 0) as sock:
        assert sock.getsockname()[0] == "10.254.77.1"
    with pytest.raises(OSError):
        listening_socket(None, "10.254.77.1", 0)
