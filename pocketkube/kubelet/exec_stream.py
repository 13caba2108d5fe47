"""The remote-command channel protocol (`v5.channel.k8s.io`, `v4.channel.k8s.io`) for exec and attach.

Every WebSocket binary message starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 error
(a metav1 Status, sent once at the end), 4 resize (`{"Width": w, "Height": h}`), and in v5 255
"close": `[255, channel]` half-closes that channel (kubectl sends it when its stdin ends). The
final Status says `Success`, or `Failure` with reason `NonZeroExitCode` and an `ExitCode` cause,
which client-go turns into kubectl's own exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
PROTOCOLS = (V5, V4)
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
DRAIN_AFTER_EXIT = 2.0  # seconds to wait for output a left-behind daemon may keep open


@dataclass(frozen=True)
class StreamOptions:
    """The exec/attach query: which streams the client asked for, and whether it wants a TTY."""

    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    tty: bool = False
    command: tuple[str, ...] = ()

    @classmethod
    def from_query(cls, query: Any) -> StreamOptions:
        def flag(name: str) -> bool:
            return str(query.get(name, "")).lower() in ("1", "true", "yes")

        tty = flag("tty")
        return cls(stdin=flag("stdin"), stdout=flag("stdout"), stderr=flag("stderr") and not tty, tty=tty,
                   command=tuple(query.getall("command", [])) if hasattr(query, "getall") else ())


def success_status() -> bytes:
    return orjson.dumps({"metadata": {}, "status": "Success"})


def exit_status(code: int, command: tuple[str, ...]) -> bytes:
    """The Status client-go decodes into an exit code (`exec.CodeExitError`)."""
    return orjson.dumps({
        "metadata": {}, "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command [{' '.join(command)}], "
                   f"exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}})


def error_status(message: str) -> bytes:
    return orjson.dumps({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError",
                         "code": 500})


def frame(channel: int, data: bytes) -> bytes:
    return bytes([channel]) + data


def parse_resize(data: bytes) -> tuple[int, int] | None:
    """(cols, rows) from a resize message, or None if it is not one."""
    try:
        size = json.loads(data)
        return int(size["Width"]), int(size["Height"])
    except (ValueError, KeyError, TypeError):
        return None


class Process(Protocol):
    """What an exec session drives (runtime.exec_process.ExecProcess has it)."""

    stdin: Any
    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader | None

    def resize(self, cols: int, rows: int) -> None: ...

    async def wait(self) -> int: ...

    async def aclose(self) -> None: ...


class ChannelSocket:
    """A prepared WebSocketResponse with a send lock (pumps write concurrently)."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.v5 = ws.ws_protocol == V5
        self._lock = asyncio.Lock()

    async def send(self, channel: int, data: bytes) -> None:
        if self.ws.closed:
            return
        async with self._lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_bytes(frame(channel, data))

    async def finish(self, status: bytes) -> None:
        await self.send(ERROR, status)
        if self.v5:
            for channel in (STDOUT, STDERR, ERROR):
                await self.send(CLOSE, bytes([channel]))
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close()

    async def messages(self) -> AsyncIterator[tuple[int, bytes]]:
        """(channel, payload) of each binary message until the client closes."""
        async for msg in self.ws:
            if msg.type == WSMsgType.BINARY and msg.data:
                yield msg.data[0], msg.data[1:]
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                return


async def _pump(reader: asyncio.StreamReader, sock: ChannelSocket, channel: int) -> None:
    while chunk := await reader.read(32768):
        await sock.send(channel, chunk)


async def serve_exec(sock: ChannelSocket, proc: Process, opts: StreamOptions) -> None:
    """Copy stdin in and output out until the process exits; then the Status, then close."""
    pumps = [asyncio.ensure_future(_pump(proc.stdout, sock, STDOUT))]
    if proc.stderr is not None:
        pumps.append(asyncio.ensure_future(_pump(proc.stderr, sock, STDERR)))
    if not opts.stdin and not opts.tty and proc.stdin is not None:
        proc.stdin.close()
    reader = asyncio.ensure_future(_read_client(sock, proc, opts))
    waiter = asyncio.ensure_future(proc.wait())
    try:
        await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():  # the client went away: stop what it started
            await proc.aclose()
            return
        code = waiter.result()
        await asyncio.wait(pumps, timeout=DRAIN_AFTER_EXIT)
        await sock.finish(success_status() if code == 0 else exit_status(code, opts.command))
    finally:
        for task in (*pumps, reader, waiter):
            task.cancel()
        await proc.aclose()


async def _read_client(sock: ChannelSocket, proc: Process, opts: StreamOptions) -> None:
    async for channel, data in sock.messages():
        if channel == STDIN and opts.stdin and proc.stdin is not None:
            proc.stdin.write(data)
            await proc.stdin.drain()
        elif channel == RESIZE:
            size = parse_resize(data)
            if size is not None:
                with contextlib.suppress(OSError):
                    proc.resize(*size)
        elif channel == CLOSE and data[:1] == bytes([STDIN]) and proc.stdin is not None:
            proc.stdin.close()


async def serve_attach(sock: ChannelSocket, output: AsyncIterator[tuple[int, bytes]],
                       exited: Callable[[], Awaitable[int | None]]) -> None:
    """Attach without a stdin pipe: the container's new output (from its log) until it exits."""
    reader = asyncio.ensure_future(_drain_client(sock))

    async def copy() -> None:
        async for channel, data in output:
            await sock.send(channel, data)

    copier = asyncio.ensure_future(copy())
    try:
        await asyncio.wait({reader, copier}, return_when=asyncio.FIRST_COMPLETED)
        if copier.done():
            code = await exited()
            await sock.finish(success_status() if not code else exit_status(code, ()))
    finally:
        reader.cancel()
        copier.cancel()


async def _drain_client(sock: ChannelSocket) -> None:
    async for _ in sock.messages():
        pass
