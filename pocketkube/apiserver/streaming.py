"""Streaming pod subresources (log, exec, attach, portforward), proxied to the pod's kubelet.

As in kube-apiserver (pkg/registry/core/pod/strategy.go LogLocation/ExecLocation): the pod's
`spec.nodeName` names the node; its InternalIP and `status.daemonEndpoints.kubeletEndpoint.Port`
say where the kubelet listens. Logs stream the kubelet's body through. Exec, attach and
port-forward are WebSocket upgrades: we open a WebSocket to the kubelet with the subprotocols the
client offered, accept the client with the one the kubelet chose, and copy messages both ways
untouched (channel bytes, or SPDY frames for `SPDY/3.1+portforward.k8s.io`). Raw `Upgrade:
SPDY/3.1` requests (kubectl's fallback) are tunnelled byte for byte (spdy_tunnel.py). We present the
`kube-apiserver-kubelet-client` certificate; like kube without --kubelet-certificate-authority,
we do not verify the kubelet's self-signed serving certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from pocketkube.api import errors
from pocketkube.api.resources import ResourceInfo
from pocketkube.apiserver.registry.store import Store
from pocketkube.apiserver.request_info import RequestInfo

if TYPE_CHECKING:
    from pocketkube.apiserver.server import APIServer

Obj = dict[str, Any]

LOG_PARAMS = ("follow", "previous", "sinceSeconds", "sinceTime", "timestamps", "tailLines", "limitBytes")
STREAM_PARAMS = ("command", "stdin", "stdout", "stderr", "tty", "ports")
KUBELET_PATHS = {"log": "containerLogs", "exec": "exec", "attach": "attach", "portforward": "portForward"}


def container_names(pod: Obj) -> list[str]:
    spec = pod.get("spec") or {}
    return [c["name"] for key in ("initContainers", "containers", "ephemeralContainers")  # kube: VisitContainers
            for c in spec.get(key) or [] if c.get("name")]


def validate_container(container: str, pod: Obj) -> str:
    """The container a request means, with kube's errors (strategy.go validateContainer)."""
    name = pod["metadata"]["name"]
    if not container:
        containers = (pod.get("spec") or {}).get("containers") or []
        if len(containers) == 1:
            return str(containers[0]["name"])
        if not containers:
            raise errors.BadRequest(f"a container name must be specified for pod {name}")
        raise errors.BadRequest(f"a container name must be specified for pod {name}, choose one of: "
                                f"[{' '.join(container_names(pod))}]")
    if container not in container_names(pod):
        raise errors.BadRequest(f"container {container} is not valid for pod {name}")
    return container


class StreamingProxy:
    def __init__(self, server: APIServer) -> None:
        self.server = server
        self._session: aiohttp.ClientSession | None = None

    def _ssl(self) -> ssl.SSLContext:
        pki = self.server.pki
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if pki is not None:
            ctx.load_cert_chain(pki.kubelet_client_cert_path, pki.kubelet_client_key_path)
        return ctx

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl(), limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # ---- location --------------------------------------------------------------------------------
    async def _kubelet(self, pod: Obj) -> str:
        node_name = str((pod.get("spec") or {}).get("nodeName") or "")
        nodes = self.server.store_by_kind("", "v1", "nodes")
        try:
            node = await nodes.get("", node_name)
        except errors.NotFound as e:
            raise errors.NotFound(f'node "{node_name}" not found') from e
        status = node.get("status") or {}
        addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
        host = addresses.get("InternalIP") or addresses.get("ExternalIP") or addresses.get("Hostname")
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 10250
        if not host:
            raise errors.BadRequest(f"node {node_name} has no address")
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{port}"

    async def handle(self, request: web.Request, ri: RequestInfo, info: ResourceInfo,
                     store: Store) -> web.StreamResponse:
        sub = ri.subresource
        if info.plural != "pods" or sub not in KUBELET_PATHS:
            raise errors.NotFound(f"the server could not find the requested resource ({info.plural}/{sub})")
        if sub == "log" and request.method != "GET":
            raise errors.MethodNotAllowed(f"{request.method} is not supported on pods/log")
        pod = await store.get(ri.namespace, ri.name)
        name = pod["metadata"]["name"]
        q = request.query
        path = f"/{KUBELET_PATHS[sub]}/{ri.namespace}/{name}"
        if sub != "portforward":
            path += "/" + validate_container(q.get("container", ""), pod)
        if not (pod.get("spec") or {}).get("nodeName"):
            if sub == "log":  # kube answers an empty log for a pod not yet scheduled
                return web.Response(body=b"", content_type="text/plain")
            raise errors.BadRequest(f"pod {name} does not have a host assigned")
        params = [(k, v) for k, v in q.items() if k in (LOG_PARAMS if sub == "log" else STREAM_PARAMS)]
        url = await self._kubelet(pod) + path + (("?" + urlencode(params)) if params else "")
        if sub == "log":
            return await self._log(request, url)
        upgrade = request.headers.get("Upgrade", "").lower()
        if upgrade.startswith("spdy/"):
            from pocketkube.apiserver.spdy_tunnel import tunnel

            return await tunnel(request, url, self._ssl())
        if upgrade != "websocket":
            raise errors.BadRequest("Upgrade request required")
        return await self._websocket(request, url)

    # ---- logs ------------------------------------------------------------------------------------
    async def _log(self, request: web.Request, url: str) -> web.StreamResponse:
        try:
            upstream = await self.session().get(url)
        except (aiohttp.ClientError, OSError) as e:
            raise errors.ServiceUnavailable(f"error trying to reach the kubelet: {e}") from e
        async with upstream:
            if upstream.status != 200:
                return await _relay_error(upstream)
            response = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await response.prepare(request)
            with contextlib.suppress(ConnectionError, aiohttp.ClientPayloadError):
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            return response

    # ---- WebSocket ---------------------------------------------------------------------------------
    async def _websocket(self, request: web.Request, url: str) -> web.StreamResponse:
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        try:
            upstream = await self.session().ws_connect(url, protocols=offered, autoping=True, heartbeat=None,
                                                       max_msg_size=0)
        except aiohttp.WSServerHandshakeError as e:
            # The kubelet refused before upgrading; fetch its Status (it checks before the upgrade).
            async with self.session().get(url) as plain:
                if plain.status != 200:
                    return await _relay_error(plain)
            raise errors.BadRequest(f"unable to upgrade connection: {e.message}") from e
        except (aiohttp.ClientError, OSError) as e:
            raise errors.ServiceUnavailable(f"error trying to reach the kubelet: {e}") from e
        try:
            client = web.WebSocketResponse(protocols=(upstream.protocol,) if upstream.protocol else (),
                                           heartbeat=None, max_msg_size=0)
            await client.prepare(request)
            to_kubelet = asyncio.ensure_future(_copy(client, upstream))
            to_client = asyncio.ensure_future(_copy(upstream, client))
            await asyncio.wait({to_kubelet, to_client}, return_when=asyncio.FIRST_COMPLETED)
            to_kubelet.cancel()
            to_client.cancel()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await client.close()
            return client
        finally:
            await upstream.close()


async def _copy(src: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                dst: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
    try:
        async for msg in src:
            if msg.type == aiohttp.WSMsgType.BINARY:
                await dst.send_bytes(msg.data)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                await dst.send_str(msg.data)
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                break
    except (ConnectionError, RuntimeError):
        pass


async def _relay_error(upstream: aiohttp.ClientResponse) -> web.Response:
    body = await upstream.read()
    return web.Response(status=upstream.status, body=body,
                        content_type=upstream.content_type or "application/json")
