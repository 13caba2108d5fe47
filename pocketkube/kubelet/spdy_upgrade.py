"""Raw SPDY/3.1 upgrades (`Upgrade: SPDY/3.1`): what kubectl falls back to when WebSockets fail.

aiohttp upgrades only to WebSocket, so we take the connection over the way its WebSocket
support does: answer 101, install a parser that hands us the connection's bytes, and write
frames straight to the transport. Two protocols ride on it: `portforward.k8s.io` (the same
session as the tunnelled one) and remote command `v4.channel.k8s.io`, where the client opens
one SPDY stream per role (`streamtype` error, stdin, stdout, stderr, resize) and the final
metav1 Status goes on the error stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from pocketkube.kubelet import exec_stream, spdy
from pocketkube.kubelet.portforward import PROTOCOL as PORTFORWARD

EXEC_PROTOCOLS = ("v4.channel.k8s.io",)
STREAM_WAIT = 10.0


class _Parser:
    """What aiohttp's protocol feeds once set_parser() is called (the WebSocketReader interface)."""

    def __init__(self, queue: asyncio.Queue[bytes | None]) -> None:
        self.queue = queue

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.queue.put_nowait(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        self.queue.put_nowait(None)


def offered(request: web.Request) -> list[str]:
    return [p.strip() for v in request.headers.getall("X-Stream-Protocol-Version", []) for p in v.split(",")]


def is_spdy_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower().startswith("spdy/3.1")


async def hijack(request: web.Request, protocol: str) -> tuple[asyncio.Queue[bytes | None], web.StreamResponse]:
    """Answer 101 for `protocol`; then the queue yields the peer's bytes (None at EOF)."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    assert request.protocol is not None
    request.protocol.set_parser(_Parser(queue))  # type: ignore[arg-type]
    response = web.StreamResponse(status=101, headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                                                       "X-Stream-Protocol-Version": protocol})
    response.force_close()
    writer = await response.prepare(request)
    send_headers = getattr(writer, "send_headers", None)
    if send_headers is not None:
        send_headers()  # a 101 has no body to carry them
    if writer is not None:
        await writer.drain()
    return queue, response


def _write(request: web.Request) -> Callable[[bytes], Awaitable[None]]:
    async def write(data: bytes) -> None:
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client is gone")
        transport.write(data)

    return write


async def serve_port_forward(request: web.Request, connect: Callable[..., Awaitable[tuple[
        asyncio.StreamReader, asyncio.StreamWriter]]], pod_name: str) -> web.StreamResponse:
    from pocketkube.kubelet.portforward import PortForwardSession

    queue, response = await hijack(request, PORTFORWARD)
    session = PortForwardSession(_write(request), connect, pod_name)
    try:
        while (data := await queue.get()) is not None and not session.closed.is_set():
            await session.feed(data)
    except (spdy.ProtocolError, ConnectionError):
        pass
    finally:
        await session.close()
    return response


class _ExecStreams:
    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.ready = asyncio.Event()
        self.stdin: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.resize: asyncio.Queue[bytes] = asyncio.Queue()


async def serve_exec(request: web.Request, opts: exec_stream.StreamOptions,
                     start: Callable[[], Awaitable[exec_stream.Process]]) -> web.StreamResponse:
    """Remote command over raw SPDY (v4): streams by role, the Status on the error stream."""
    queue, response = await hijack(request, EXEC_PROTOCOLS[0])
    framer = spdy.Framer()
    write = _write(request)
    lock = asyncio.Lock()
    streams = _ExecStreams()
    wanted = {"error"} | {name for name, on in (("stdin", opts.stdin), ("stdout", opts.stdout),
                                                 ("stderr", opts.stderr), ("resize", opts.tty)) if on}

    async def send(build: Callable[[spdy.Framer], bytes]) -> None:
        async with lock:
            with contextlib.suppress(ConnectionError):
                await write(build(framer))

    async def read_peer() -> None:
        while (data := await queue.get()) is not None:
            for frame in framer.feed(data):
                if frame.kind == spdy.SYN_STREAM:
                    await send(lambda f, sid=frame.stream_id: f.syn_reply(sid))  # type: ignore[misc]
                    streams.ids[frame.headers.get("streamtype", "")] = frame.stream_id
                    if wanted <= set(streams.ids):
                        streams.ready.set()
                elif frame.kind == spdy.DATA:
                    if frame.stream_id == streams.ids.get("stdin"):
                        if frame.data:
                            streams.stdin.put_nowait(frame.data)
                        if frame.fin:
                            streams.stdin.put_nowait(None)
                    elif frame.stream_id == streams.ids.get("resize"):
                        streams.resize.put_nowait(frame.data)
                elif frame.kind == spdy.PING:
                    await send(lambda f, v=frame.value: f.ping(v))  # type: ignore[misc]
        streams.stdin.put_nowait(None)

    reader = asyncio.ensure_future(read_peer())
    try:
        await asyncio.wait_for(streams.ready.wait(), STREAM_WAIT)
        ids = streams.ids
        try:
            proc = await start()
        except Exception as e:
            message = exec_stream.error_status(f"failed to start exec: {e}")
            await send(lambda f: f.data(ids["error"], message, fin=True))
            return response
        await _run(proc, opts, ids, streams, send)
    except (TimeoutError, spdy.ProtocolError, ConnectionError):
        pass
    finally:
        reader.cancel()
        with contextlib.suppress(ConnectionError):
            await write(framer.goaway(0))
        if request.transport is not None:
            request.transport.close()
    return response


async def _run(proc: exec_stream.Process, opts: exec_stream.StreamOptions, ids: dict[str, int],
               streams: _ExecStreams, send: Callable[[Callable[[spdy.Framer], bytes]], Awaitable[None]]) -> None:
    async def pump(reader: asyncio.StreamReader | None, sid: int | None) -> None:
        while reader is not None and (chunk := await reader.read(32768)):
            if sid is not None:
                await send(lambda f, c=chunk: f.data(sid, c))  # type: ignore[misc]

    async def feed_stdin() -> None:
        while (chunk := await streams.stdin.get()) is not None:
            if proc.stdin is not None:
                proc.stdin.write(chunk)
                await proc.stdin.drain()
        if proc.stdin is not None:
            proc.stdin.close()

    async def resizes() -> None:
        pending = b""
        while True:
            pending += await streams.resize.get()
            decoder = json.JSONDecoder()
            text = pending.decode(errors="replace").lstrip()
            with contextlib.suppress(ValueError):
                while text:
                    size, end = decoder.raw_decode(text)
                    text = text[end:].lstrip()
                    with contextlib.suppress(OSError, KeyError, TypeError):
                        proc.resize(int(size["Width"]), int(size["Height"]))
            pending = text.encode()

    if not opts.stdin and not opts.tty and proc.stdin is not None:
        proc.stdin.close()
    tasks = [asyncio.ensure_future(pump(proc.stdout, ids.get("stdout"))),
             asyncio.ensure_future(pump(proc.stderr, ids.get("stderr")))]
    helpers = [asyncio.ensure_future(feed_stdin()), asyncio.ensure_future(resizes())]
    try:
        code = await proc.wait()
        await asyncio.wait(tasks, timeout=exec_stream.DRAIN_AFTER_EXIT)
        for role in ("stdout", "stderr"):
            if role in ids:
                await send(lambda f, sid=ids[role]: f.data(sid, b"", fin=True))  # type: ignore[misc]
        status = exec_stream.success_status() if code == 0 else exec_stream.exit_status(code, opts.command)
        await send(lambda f: f.data(ids["error"], status, fin=True))
    finally:
        for task in (*tasks, *helpers):
            task.cancel()
        await proc.aclose()
