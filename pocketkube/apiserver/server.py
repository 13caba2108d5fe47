"""The API server: storage → watch cache → HTTP(S) app, plus what kube-apiserver does at boot.

`APIServer.start()` opens the datastore chosen by URL, fills the watch cache, creates the system
namespaces, ensures the PKI and admin kubeconfig, and serves HTTPS. Everything a request needs
(stores per resource, discovery, OpenAPI, authentication) hangs off this object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from pocketkube import KUBE_GIT_VERSION
from pocketkube.api import errors
from pocketkube.api.resources import ResourceInfo, ResourceTable
from pocketkube.apiserver import kubeconfig
from pocketkube.apiserver.authn import USER_KEY, Authenticator, User
from pocketkube.apiserver.certs import ClusterPKI, default_sans, ensure_pki
from pocketkube.apiserver.discovery import Discovery
from pocketkube.apiserver.registry.store import Store
from pocketkube.apiserver.registry.strategies import strategy_for
from pocketkube.apiserver.watch_cache import WatchCache
from pocketkube.storage.factory import storage_from_url
from pocketkube.storage.interface import KeyExistsError, Storage
from pocketkube.util.gc_tuning import tune_gc

if TYPE_CHECKING:
    from pocketkube.apiserver.streaming import StreamingProxy

log = logging.getLogger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
MAX_HEADER_BYTES = 1 << 20  # request line and each header, like Go's http.DefaultMaxHeaderBytes


@dataclass
class APIServerConfig:
    data_dir: str = "/var/lib/pocketkube"
    port: int = 6443
    bind_address: str = "0.0.0.0"
    advertise_address: str = "127.0.0.1"
    datastore: str = ""
    tls: bool = True
    compaction_interval: float = 300.0  # seconds; 0 disables
    watch_cache_size: int = 100_000
    extra_sans: list[str] = field(default_factory=list)
    service_cidr: str = "10.43.0.0/16"
    default_unreachable_toleration_seconds: int = 300
    default_not_ready_toleration_seconds: int = 300
    node_port_range: tuple[int, int] = (30000, 32767)

    def validate(self) -> None:
        if not (0 <= self.port < 65536):
            raise ValueError(f"--port must be 0..65535, got {self.port}")
        if self.compaction_interval < 0:
            raise ValueError("--compaction-interval must be >= 0")


class APIServer:
    def __init__(self, config: APIServerConfig, *, storage: Storage | None = None) -> None:
        config.validate()
        self.config = config
        self.table = ResourceTable.builtin()
        self.storage = storage or storage_from_url(config.datastore, data_dir=config.data_dir)
        self.cache = WatchCache(self.storage, capacity=config.watch_cache_size)
        from pocketkube.apiserver.allocators import Allocators

        self.allocators = Allocators(self.storage, service_cidr=config.service_cidr,
                                     node_port_range=config.node_port_range)
        from pocketkube.apiserver.quota import QuotaAdmission

        self.quota = QuotaAdmission(self)
        self.discovery = Discovery(self.table)
        self.authn = Authenticator()
        self._stores: dict[tuple[str, str, str], Store] = {}
        self.pki: ClusterPKI | None = None
        self.streaming: StreamingProxy | None = None
        self.runner: web.AppRunner | None = None
        self.port = config.port
        self.ready = False
        self.started_at = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        from pocketkube.apiserver.handlers import ResourceHandlers
        from pocketkube.apiserver.openapi import OpenAPIBuilder
        from pocketkube.apiserver.subresources import Subresources

        self.handlers = ResourceHandlers(self)
        self.subresources = Subresources(self)
        self.openapi = OpenAPIBuilder(self.table, self.crd_schema)
        self.crd_printer_columns: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self.crd_schemas: dict[tuple[str, str, str], dict[str, Any]] = {}

    # ---- stores ----------------------------------------------------------------------------
    def store_for(self, info: ResourceInfo) -> Store:
        key = (info.group, info.version, info.plural)
        store = self._stores.get(key)
        if store is None or store.info is not info:
            from pocketkube.apiserver.managed_fields import managed_fields_hook

            store = Store(info, strategy_for(info), self.storage, self.cache,
                          managed_fields=managed_fields_hook(info), admission=self._admit)
            self._stores[key] = store
        return store

    async def _admit(self, operation: str, info: ResourceInfo, obj: dict[str, Any], old: dict[str, Any] | None,
                     dry_run: bool) -> None:
        from pocketkube.apiserver.admission import admit

        await admit(self, operation, info, obj, old, dry_run)

    def store_by_kind(self, group: str, version: str, plural: str) -> Store:
        info = self.table.get(group, version, plural)
        assert info is not None, plural
        return self.store_for(info)

    def crd_schema(self, info: ResourceInfo) -> dict[str, Any] | None:
        return self.crd_schemas.get((info.group, info.version, info.plural))

    def printer_kwargs(self, info: ResourceInfo) -> dict[str, Any]:
        cols = self.crd_printer_columns.get((info.group, info.version, info.plural)) if info.custom else None
        return {"printer_columns": cols} if cols else {}

    def check_fields(self, info: ResourceInfo, obj: dict[str, Any], raw: bytes, mode: str) -> list[str]:
        from pocketkube.apiserver.field_check import check_fields

        return check_fields(self, info, obj, raw, mode)

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        os.makedirs(self.config.data_dir, exist_ok=True)
        await self.storage.start()
        await self.cache.start()
        await self._bootstrap()
        from pocketkube.apiserver.crd import CRDWatcher

        self.crds = CRDWatcher(self)
        await self.crds.start()
        app = self.make_app()
        # Go's http.Server allows 1 MiB of request line and headers (DefaultMaxHeaderBytes); aiohttp's
        # 8 KiB default refused long label selectors and logged a traceback for each.
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0,
                                    max_line_size=MAX_HEADER_BYTES, max_field_size=MAX_HEADER_BYTES)
        await self.runner.setup()
        ssl_ctx = self._ssl_context() if self.config.tls else None
        self._load_tokens()
        from pocketkube.apiserver.streaming import StreamingProxy

        self.streaming = StreamingProxy(self)
        site = web.TCPSite(self.runner, self.config.bind_address, self.config.port, ssl_context=ssl_ctx,
                           backlog=1024, reuse_address=True)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        if self.config.tls and self.pki is not None:
            kubeconfig.write_admin_kubeconfig(self.config.data_dir, self.pki, self.server_url())
        if self.config.compaction_interval > 0:
            self._tasks.append(asyncio.get_running_loop().create_task(self._compactor(), name="compactor"))
        tune_gc()
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if getattr(self, "crds", None) is not None:
            await self.crds.stop()
        await self.cache.stop()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.streaming is not None:
            await self.streaming.close()
        await self.storage.close()

    def server_url(self) -> str:
        host = self.config.advertise_address
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://{host}:{self.port}"

    def _ssl_context(self) -> ssl.SSLContext:
        ips = [self.config.advertise_address]
        if self.config.bind_address not in ("0.0.0.0", "::", ""):
            ips.append(self.config.bind_address)
        ips += [s for s in self.config.extra_sans if s.replace(".", "").replace(":", "").isalnum() and
                any(c.isdigit() for c in s)]
        dns, all_ips = default_sans(extra_ips=ips)
        self.pki = ensure_pki(os.path.join(self.config.data_dir, "tls"), dns=dns, ips=all_ips)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.pki.serving_cert_path, self.pki.serving_key_path)
        ctx.load_verify_locations(self.pki.ca_path)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def ca_pem(self) -> bytes:
        return self.pki.ca.cert_pem if self.pki is not None else b""

    def _load_tokens(self) -> None:
        """The node join token: `pk1::<sha256 of the CA>::<secret>`, so agents can pin the CA."""
        path = os.path.join(self.config.data_dir, "token")
        if not os.path.exists(path):
            import hashlib

            ca_hash = hashlib.sha256(self.ca_pem()).hexdigest()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"pk1::{ca_hash}::{secrets.token_hex(24)}\n")
        with open(path) as f:
            token = f.read().strip()
        self.authn.add_token(token, User("system:node-bootstrap", ("system:nodes", "system:bootstrappers",
                                                                    "system:authenticated")))
        self.join_token = token

    async def _bootstrap(self) -> None:
        from pocketkube.api import meta

        ns = self.table.get("", "v1", "namespaces")
        assert ns is not None
        for name in SYSTEM_NAMESPACES:
            obj = {"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": name, "uid": meta.new_uid(), "creationTimestamp": meta.now_rfc3339(),
                                "labels": {"kubernetes.io/metadata.name": name}},
                   "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
            with contextlib.suppress(KeyExistsError):
                await self.storage.create(ns.key(None, name), orjson.dumps(obj))
        await self.cache.sync()
        await self._bootstrap_kubernetes_service()

    async def _bootstrap_kubernetes_service(self) -> None:
        """The `kubernetes` Service in default, at the first address of the service range."""
        import ipaddress

        from pocketkube.apiserver.registry.store import WriteOptions

        info = self.table.get("", "v1", "services")
        assert info is not None
        store = self.store_for(info)
        first_ip = str(ipaddress.ip_network(self.config.service_cidr).network_address + 1)
        svc = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "kubernetes", "namespace": "default",
                            "labels": {"component": "apiserver", "provider": "kubernetes"}},
               "spec": {"type": "ClusterIP", "clusterIP": first_ip,
                        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": self.config.port}]}}
        if self.cache.get(info.key("default", "kubernetes")) is None:
            with contextlib.suppress(errors.AlreadyExists, errors.Invalid):
                await store.create("default", svc, WriteOptions(field_manager="kube-apiserver"))
        await self._reconcile_kubernetes_endpoints()

    async def _reconcile_kubernetes_endpoints(self) -> None:
        """Endpoints and EndpointSlice of `kubernetes` point at this API server (kube's endpoint
        reconciler; with several servers each adds itself — here the last one started wins)."""
        from pocketkube.apiserver.registry.store import WriteOptions

        ip, port = self.config.advertise_address, self.port
        endpoints = {"apiVersion": "v1", "kind": "Endpoints",
                     "metadata": {"name": "kubernetes", "namespace": "default",
                                  "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                     "subsets": [{"addresses": [{"ip": ip}],
                                  "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}
        eps = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
               "metadata": {"name": "kubernetes", "namespace": "default",
                            "labels": {"kubernetes.io/service-name": "kubernetes"}},
               "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
               "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}
        for group, plural, obj in (("", "endpoints", endpoints), ("discovery.k8s.io", "endpointslices", eps)):
            info = self.table.get(group, "v1", plural)
            assert info is not None
            store = self.store_for(info)
            opts = WriteOptions(field_manager="kube-apiserver")
            with contextlib.suppress(errors.StatusError):
                if self.cache.get(info.key("default", "kubernetes")) is None:
                    await store.create("default", obj, opts)
                else:
                    await store.update("default", "kubernetes", obj, opts)

    async def _compactor(self) -> None:
        """Compact the store every interval to the revision seen one interval earlier, like kube."""
        previous = 0
        while True:
            await asyncio.sleep(self.config.compaction_interval)
            try:
                current = await self.storage.current_revision()
                if previous and previous > await self.storage.compacted_revision():
                    await self.storage.compact(previous)
                    self.cache.compacted(previous)
                previous = current
            except Exception:
                log.exception("compaction failed")

    # ---- HTTP ------------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        from pocketkube.apiserver.routes import setup_routes

        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._middleware])
        setup_routes(app, self)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            request[USER_KEY] = self.authn.require(request)
            response: web.StreamResponse = await handler(request)
            return response
        except errors.StatusError as e:
            return _status_response(e)
        except web.HTTPRequestEntityTooLarge:
            return _status_response(errors.RequestEntityTooLarge("Request entity too large: limit is 3145728"))
        except web.HTTPException as e:
            if e.status >= 400:
                return _status_response(_http_error(e))
            raise
        except ConnectionResetError:
            if request.transport is None or request.transport.is_closing():
                # The client hung up (mid-body, mid-watch): nobody to answer. Returning lets aiohttp
                # drop the connection quietly; raising would log a traceback for a client's choice.
                return web.Response(status=400)
            raise
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug: answer 500 with a Status and log it, never crash
            log.exception("internal error serving %s %s", request.method, request.path)
            return _status_response(errors.InternalError(f"Internal error occurred: {type(e).__name__}: {e}"))

    def version_info(self) -> dict[str, str]:
        import platform

        return {"major": "1", "minor": "32", "gitVersion": KUBE_GIT_VERSION, "gitCommit": "pocketkube",
                "gitTreeState": "clean", "buildDate": "2026-11-25T00:00:00Z",
                "goVersion": f"python{platform.python_version()}", "compiler": "cpython",
                "platform": f"linux/{'amd64' if platform.machine() in ('x86_64', 'AMD64') else platform.machine()}"}


def _http_error(e: web.HTTPException) -> errors.StatusError:
    mapping: dict[int, type[errors.StatusError]] = {
        400: errors.BadRequest, 404: errors.NotFound, 405: errors.MethodNotAllowed, 413: errors.RequestEntityTooLarge,
        415: errors.UnsupportedMediaType}
    cls = mapping.get(e.status, errors.BadRequest)
    return cls(e.text or e.reason)


def _status_response(e: errors.StatusError) -> web.Response:
    headers = {"Retry-After": str(e.retry_after)} if e.retry_after is not None else None
    return web.Response(body=orjson.dumps(e.to_status()), status=e.code, content_type="application/json",
                        headers=headers)
