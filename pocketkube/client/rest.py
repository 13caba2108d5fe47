"""An asyncio REST client for the Kubernetes API (pocketkube's or any other).

Speaks JSON over HTTPS with a client certificate or a bearer token, maps Status errors back to
the api.errors hierarchy (so callers write `except errors.NotFound`), and streams watches.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import yaml

from pocketkube.api import errors
from pocketkube.api.resources import ResourceInfo, ResourceTable
from pocketkube.client.connections import ClosingConnector, abort_response

Obj = dict[str, Any]

_ERRORS: dict[str, type[errors.StatusError]] = {
    cls.reason: cls
    for cls in (errors.BadRequest, errors.Unauthorized, errors.Forbidden, errors.NotFound, errors.MethodNotAllowed,
                errors.AlreadyExists, errors.Conflict, errors.Gone, errors.RequestEntityTooLarge,
                errors.UnsupportedMediaType, errors.TooManyRequests, errors.InternalError,
                errors.ServiceUnavailable, errors.Timeout, errors.NotAcceptable)
}


class _RemoteInvalid(errors.StatusError):
    code = 422
    reason = "Invalid"


def status_error(status: int, body: bytes) -> errors.StatusError:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    reason = str(data.get("reason") or "")
    message = str(data.get("message") or body[:200].decode(errors="replace") or f"HTTP {status}")
    cls = _ERRORS.get(reason)
    if cls is None:
        if reason == "Invalid" or status == 422:
            cls = _RemoteInvalid
        elif reason == "Expired" or status == 410:
            cls = errors.Gone
        else:
            cls = {404: errors.NotFound, 409: errors.Conflict, 403: errors.Forbidden, 401: errors.Unauthorized,
                   400: errors.BadRequest, 429: errors.TooManyRequests, 503: errors.ServiceUnavailable,
                   504: errors.Timeout}.get(status, errors.InternalError)
    err = cls(message, details=data.get("details"))
    err.code = status
    return err


@dataclass
class ClientConfig:
    server: str
    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    token: str | None = None
    user_agent: str = "pocketkube"

    @classmethod
    def from_kubeconfig(cls, path: str, *, user_agent: str = "pocketkube") -> ClientConfig:
        with open(path) as f:
            doc = yaml.safe_load(f)
        ctx_name = doc.get("current-context")
        ctx = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in doc["users"] if u["name"] == ctx["user"])

        def data(d: dict[str, Any], key: str) -> bytes | None:
            if d.get(f"{key}-data"):
                return base64.b64decode(d[f"{key}-data"])
            if d.get(key):
                with open(d[key], "rb") as fh:
                    return fh.read()
            return None

        return cls(server=cluster["server"], ca_pem=data(cluster, "certificate-authority"),
                   cert_pem=data(user, "client-certificate"), key_pem=data(user, "client-key"),
                   token=user.get("token"), user_agent=user_agent)

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https"):
            return False
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode() if self.ca_pem else None)
        if self.cert_pem and self.key_pem:
            # ssl wants files: write them to a private temp dir just long enough to load.
            with tempfile.TemporaryDirectory() as d:
                cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
                with open(cert, "wb") as f:
                    f.write(self.cert_pem)
                fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(self.key_pem)
                ctx.load_cert_chain(cert, key)
        return ctx


_CONTENT_TYPE = {t: {"Content-Type": t} for t in (
    "application/json", "application/merge-patch+json", "application/json-patch+json",
    "application/strategic-merge-patch+json", "application/apply-patch+yaml")}


@functools.lru_cache(maxsize=16)
def _timeout(total: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=total)


class APIClient:
    """One connection pool to one API server."""

    def __init__(self, config: ClientConfig, *, table: ResourceTable | None = None) -> None:
        self.config = config
        self.table = table or ResourceTable.builtin()
        self._session: aiohttp.ClientSession | None = None
        self._watch_session: aiohttp.ClientSession | None = None
        self._ssl = config.ssl_context()

    def watch_session(self) -> aiohttp.ClientSession:
        """Watches hold a connection for minutes each: they get their own pool, without a limit, so
        any number of informers never starves ordinary requests (client-go gives each watch its
        own HTTP/2 stream for the same reason)."""
        if self._watch_session is None or self._watch_session.closed:
            headers = {"User-Agent": self.config.user_agent, "Accept": "application/json"}
            if self.config.token:
                headers["Authorization"] = f"Bearer {self.config.token}"
            self._watch_session = aiohttp.ClientSession(
                base_url=self.config.server, headers=headers,
                connector=ClosingConnector(ssl=self._ssl, limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self._watch_session

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"User-Agent": self.config.user_agent, "Accept": "application/json"}
            if self.config.token:
                headers["Authorization"] = f"Bearer {self.config.token}"
            self._session = aiohttp.ClientSession(
                base_url=self.config.server, headers=headers,
                connector=ClosingConnector(ssl=self._ssl, limit=64),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self._session

    async def close(self) -> None:
        """Close both pools; every socket is closed when this returns, even those of requests and
        watches cancelled mid-response (connections.py)."""
        sessions = [s for s in (self._session, self._watch_session) if s is not None]
        self._session = self._watch_session = None
        for s in sessions:
            if isinstance(connector := s.connector, ClosingConnector):
                await connector.close_all()
            await s.close()

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
                      content_type: str = "application/json", timeout: float = 30.0) -> Obj:
        data = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
        headers = (_CONTENT_TYPE.get(content_type) or {"Content-Type": content_type}) if data is not None else None
        clean = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (params or {}).items()
                 if v is not None and v != ""}
        # no empty query for aiohttp to merge, one timeout object per value: every controller and
        # the scheduler's bindings go through here, so the per-request constant matters
        async with self.session().request(method, path, params=clean or None, data=data, headers=headers,
                                          timeout=_timeout(timeout)) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise status_error(resp.status, raw)
            result: Obj = orjson.loads(raw) if raw else {}
            return result

    def resource(self, group: str, version: str, plural: str) -> ResourceClient:
        info = self.table.get(group, version, plural)
        if info is None:
            raise KeyError(f"unknown resource {plural}.{group}/{version}")
        return ResourceClient(self, info)

    # convenience for the commonest resources
    def core(self, plural: str) -> ResourceClient:
        return self.resource("", "v1", plural)


class ResourceClient:
    def __init__(self, client: APIClient, info: ResourceInfo) -> None:
        self.client = client
        self.info = info

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        info = self.info
        base = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
        if info.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{info.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base

    async def get(self, name: str, namespace: str | None = None) -> Obj:
        return await self.client.request("GET", self.path(namespace, name))

    async def list(self, namespace: str | None = None, *, label_selector: str = "", field_selector: str = "",
                   limit: int = 0, continue_: str = "", resource_version: str = "") -> Obj:
        return await self.client.request("GET", self.path(namespace), params={
            "labelSelector": label_selector, "fieldSelector": field_selector, "limit": limit or None,
            "continue": continue_, "resourceVersion": resource_version})

    async def create(self, obj: Obj, namespace: str | None = None, *, field_manager: str = "") -> Obj:
        ns = namespace or (obj.get("metadata") or {}).get("namespace")
        return await self.client.request("POST", self.path(ns), body=obj,
                                         params={"fieldManager": field_manager or None})

    async def update(self, obj: Obj, *, subresource: str | None = None) -> Obj:
        md = obj.get("metadata") or {}
        return await self.client.request("PUT", self.path(md.get("namespace"), md["name"], subresource), body=obj)

    async def update_status(self, obj: Obj) -> Obj:
        return await self.update(obj, subresource="status")

    async def patch(self, name: str, patch: Any, namespace: str | None = None, *, patch_type: str = "merge",
                    subresource: str | None = None, field_manager: str = "", force: bool = False) -> Obj:
        ctype = {"merge": "application/merge-patch+json", "json": "application/json-patch+json",
                 "strategic": "application/strategic-merge-patch+json",
                 "apply": "application/apply-patch+yaml"}[patch_type]
        return await self.client.request("PATCH", self.path(namespace, name, subresource), body=patch,
                                         content_type=ctype,
                                         params={"fieldManager": field_manager or None, "force": force or None})

    async def delete(self, name: str, namespace: str | None = None, *, propagation_policy: str | None = None,
                     grace_period_seconds: int | None = None, uid: str | None = None) -> Obj:
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if uid:
            body["preconditions"] = {"uid": uid}
        return await self.client.request("DELETE", self.path(namespace, name), body=body)

    async def delete_collection(self, namespace: str | None = None, *, label_selector: str = "") -> Obj:
        return await self.client.request("DELETE", self.path(namespace), params={"labelSelector": label_selector},
                                         body={"kind": "DeleteOptions", "apiVersion": "v1",
                                               "propagationPolicy": "Background"})

    async def create_subresource(self, name: str, subresource: str, body: Obj, namespace: str | None = None) -> Obj:
        return await self.client.request("POST", self.path(namespace, name, subresource), body=body)

    async def watch(self, namespace: str | None = None, *, resource_version: str = "", label_selector: str = "",
                    field_selector: str = "", timeout_seconds: int = 300,
                    bookmarks: bool = True) -> AsyncIterator[tuple[str, Obj]]:
        """Yield (type, object) pairs; ERROR events are raised as Status errors (410 → Gone)."""
        params = {"watch": "true", "resourceVersion": resource_version, "labelSelector": label_selector,
                  "fieldSelector": field_selector, "timeoutSeconds": timeout_seconds,
                  "allowWatchBookmarks": "true" if bookmarks else None}
        clean = {k: str(v) for k, v in params.items() if v not in (None, "")}
        async with self.client.watch_session().get(self.path(namespace), params=clean,
                                             timeout=aiohttp.ClientTimeout(total=timeout_seconds + 30,
                                                                           sock_read=None)) as resp:
            if resp.status >= 400:
                raise status_error(resp.status, await resp.read())
            ended = False
            try:
                buf = b""
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    if b"\n" not in chunk:
                        continue
                    # one split per chunk (a chunk carries many events under load), not one per line
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if not line.strip():
                            continue
                        event = orjson.loads(line)
                        etype, obj = event.get("type", ""), event.get("object") or {}
                        if etype == "ERROR":
                            raise status_error(int(obj.get("code") or 500), orjson.dumps(obj))
                        yield etype, obj
                ended = True
            finally:
                if not ended:  # cancelled, closed by the consumer or failed mid-stream
                    abort_response(resp)


async def wait_until_ready(client: APIClient, timeout: float = 30.0) -> None:
    """Poll /readyz until the API server answers ok."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            async with client.session().get("/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("API server not ready")
        await asyncio.sleep(0.1)
