"""The SPDY/3.1 framer and the port-forward session that kubectl port-forward talks to."""

from __future__ import annotations

import asyncio
import zlib

import pytest

from pocketkube.kubelet import spdy
from pocketkube.kubelet.portforward import PortForwardSession


def test_dictionary_is_the_one_go_clients_use() -> None:
    # kubectl's zlib header carries DICTID e3c6a7c2: the adler32 of the SPDY/3 dictionary.
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2
    assert spdy.DICTIONARY.endswith(b"enq=0.")


def test_frames_round_trip_byte_by_byte() -> None:
    sender, receiver = spdy.Framer(), spdy.Framer()
    wire = b"".join([
        sender.syn_stream(1, {"streamType": "error", "port": "80", "requestID": "0"}),
        sender.syn_stream(3, {"streamtype": "data", "port": "80", "requestid": "0"}),
        sender.data(3, b"GET / HTTP/1.0\r\n\r\n"),
        sender.data(3, b"", fin=True),
        sender.syn_reply(5, {"x": "y"}, fin=True),
        sender.rst_stream(3, spdy.CANCEL),
        sender.ping(7),
        sender.goaway(5),
    ])
    frames: list[spdy.Frame] = []
    for i in range(len(wire)):  # any split of the byte stream parses the same
        frames += receiver.feed(wire[i:i + 1])
    kinds = [f.kind for f in frames]
    assert kinds == [spdy.SYN_STREAM, spdy.SYN_STREAM, spdy.DATA, spdy.DATA, spdy.SYN_REPLY, spdy.RST_STREAM,
                     spdy.PING, spdy.GOAWAY]
    assert frames[0].headers == {"streamtype": "error", "port": "80", "requestid": "0"}  # names lowercased
    assert frames[1].stream_id == 3 and frames[1].headers["streamtype"] == "data"
    assert frames[2].data == b"GET / HTTP/1.0\r\n\r\n" and not frames[2].fin
    assert frames[3].fin and frames[3].data == b""
    assert frames[4].headers == {"x": "y"} and frames[4].fin
    assert (frames[5].stream_id, frames[5].value) == (3, spdy.CANCEL)
    assert frames[6].value == 7
    assert frames[7].stream_id == 5


def test_unknown_version_is_a_protocol_error() -> None:
    frame = b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01"
    with pytest.raises(spdy.ProtocolError):
        spdy.Framer().feed(frame)


def test_header_block_codec() -> None:
    block = spdy.encode_header_block({"Port": "8080", "streamtype": "data"})
    assert spdy.decode_header_block(block) == {"port": "8080", "streamtype": "data"}
    with pytest.raises(spdy.ProtocolError):
        spdy.decode_header_block(block[:-3])


class _Peer:
    """kubectl's side of a port-forward session: frames out, frames back."""

    def __init__(self) -> None:
        self.framer = spdy.Framer()
        self.parser = spdy.Framer()
        self.frames: asyncio.Queue[spdy.Frame] = asyncio.Queue()

    async def receive(self, data: bytes) -> None:
        for frame in self.parser.feed(data):
            self.frames.put_nowait(frame)

    async def next(self) -> spdy.Frame:
        return await asyncio.wait_for(self.frames.get(), 5)


async def test_port_forward_session_forwards_a_connection() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the forwarded side half-closes
        writer.write(data.upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    peer = _Peer()

    async def connect(p: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", p)

    session = PortForwardSession(peer.receive, connect, "web")
    try:
        f = peer.framer
        await session.feed(f.syn_stream(1, {"streamtype": "error", "port": str(port), "requestid": "0"}))
        await session.feed(f.data(1, b"", fin=True))
        await session.feed(f.syn_stream(3, {"streamtype": "data", "port": str(port), "requestid": "0"}))
        await session.feed(f.data(3, b"hello") + f.data(3, b"", fin=True))
        await session.feed(f.ping(9))
        got: dict[int, bytes] = {1: b"", 3: b""}
        fins: set[int] = set()
        replies: set[int] = set()
        pinged = False
        while fins != {1, 3} or not pinged:
            frame = await peer.next()
            if frame.kind == spdy.SYN_REPLY:
                replies.add(frame.stream_id)
            elif frame.kind == spdy.PING:
                pinged = frame.value == 9
            elif frame.kind == spdy.DATA:
                got[frame.stream_id] += frame.data
                if frame.fin:
                    fins.add(frame.stream_id)
        assert replies == {1, 3}
        assert got == {1: b"", 3: b"HELLO"}
    finally:
        await session.close()
        server.close()
        await server.wait_closed()


async def test_port_forward_session_reports_a_refused_port() -> None:
    peer = _Peer()

    async def connect(p: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        raise ConnectionRefusedError(111, "Connection refused")

    session = PortForwardSession(peer.receive, connect, "web")
    f = peer.framer
    await session.feed(f.syn_stream(1, {"streamtype": "error", "port": "81", "requestid": "4"}))
    await session.feed(f.syn_stream(3, {"streamtype": "data", "port": "81", "requestid": "4"}))
    message = b""
    while True:
        frame = await peer.next()
        if frame.kind == spdy.DATA and frame.stream_id == 1:
            message += frame.data
            if frame.fin:
                break
    assert b"error forwarding port 81 to pod web" in message
    assert b"Connection refused" in message
    await session.close()
