"""Port-forward (`portforward.k8s.io`) over SPDY/3.1: kubectl's streams mapped to TCP connections.

For each local connection kubectl opens two SPDY streams with the same `requestid` header: an
`error` stream (which it half-closes at once) and a `data` stream, both naming the `port`. We
answer each SYN_STREAM with a SYN_REPLY, connect to the pod's IP and port, and copy bytes both
ways. A connection failure is written to the error stream. When the pod closes, the data stream
gets a FIN and the error stream an empty FIN; kubectl's RST or FIN closes our side.

The session is transport-agnostic: `feed()` takes bytes from the peer, `send` carries our frames
(WebSocket binary messages for `SPDY/3.1+portforward.k8s.io`, or a raw upgraded socket).
`serve_channels` is the other WebSocket dialect, `v4.channel.k8s.io` channel pairs per port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from pocketkube.kubelet import spdy

log = logging.getLogger(__name__)

PROTOCOL = "portforward.k8s.io"
WS_PROTOCOL = "SPDY/3.1+portforward.k8s.io"

Connect = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


@dataclass
class _Pair:
    """The error and data streams of one forwarded connection."""

    port: int
    error_id: int = 0
    data_id: int = 0
    inbound: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class PortForwardSession:
    def __init__(self, send: Callable[[bytes], Awaitable[None]], connect: Connect, pod_name: str) -> None:
        self._send_raw = send
        self._connect = connect
        self._pod = pod_name
        self._framer = spdy.Framer()
        self._lock = asyncio.Lock()
        self._pairs: dict[str, _Pair] = {}  # requestid -> pair
        self._by_stream: dict[int, _Pair] = {}
        self.closed = asyncio.Event()

    async def _send(self, build: Callable[[spdy.Framer], bytes]) -> None:
        # Encoding and sending stay together: header compression is one ordered stream.
        async with self._lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send_raw(build(self._framer))

    async def feed(self, data: bytes) -> None:
        for frame in self._framer.feed(data):
            await self._handle(frame)

    async def _handle(self, frame: spdy.Frame) -> None:
        if frame.kind == spdy.SYN_STREAM:
            await self._syn_stream(frame)
        elif frame.kind == spdy.DATA:
            pair = self._by_stream.get(frame.stream_id)
            if pair is not None and frame.stream_id == pair.data_id:
                if frame.data:
                    pair.inbound.put_nowait(frame.data)
                if frame.fin:
                    pair.inbound.put_nowait(None)
        elif frame.kind == spdy.RST_STREAM:
            pair = self._by_stream.get(frame.stream_id)
            if pair is not None and pair.task is not None:
                pair.task.cancel()
        elif frame.kind == spdy.PING:
            await self._send(lambda f: f.ping(frame.value))
        elif frame.kind == spdy.GOAWAY:
            self.closed.set()

    async def _syn_stream(self, frame: spdy.Frame) -> None:
        sid = frame.stream_id
        headers = frame.headers
        await self._send(lambda f: f.syn_reply(sid))
        kind = headers.get("streamtype", "")
        request_id = headers.get("requestid", str(sid))
        try:
            port = int(headers.get("port", ""))
        except ValueError:
            await self._send(lambda f: f.rst_stream(sid, spdy.PROTOCOL_ERROR))
            return
        pair = self._pairs.setdefault(request_id, _Pair(port))
        self._by_stream[sid] = pair
        if kind == "error":
            pair.error_id = sid
        elif kind == "data":
            pair.data_id = sid
            pair.task = asyncio.ensure_future(self._forward(request_id, pair))
        else:
            await self._send(lambda f: f.rst_stream(sid, spdy.PROTOCOL_ERROR))

    async def _forward(self, request_id: str, pair: _Pair) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            try:
                reader, writer = await self._connect(pair.port)
            except OSError as e:
                message = (f"error forwarding port {pair.port} to pod {self._pod}: failed to connect to "
                           f"localhost:{pair.port}: {e.strerror or e}")
                if pair.error_id:
                    await self._send(lambda f: f.data(pair.error_id, message.encode(), fin=True))
                await self._send(lambda f: f.data(pair.data_id, b"", fin=True))
                return
            upstream = asyncio.ensure_future(self._upstream(pair, writer))
            try:
                while chunk := await reader.read(65536):
                    await self._send(lambda f, c=chunk: f.data(pair.data_id, c))  # type: ignore[misc]
            finally:
                upstream.cancel()
            await self._send(lambda f: f.data(pair.data_id, b"", fin=True))
            if pair.error_id:
                await self._send(lambda f: f.data(pair.error_id, b"", fin=True))
        except asyncio.CancelledError:
            pass
        finally:
            if writer is not None:
                writer.close()
            self._pairs.pop(request_id, None)
            for sid in (pair.error_id, pair.data_id):
                self._by_stream.pop(sid, None)

    async def _upstream(self, pair: _Pair, writer: asyncio.StreamWriter) -> None:
        try:
            while (chunk := await pair.inbound.get()) is not None:
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass

    async def close(self) -> None:
        for pair in list(self._pairs.values()):
            if pair.task is not None:
                pair.task.cancel()
        tasks = [p.task for p in self._pairs.values() if p.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        self.closed.set()


CHANNEL_PROTOCOLS = ("v4.channel.k8s.io", "v5.channel.k8s.io")


async def serve_channels(ws: web.WebSocketResponse, ports: list[int], connect: Connect, pod_name: str) -> None:
    """Port-forward as the Python client and kr8s speak it (`v4.channel.k8s.io`, `?ports=a,b`):
    port i has data channel 2i and error channel 2i+1; each channel first carries the port
    number (2 bytes, little endian); one TCP connection per port for the whole WebSocket."""
    lock = asyncio.Lock()

    async def send(channel: int, data: bytes) -> None:
        async with lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_bytes(bytes([channel]) + data)

    writers: dict[int, asyncio.StreamWriter] = {}
    pumps: list[asyncio.Task[None]] = []

    async def pump(index: int, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(65536):
                await send(2 * index, chunk)

    for index, port in enumerate(ports):
        for channel in (2 * index, 2 * index + 1):
            await send(channel, port.to_bytes(2, "little"))
        try:
            reader, writers[index] = await connect(port)
        except OSError as e:
            await send(2 * index + 1, f"error forwarding port {port} to pod {pod_name}: failed to connect to "
                                      f"localhost:{port}: {e.strerror or e}".encode())
            continue
        pumps.append(asyncio.ensure_future(pump(index, reader)))

    async def from_client() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY and msg.data:
                writer = writers.get(msg.data[0] // 2) if msg.data[0] % 2 == 0 else None
                if writer is not None and len(msg.data) > 1:
                    writer.write(msg.data[1:])
                    with contextlib.suppress(ConnectionError):
                        await writer.drain()
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                return

    reader_task = asyncio.ensure_future(from_client())
    try:
        if pumps:
            await asyncio.wait({reader_task, asyncio.ensure_future(asyncio.wait(pumps))},
                               return_when=asyncio.FIRST_COMPLETED)
        else:
            await reader_task
    finally:
        reader_task.cancel()
        for task in pumps:
            task.cancel()
        for writer in writers.values():
            writer.close()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.close()
