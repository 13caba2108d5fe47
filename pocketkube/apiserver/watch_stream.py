"""Serve `?watch=true`: a chunked stream of `{"type":..,"object":..}` lines from the watch cache.

Semantics of kube-apiserver's watch: without resourceVersion (or "0") the stream opens with a
synthetic ADDED for every current object; with one, it replays what happened after it, or sends
an ERROR event with a 410 Status when that revision is too old. allowWatchBookmarks adds periodic
BOOKMARK events; sendInitialEvents adds the initial-events-end bookmark; timeoutSeconds ends the
stream. Table watches (kubectl get -w) get one-row Tables, the first with column definitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from pocketkube.api import errors
from pocketkube.apiserver import negotiation
from pocketkube.apiserver.handlers import list_options
from pocketkube.apiserver.registry.store import Store
from pocketkube.apiserver.watch_cache import CacheEvent, TooOldError

if TYPE_CHECKING:
    from pocketkube.apiserver.server import APIServer

BOOKMARK_INTERVAL = 30.0
_MAX_LINES_PER_WRITE = 256


def _event_line(event_type: str, obj: Any) -> bytes:
    return orjson.dumps({"type": event_type, "object": obj}) + b"\n"


async def serve_watch(request: web.Request, server: APIServer, store: Store, namespace: str,
                      accept: negotiation.Accept) -> web.StreamResponse:
    query = request.query
    opts = list_options(query, watch=True)
    info = store.info
    matches = store._matcher(opts)
    bookmarks = query.get("allowWatchBookmarks", "").lower() in ("1", "true")
    send_initial = query.get("sendInitialEvents", "").lower() in ("1", "true")
    timeout_param = query.get("timeoutSeconds")
    try:
        timeout = float(timeout_param) if timeout_param else 1800.0 * (1 + random.random())
    except ValueError as e:
        raise errors.BadRequest(f'invalid value for timeoutSeconds: "{timeout_param}"') from e
    if send_initial and opts.resource_version_match != "NotOlderThan":
        raise errors.Invalid("", "ListOptions", "", [errors.FieldError(
            "resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            kind="FieldValueForbidden")])
    if opts.resource_version_match and "sendInitialEvents" not in query:
        raise errors.Invalid("", "ListOptions", "", [errors.FieldError(
            "resourceVersionMatch", "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            kind="FieldValueForbidden")])
    prefix = info.key_prefix(namespace or None)
    cache = store.cache
    rv = opts.resource_version
    initial: list[Any] = []
    error_line: bytes | None = None
    watcher = None
    if rv in ("", "0") or send_initial:
        if rv == "":
            await cache.sync()
        elif rv != "0":
            await cache.wait_for(int(rv))
        initial = [co for co in cache.list_prefix(prefix) if matches is None or matches(co.obj)]
        start = cache.revision
        watcher = cache.watch(prefix, start, matches)
    else:
        try:
            start = int(rv)
        except ValueError as e:
            raise errors.BadRequest(f'invalid resource version "{rv}"') from e
        try:
            if start > cache.revision:
                await cache.wait_for(start)
            watcher = cache.watch(prefix, start, matches)
        except TooOldError as e:
            status = errors.Gone(f"too old resource version: {e.requested} ({e.oldest})").to_status()
            error_line = _event_line("ERROR", status)
        except TimeoutError:
            status = errors.Timeout(f"Too large resource version: {start}, current: {cache.revision}").to_status()
            error_line = _event_line("ERROR", status)

    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                   "Cache-Control": "no-cache, private"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    if error_line is not None or watcher is None:
        await resp.write(error_line or b"")
        return resp

    table = accept.form == "table"
    first_table = [True]

    def render(event_type: str, event: CacheEvent | None, obj: dict[str, Any]) -> bytes:
        if table:
            from pocketkube.api.tables import to_table

            t = to_table(info, [obj], include_object=accept.include_object, **server.printer_kwargs(info))
            if not first_table[0]:
                t["columnDefinitions"] = None
            first_table[0] = False
            return _event_line(event_type, t)
        if accept.form == "partial":
            return _event_line(event_type, negotiation.partial_metadata(obj))
        if event is not None:
            return event.line(event_type)
        return _event_line(event_type, obj)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        for co in initial:
            await resp.write(render("ADDED", None, co.obj) if table or accept.form == "partial"
                             else b'{"type":"ADDED","object":' + co.raw + b"}\n")
        if send_initial:
            await resp.write(_bookmark(info.api_version, info.kind, cache.revision, initial_end=True))
        next_bookmark = loop.time() + BOOKMARK_INTERVAL
        queue = watcher.queue
        plain = not table and accept.form != "partial"
        while True:
            if queue.empty():
                now = loop.time()
                if now >= deadline:
                    break
                wait = min(deadline, next_bookmark) - now if bookmarks else deadline - now
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for wraps every get in a new Task.
                    async with asyncio.timeout(max(wait, 0.001)):
                        item = await queue.get()
                except TimeoutError:
                    if bookmarks and loop.time() >= next_bookmark:
                        await resp.write(_bookmark(info.api_version, info.kind, cache.revision))
                        next_bookmark = loop.time() + BOOKMARK_INTERVAL
                    continue
            else:
                item = queue.get_nowait()
            # Everything already queued goes out in one write: one TLS record and one send for a
            # burst of events instead of one per event.
            lines: list[bytes] = []
            while item is not None:
                event_type, event = item
                lines.append(event.line(event_type) if plain else render(event_type, event, event.obj.obj))
                if queue.empty() or len(lines) >= _MAX_LINES_PER_WRITE:
                    break
                item = queue.get_nowait()
            if lines:
                await resp.write(lines[0] if len(lines) == 1 else b"".join(lines))
            if item is None:  # the end marker: closed by the cache (or the client fell behind)
                watcher.closed = True
                if watcher.overflowed:
                    status = errors.Gone("watch closed: the client did not keep up").to_status()
                    await resp.write(_event_line("ERROR", status))
                break
            if loop.time() >= deadline:
                break
    except ConnectionResetError:
        return resp  # the client went away
    finally:
        cache.unwatch(watcher)
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp


def _bookmark(api_version: str, kind: str, revision: int, *, initial_end: bool = False) -> bytes:
    md: dict[str, Any] = {"resourceVersion": str(revision)}
    if initial_end:
        md["annotations"] = {"k8s.io/initial-events-end": "true"}
    return _event_line("BOOKMARK", {"kind": kind, "apiVersion": api_version, "metadata": md})
