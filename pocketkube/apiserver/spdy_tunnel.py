"""Raw `Upgrade: SPDY/3.1` requests (kubectl's fallback for exec/attach/port-forward), tunnelled.

Like kube-apiserver's upgrade-aware proxy: we send the request to the kubelet over TLS with our
kubelet-client certificate, and if the kubelet switches protocols we answer the client 101 with
the kubelet's negotiated `X-Stream-Protocol-Version`, take the client connection over (as
aiohttp does for WebSockets) and copy bytes both ways until either side closes. If the kubelet
refuses, its Status is the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from urllib.parse import urlsplit

from aiohttp import web

from pocketkube.api import errors

FORWARDED = ("Upgrade", "Connection", "X-Stream-Protocol-Version", "Content-Type")


class _Parser:
    """Receives the client connection's bytes once the protocol is switched."""

    def __init__(self, queue: asyncio.Queue[bytes | None]) -> None:
        self.queue = queue

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.queue.put_nowait(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        self.queue.put_nowait(None)


async def _request(url: str, request: web.Request, ctx: ssl.SSLContext) -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter, int, list[tuple[str, str]], bytes]:
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 10250
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx), 10)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{request.method} {target} HTTP/1.1", f"Host: {parts.netloc}", "Content-Length: 0"]
    lines += [f"{name}: {value}" for name in FORWARDED for value in request.headers.getall(name, [])]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = [(k.strip(), v.strip()) for k, _, v in (h.partition(":") for h in header_lines if h)]
    body = b""
    if status != 101:
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
        body = await reader.readexactly(length) if length else b""
    return reader, writer, status, headers, body


async def tunnel(request: web.Request, url: str, ctx: ssl.SSLContext) -> web.StreamResponse:
    try:
        upstream, upstream_writer, status, headers, body = await _request(url, request, ctx)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
        raise errors.ServiceUnavailable(f"error trying to reach the kubelet: {e}") from e
    if status != 101:
        upstream_writer.close()
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "application/json")
        return web.Response(status=status, body=body, content_type=content_type.split(";")[0])
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    assert request.protocol is not None
    request.protocol.set_parser(_Parser(queue))  # type: ignore[arg-type]
    response = web.StreamResponse(status=101, headers={k: v for k, v in headers
                                                          if k.lower() in {f.lower() for f in FORWARDED}})
    response.force_close()
    writer = await response.prepare(request)
    send_headers = getattr(writer, "send_headers", None)
    if send_headers is not None:
        send_headers()
    if writer is not None:
        await writer.drain()

    async def to_kubelet() -> None:
        while (data := await queue.get()) is not None:
            upstream_writer.write(data)
            await upstream_writer.drain()

    async def to_client() -> None:
        while data := await upstream.read(65536):
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            transport.write(data)

    tasks = [asyncio.ensure_future(to_kubelet()), asyncio.ensure_future(to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        upstream_writer.close()
        with contextlib.suppress(Exception):
            await upstream_writer.wait_closed()
        if request.transport is not None:
            request.transport.close()
    return response
