"""The client's connection pool, which closes every socket it opened before its close() returns.

aiohttp closes a connection given up mid-response (a cancelled request or watch) gracefully: over
HTTPS the socket stays open until the server answers the TLS close_notify, and the pool forgets
it at once, so `ClientSession.close()` does not wait for it. When the event loop ends before the
answer (a component stopping, a test's `asyncio.run`), the socket is collected unclosed: a
ResourceWarning in some unrelated later moment. This pool remembers the transports it created
and, on close, aborts those still open and waits until they are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler


class ClosingConnector(aiohttp.TCPConnector):
    """A TCPConnector whose `close_all()` leaves no transport open, however it was given up."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._opened: dict[ResponseHandler, asyncio.Transport] = {}

    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> ResponseHandler:
        proto = await super()._create_connection(req, traces, timeout)
        # forget those already lost (`closed` is None once connection_lost ran): a handful live at once
        for old in [p for p in self._opened if p.closed is None]:
            del self._opened[old]
        if proto.transport is not None:
            self._opened[proto] = proto.transport
        return proto

    async def close_all(self, *, grace: float = 1.0) -> None:
        """Close the pool (TLS goodbyes get `grace` seconds: a stuck server must not hold a component's
        shutdown for aiohttp's 30 s), then abort what is still open and wait for it to be closed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.close(), grace)
        waiters = []
        for proto, transport in self._opened.items():
            if (closed := proto.closed) is not None:
                transport.abort()  # the raw socket closes on the next loop turn, no TLS goodbye
                waiters.append(closed)
        self._opened.clear()
        if waiters:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), grace)


def abort_response(resp: aiohttp.ClientResponse) -> None:
    """Drop a response's connection at once: after a cancelled or failed watch it is useless and a
    graceful TLS close would keep the socket open until the server answers."""
    conn = resp.connection
    if conn is not None and conn.protocol is not None:
        conn.protocol.abort()
