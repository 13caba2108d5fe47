"""`kubectl attach` (and `kubectl run -it`) to a container conmon runs with stdin or a TTY.

conmon serves an attach socket (AF_UNIX, SOCK_SEQPACKET) per container: each packet it sends
is one byte naming the pipe (2 stdout, 3 stderr) and the output; what we send is written to the
container's stdin. Window sizes go to conmon's `ctl` FIFO as `1 <rows> <cols>`. The socket path
can exceed the 108 bytes of sun_path, so we connect through /proc/self/fd/<dir fd>, as CRI-O
does. We bridge it to the channel protocol until the container exits or the client leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable

from pocketkube.kubelet import exec_stream

ATTACH_STDOUT, ATTACH_STDERR = 2, 3


def connect(path: str) -> socket.socket:
    dir_fd = os.open(os.path.dirname(path), os.O_PATH)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}")
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    finally:
        os.close(dir_fd)
    return sock


def resize(ctl_paths: list[str], cols: int, rows: int) -> None:
    for path in ctl_paths:
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(fd, f"1 {rows} {cols}\n".encode())
            finally:
                os.close(fd)
            return


async def serve(sock_channel: exec_stream.ChannelSocket, conn: socket.socket, opts: exec_stream.StreamOptions,
                ctl_paths: list[str], exit_code: Callable[[], Awaitable[int | None]]) -> None:
    loop = asyncio.get_running_loop()

    async def output() -> None:
        while data := await loop.sock_recv(conn, 32769):
            channel = exec_stream.STDERR if data[0] == ATTACH_STDERR else exec_stream.STDOUT
            if (channel == exec_stream.STDOUT and (opts.stdout or opts.tty)) or opts.stderr:
                await sock_channel.send(channel, data[1:])

    async def client() -> None:
        async for channel, data in sock_channel.messages():
            if channel == exec_stream.STDIN and opts.stdin and data:
                await loop.sock_sendall(conn, data)
            elif channel == exec_stream.RESIZE:
                size = exec_stream.parse_resize(data)
                if size is not None:
                    resize(ctl_paths, *size)

    out = asyncio.ensure_future(output())
    inp = asyncio.ensure_future(client())
    try:
        await asyncio.wait({out, inp}, return_when=asyncio.FIRST_COMPLETED)
        if out.done():  # conmon closed the socket: the container exited
            code = await exit_code()
            await sock_channel.finish(exec_stream.success_status() if not code
                                      else exec_stream.exit_status(code, ()))
    except (ConnectionError, OSError):
        pass
    finally:
        out.cancel()
        inp.cancel()
        conn.close()
