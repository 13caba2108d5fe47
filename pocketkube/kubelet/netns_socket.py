"""Sockets in the node's network namespace, for an agent whose node is a netns (`--node-netns`).

The agent process stays in the host namespace; its streaming server must listen on the node's
IP and port-forward must reach pod IPs on the node's bridge, both of which exist only inside the
node's namespace. A socket belongs to the namespace it was created in, so a short-lived thread
enters the namespace (setns is per thread), creates the socket and leaves; the socket then works
from the event loop like any other.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import threading

CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def netns_path(netns: str) -> str:
    return netns if netns.startswith("/") else os.path.join("/run/netns", netns)


def socket_in(netns: str | None, family: int = socket.AF_INET,
              kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A new socket in `netns` (a path or a name under /run/netns), or in ours when None."""
    if not netns:
        return socket.socket(family, kind)
    result: list[socket.socket] = []
    errors: list[BaseException] = []

    def create() -> None:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(netns_path(netns), os.O_RDONLY)
            try:
                _setns(target)
                try:
                    result.append(socket.socket(family, kind))
                finally:
                    _setns(own)
            finally:
                os.close(target)
        except BaseException as e:
            errors.append(e)
        finally:
            os.close(own)

    thread = threading.Thread(target=create, name="netns-socket")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def listening_socket(netns: str | None, host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket_in(netns, family)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def open_connection(netns: str | None, host: str, port: int) -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter]:
    if not netns:
        return await asyncio.open_connection(host, port)
    sock = socket_in(netns, socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)
