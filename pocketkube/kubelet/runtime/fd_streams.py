"""Async reading and writing of raw fds (pipes, a pty master) on any event loop.

Why not `loop.connect_read_pipe`/`connect_write_pipe`: uvloop's write-pipe transport also reads
the fd to notice the peer closing, which on a pty master (one fd for both directions) swallows
the output; and asyncio reports a pty's EIO (the other side closed) as an error, not as EOF.
These two classes do only what exec needs, with add_reader/add_writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable


class FdReader:
    """Feeds `reader` (a StreamReader) from a non-blocking fd; closes the fd at EOF or EIO."""

    def __init__(self, fd: int, *, transform: Callable[[bytes], bytes] | None = None) -> None:
        self.fd: int | None = fd
        self.reader = asyncio.StreamReader()
        self._transform = transform
        self._loop = asyncio.get_running_loop()
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._ready)

    def _ready(self) -> None:
        if self.fd is None:
            return
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.reader.feed_data(self._transform(data) if self._transform else data)
        else:
            self.close()

    def close(self) -> None:
        if self.fd is not None:
            self._loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = None
            self.reader.feed_eof()


class FdWriter:
    """The StreamWriter subset exec stdin needs: write(), await drain(), close(), is_closing().

    Writes go straight to the fd; what does not fit waits in a buffer flushed when the fd is
    writable. A reader gone (EPIPE, EIO) drops further data, as a closed pipe would.
    """

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._waiters: list[asyncio.Future[None]] = []
        self._close_when_flushed = False
        os.set_blocking(fd, False)

    def write(self, data: bytes) -> None:
        if self.fd is None or self._close_when_flushed or not data:
            return
        if not self._buffer:
            try:
                written = os.write(self.fd, data)
            except BlockingIOError:
                written = 0
            except OSError:
                self._close_fd()
                return
            data = data[written:]
            if not data:
                return
            self._loop.add_writer(self.fd, self._ready)
        self._buffer += data

    def _ready(self) -> None:
        if self.fd is None:
            return
        try:
            written = os.write(self.fd, self._buffer)
        except BlockingIOError:
            return
        except OSError:
            self._close_fd()
            return
        del self._buffer[:written]
        if not self._buffer:
            self._loop.remove_writer(self.fd)
            self._wake()
            if self._close_when_flushed:
                self._close_fd()

    async def drain(self) -> None:
        if self._buffer and self.fd is not None:
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            await waiter

    def is_closing(self) -> bool:
        return self.fd is None or self._close_when_flushed

    def close(self) -> None:
        """Close once what was written is flushed (the process then reads EOF)."""
        if self._buffer:
            self._close_when_flushed = True
        else:
            self._close_fd()

    def _close_fd(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_writer(self.fd)
            os.close(self.fd)
            self.fd = None
        self._buffer.clear()
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters = []
