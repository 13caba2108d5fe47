"""The kubelet's streaming server: container logs, exec, attach and port-forward, over HTTPS.

Paths as the real kubelet's: `/containerLogs/{ns}/{pod}/{container}`, `/exec/...`,
`/attach/...` and `/portForward/{ns}/{pod}`. Only the API server may call it: the TLS handshake
requires a client certificate signed by the cluster CA (learned at join) and the certificate's
CN must be `kube-apiserver-kubelet-client`. The serving certificate is self-signed, as a
kubelet's is by default (the API server does not verify it unless told to). Errors answer as
metav1 Status JSON, which the API server passes through to kubectl.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from pocketkube.kubelet import attach, exec_stream, portforward, serving_cert, spdy_upgrade
from pocketkube.kubelet.netns_socket import listening_socket, open_connection
from pocketkube.kubelet.records import ContainerRecord, RecordStore
from pocketkube.kubelet.runtime.errors import RuntimeError_
from pocketkube.kubelet.runtime.logs import (
    LogOptions,
    follow_log,
    parse_timestamp,
    previous_log_path,
    read_log,
)

log = logging.getLogger(__name__)
Obj = dict[str, Any]

API_SERVER_CN = "kube-apiserver-kubelet-client"
ExecFn = Callable[..., Awaitable[Any]]


@dataclass
class KubeletServerConfig:
    node_ip: str
    port: int
    data_dir: str
    ca_pem: bytes
    node_name: str = "node"
    netns: str | None = None  # the node's network namespace, when the node is one


class StreamError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def _status(e: StreamError) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": e.message,
            "reason": e.reason, "code": e.code}
    return web.Response(status=e.code, body=orjson.dumps(body), content_type="application/json")


class KubeletServer:
    """Serves the streaming endpoints for the pods in `pods` (an informer's get by `ns/name`)."""

    def __init__(self, config: KubeletServerConfig, *, pods: Callable[[str], Obj | None], records: RecordStore,
                 exec_fn: ExecFn, exited: Callable[[str], bool], exit_code: Callable[[str], int | None],
                 attach_socket: Callable[[str], str] | None = None) -> None:
        self.config = config
        self._pods = pods
        self._records = records
        self._exec = exec_fn
        self._exited = exited
        self._exit_code = exit_code
        self._attach_socket = attach_socket
        self.runner: web.AppRunner | None = None
        self.port = config.port

    # ---- lifecycle -----------------------------------------------------------------------------
    async def _ssl_context(self) -> ssl.SSLContext:
        tls_dir = os.path.join(self.config.data_dir, "tls")
        crt, key = os.path.join(tls_dir, "kubelet.crt"), os.path.join(tls_dir, "kubelet.key")
        await serving_cert.ensure(crt, key, self.config.node_name, self.config.node_ip)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(crt, key)
        ctx.load_verify_locations(cadata=self.config.ca_pem.decode())
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self.logs)
        for verb in ("exec", "attach"):
            app.router.add_route("*", f"/{verb}/{{ns}}/{{pod}}/{{container}}", self.exec if verb == "exec" else
                                 self.attach)
        app.router.add_route("*", "/portForward/{ns}/{pod}", self.port_forward)
        app.router.add_get("/healthz", self.healthz)
        return app

    async def start(self) -> None:
        self.runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self.runner.setup()
        sock = listening_socket(self.config.netns, self.config.node_ip, self.config.port)
        self.port = sock.getsockname()[1]
        site = web.SockSite(self.runner, sock, ssl_context=await self._ssl_context())
        await site.start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peercert") if request.transport is not None else None
        cn = ""
        for rdn in (peer or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    cn = value
        if cn != API_SERVER_CN:
            return _status(StreamError(403, "Forbidden", f'user "{cn or "system:anonymous"}" may not use the '
                                                         f"kubelet API: only the API server may"))
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except StreamError as e:
            return _status(e)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    # ---- lookup ----------------------------------------------------------------------------------
    def _pod(self, request: web.Request) -> Obj:
        ns, name = request.match_info["ns"], request.match_info["pod"]
        pod = self._pods(f"{ns}/{name}")
        if pod is None:
            raise StreamError(404, "NotFound", f'pod "{name}" not found on this node')
        return pod

    def _container_records(self, pod: Obj, container: str) -> list[ContainerRecord]:
        uid = pod["metadata"]["uid"]
        return [r for r in self._records.for_pod(uid) if r.name == container]

    def _current(self, pod: Obj, container: str) -> ContainerRecord:
        names = [c["name"] for key in ("initContainers", "containers", "ephemeralContainers")
                 for c in (pod.get("spec") or {}).get(key) or []]
        pod_name = pod["metadata"]["name"]
        if container not in names:
            raise StreamError(404, "NotFound", f'container "{container}" not found in pod "{pod_name}"')
        recs = self._container_records(pod, container)
        if not recs:
            raise StreamError(400, "BadRequest", f'container "{container}" in pod "{pod_name}" is waiting to '
                                                 f"start: ContainerCreating")
        return recs[-1]

    # ---- logs ------------------------------------------------------------------------------------
    async def logs(self, request: web.Request) -> web.StreamResponse:
        pod = self._pod(request)
        container = request.match_info["container"]
        rec = self._current(pod, container)
        q = request.query
        opts = _log_options(q)
        path: str | None = rec.log_path
        if _flag(q, "previous"):
            log_dir = os.path.dirname(os.path.dirname(rec.log_path))
            path = previous_log_path(log_dir, container, rec.attempt)
            if path is None:
                raise StreamError(400, "BadRequest", f'previous terminated container "{container}" in pod '
                                                     f'"{pod["metadata"]["name"]}" not found')
        assert path is not None
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        if not _flag(q, "follow") or _flag(q, "previous"):
            body = read_log(path, opts) if os.path.exists(path) else b""
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body)
            return response
        await response.prepare(request)
        cid = rec.container_id
        with contextlib.suppress(ConnectionError):
            async for chunk in follow_log(path, opts, finished=lambda: self._exited(cid)):
                await response.write(chunk)
        return response

    # ---- exec / attach -----------------------------------------------------------------------------
    async def _websocket(self, request: web.Request, protocols: tuple[str, ...]) -> web.WebSocketResponse:
        asked = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        if request.headers.get("Upgrade", "").lower() != "websocket" or not set(asked) & set(protocols):
            raise StreamError(400, "BadRequest", "Upgrade request required: a WebSocket with one of the "
                                                 f"subprotocols {', '.join(protocols)}")
        ws = web.WebSocketResponse(protocols=protocols, heartbeat=None, max_msg_size=0)
        await ws.prepare(request)
        return ws

    async def exec(self, request: web.Request) -> web.StreamResponse:
        pod = self._pod(request)
        container = request.match_info["container"]
        rec = self._current(pod, container)
        opts = exec_stream.StreamOptions.from_query(request.query)
        if not opts.command:
            raise StreamError(400, "BadRequest", "you must specify at least 1 command")
        if rec.exit_code is not None or self._exited(rec.container_id):
            raise StreamError(400, "BadRequest", f'container "{container}" is not running')
        if spdy_upgrade.is_spdy_upgrade(request):
            if not set(spdy_upgrade.offered(request)) & set(spdy_upgrade.EXEC_PROTOCOLS):
                raise StreamError(400, "BadRequest", "unable to upgrade: no supported stream protocol offered "
                                                     f"(this kubelet speaks {', '.join(spdy_upgrade.EXEC_PROTOCOLS)})")

            async def start() -> exec_stream.Process:
                proc: exec_stream.Process = await self._exec(rec.container_id, list(opts.command), tty=opts.tty)
                return proc

            return await spdy_upgrade.serve_exec(request, opts, start)
        ws = await self._websocket(request, exec_stream.PROTOCOLS)
        sock = exec_stream.ChannelSocket(ws)
        try:
            proc = await self._exec(rec.container_id, list(opts.command), tty=opts.tty)
        except RuntimeError_ as e:
            await sock.finish(exec_stream.error_status(
                f"failed to exec in container: failed to start exec in {container}: {e}"))
            return ws
        await exec_stream.serve_exec(sock, proc, opts)
        return ws

    async def attach(self, request: web.Request) -> web.StreamResponse:
        pod = self._pod(request)
        container = request.match_info["container"]
        rec = self._current(pod, container)
        opts = exec_stream.StreamOptions.from_query(request.query)
        ws = await self._websocket(request, exec_stream.PROTOCOLS)
        cid = rec.container_id

        async def exited() -> int | None:
            for _ in range(100):  # conmon writes the exit file just after closing the socket
                code = self._exit_code(cid)
                if code is not None:
                    return code
                await asyncio.sleep(0.02)
            return None

        spec: Obj = next((c for key in ("containers", "initContainers") for c in (pod.get("spec") or {}).get(key) or []
                     if c.get("name") == container), {})
        if (spec.get("stdin") or spec.get("tty")) and self._attach_socket is not None:
            try:
                conn = attach.connect(self._attach_socket(cid))
            except OSError as e:
                await exec_stream.ChannelSocket(ws).finish(exec_stream.error_status(
                    f"cannot attach to container {container}: {e}"))
                return ws
            ctl = [os.path.join(rec.bundle_dir, "ctl"), os.path.join(os.path.dirname(rec.bundle_dir), "ctl")]
            await attach.serve(exec_stream.ChannelSocket(ws), conn, opts, ctl, exited)
            return ws

        async def output() -> AsyncIterator[tuple[int, bytes]]:
            from pocketkube.kubelet.runtime.logs import STDERR, STDOUT

            streams = tuple(s for s, on in ((STDOUT, opts.stdout or opts.tty), (STDERR, opts.stderr)) if on)
            async for chunk in follow_log(rec.log_path, LogOptions(tail=0, streams=streams),
                                          finished=lambda: self._exited(cid)):
                yield exec_stream.STDOUT, chunk

        await exec_stream.serve_attach(exec_stream.ChannelSocket(ws), output(), exited)
        return ws

    # ---- port-forward --------------------------------------------------------------------------------
    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        pod = self._pod(request)
        ip = (pod.get("status") or {}).get("podIP")
        if not ip:
            raise StreamError(400, "BadRequest", f'pod "{pod["metadata"]["name"]}" has no IP address yet')
        async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.wait_for(open_connection(self.config.netns, ip, port), 10)

        if spdy_upgrade.is_spdy_upgrade(request):
            if portforward.PROTOCOL not in spdy_upgrade.offered(request):
                raise StreamError(400, "BadRequest", f"unable to upgrade: {portforward.PROTOCOL} not offered")
            return await spdy_upgrade.serve_port_forward(request, connect, pod["metadata"]["name"])
        ws = await self._websocket(request, (portforward.WS_PROTOCOL, *portforward.CHANNEL_PROTOCOLS))

        if ws.ws_protocol in portforward.CHANNEL_PROTOCOLS:
            try:
                ports = [int(p) for p in ",".join(request.query.getall("ports", [])).split(",") if p.strip()]
            except ValueError:
                ports = []
            await portforward.serve_channels(ws, ports, connect, pod["metadata"]["name"])
            return ws

        session = portforward.PortForwardSession(ws.send_bytes, connect, pod["metadata"]["name"])
        try:
            async for msg in ws:
                if msg.type == web.WSMsgType.BINARY:
                    await session.feed(msg.data)
                elif msg.type in (web.WSMsgType.CLOSE, web.WSMsgType.ERROR):
                    break
                if session.closed.is_set():
                    break
        except Exception as e:  # a protocol error ends this session only
            log.warning("port-forward to %s ended: %s", pod["metadata"]["name"], e)
        finally:
            await session.close()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.close()
        return ws


def _flag(q: Any, name: str) -> bool:
    return str(q.get(name, "")).lower() in ("1", "true", "yes")


def _int(q: Any, name: str) -> int | None:
    raw = q.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError as e:
        raise StreamError(400, "BadRequest", f"{name}: invalid value {raw!r}") from e


def _log_options(q: Any) -> LogOptions:
    tail = _int(q, "tailLines")
    since_ns: int | None = None
    since_seconds = _int(q, "sinceSeconds")
    if since_seconds is not None:
        since_ns = time.time_ns() - since_seconds * 1_000_000_000
    elif q.get("sinceTime"):
        try:
            since_ns = parse_timestamp(q["sinceTime"])
        except ValueError as e:
            raise StreamError(400, "BadRequest", f"sinceTime: invalid value {q['sinceTime']!r}") from e
    return LogOptions(tail=-1 if tail is None else max(tail, 0), since_ns=since_ns,
                      timestamps=_flag(q, "timestamps"), limit_bytes=_int(q, "limitBytes"))
