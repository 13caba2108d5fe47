"""The remote-command channel protocol (v5.channel.k8s.io) as the kubelet speaks it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer
from multidict import MultiDict

from pocketkube.kubelet import exec_stream
from pocketkube.kubelet.exec_stream import StreamOptions


def test_options_from_query() -> None:
    q = MultiDict([("command", "sh"), ("command", "-c"), ("command", "echo hi"), ("stdin", "true"),
                   ("stdout", "true"), ("stderr", "true"), ("tty", "false")])
    opts = StreamOptions.from_query(q)
    assert opts.command == ("sh", "-c", "echo hi")
    assert (opts.stdin, opts.stdout, opts.stderr, opts.tty) == (True, True, True, False)
    tty = StreamOptions.from_query(MultiDict([("command", "sh"), ("tty", "true"), ("stderr", "true")]))
    assert tty.tty and not tty.stderr  # a TTY merges stderr into stdout


def test_statuses() -> None:
    assert json.loads(exec_stream.success_status()) == {"metadata": {}, "status": "Success"}
    failure = json.loads(exec_stream.exit_status(3, ("sh", "-c", "exit 3")))
    assert failure["status"] == "Failure" and failure["reason"] == "NonZeroExitCode"
    assert failure["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert exec_stream.parse_resize(b'{"Width": 80, "Height": 24}') == (80, 24)
    assert exec_stream.parse_resize(b"nonsense") is None


class FakeWriter:
    def __init__(self) -> None:
        self.data = b""
        self.closed = False
        self.closed_event = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True
        self.closed_event.set()


class FakeProcess:
    """Echoes stdin to stdout in upper case once stdin closes; exits with `code`."""

    def __init__(self, code: int) -> None:
        self.stdin = FakeWriter()
        self.stdout = asyncio.StreamReader()
        self.stderr: asyncio.StreamReader | None = asyncio.StreamReader()
        self.code = code
        self.sizes: list[tuple[int, int]] = []

    def resize(self, cols: int, rows: int) -> None:
        self.sizes.append((cols, rows))

    async def wait(self) -> int:
        await self.stdin.closed_event.wait()
        self.stdout.feed_data(self.stdin.data.upper())
        self.stdout.feed_eof()
        assert self.stderr is not None
        self.stderr.feed_data(b"warning\n")
        self.stderr.feed_eof()
        return self.code

    async def aclose(self) -> None:
        pass


async def test_exec_session_over_websocket() -> None:
    proc = FakeProcess(code=3)

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=exec_stream.PROTOCOLS)
        await ws.prepare(request)
        opts = StreamOptions(stdin=True, stdout=True, stderr=True, command=("cat",))
        await exec_stream.serve_exec(exec_stream.ChannelSocket(ws), proc, opts)
        return ws

    app = web.Application()
    app.router.add_get("/exec", handler)
    async with TestClient(TestServer(app)) as client:
        ws = await client.ws_connect("/exec", protocols=[exec_stream.V5])
        assert ws.protocol == exec_stream.V5
        await ws.send_bytes(b"\x04" + b'{"Width": 100, "Height": 40}')
        await ws.send_bytes(b"\x00hello ")
        await ws.send_bytes(b"\x00world")
        await ws.send_bytes(bytes([exec_stream.CLOSE, exec_stream.STDIN]))
        channels: dict[int, bytes] = {}
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                break
            channels[msg.data[0]] = channels.get(msg.data[0], b"") + msg.data[1:]
        assert channels[exec_stream.STDOUT] == b"HELLO WORLD"
        assert channels[exec_stream.STDERR] == b"warning\n"
        status: dict[str, Any] = json.loads(channels[exec_stream.ERROR])
        assert status["reason"] == "NonZeroExitCode"
        assert proc.sizes == [(100, 40)]
