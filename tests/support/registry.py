"""A real local registry for pull tests (Debian's `docker-registry`, distribution 2.8), and an
aiohttp stub that puts basic or bearer-token auth in front of it.

`local_registry` serves 127.0.0.1:<free port> from a tmp storage dir with the configuration of
reference/platform.md §5, waits for `/v2/` to answer 200 and kills the process by pid at teardown.
`LocalRegistry.push` copies an archive in with skopeo. `AuthProxy` challenges every `/v2/` request
(`WWW-Authenticate: Bearer realm=…/token,service=…` or `Basic`), checks the credentials at its token
endpoint and forwards authorized requests to the real registry.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiohttp
import pytest
from aiohttp import web

CONFIG = """version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{port}
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: false
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LocalRegistry:
    host: str  # "127.0.0.1:PORT"
    data_dir: str
    log_path: str
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def push(self, archive: str | os.PathLike[str], repo: str, *, fmt: Literal["oci", "docker"] = "oci",
             all_platforms: bool = False) -> None:
        """Copy an archive to `<host>/<repo>` (e.g. repo="library/busybox:1")."""
        source = f"{'oci-archive' if fmt == 'oci' else 'docker-archive'}:{os.fspath(archive)}"
        cmd = ["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false"]
        if all_platforms:
            cmd.append("--all")
        result = subprocess.run([*cmd, source, f"docker://{self.host}/{repo}"], capture_output=True, text=True,
                                timeout=120, env={**os.environ, "HOME": self.data_dir}, check=False)
        if result.returncode != 0:
            raise AssertionError(f"skopeo copy failed: {result.stderr}")

    def log(self) -> str:
        return Path(self.log_path).read_text(errors="replace")


def start_registry(base_dir: str, *, timeout: float = 15.0) -> LocalRegistry:
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed")
    port = _free_port()
    data = os.path.join(base_dir, "data")
    os.makedirs(data, exist_ok=True)
    config = os.path.join(base_dir, "config.yml")
    Path(config).write_text(CONFIG.format(data=data, port=port))
    log_path = os.path.join(base_dir, "registry.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(["docker-registry", "serve", config], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    registry = LocalRegistry(f"127.0.0.1:{port}", base_dir, log_path, proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {proc.returncode}:\n{registry.log()}")
        try:
            with urllib.request.urlopen(f"{registry.url}/v2/", timeout=1) as r:
                if r.status == 200:
                    return registry
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.01)
    stop_registry(registry)
    raise RuntimeError(f"docker-registry did not answer /v2/:\n{registry.log()}")


def stop_registry(registry: LocalRegistry) -> None:
    if registry.proc.poll() is None:
        os.kill(registry.proc.pid, signal.SIGTERM)
        try:
            registry.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(registry.proc.pid, signal.SIGKILL)
            registry.proc.wait(5)


@pytest.fixture
def local_registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    """A real registry on 127.0.0.1:<free port>, storage in the test's tmp dir."""
    registry = start_registry(str(tmp_path / f"registry-{uuid.uuid4().hex[:8]}"))
    try:
        yield registry
    finally:
        stop_registry(registry)


_UNAUTHORIZED = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}'


class AuthProxy:
    """A registry front door demanding credentials, by bearer token (default) or basic auth."""

    def __init__(self, upstream: str, *, username: str, password: str,
                 scheme: Literal["bearer", "basic"] = "bearer") -> None:
        self.upstream = upstream.rstrip("/")
        self.username, self.password, self.scheme = username, password, scheme
        self.token = uuid.uuid4().hex
        self.token_requests: list[dict[str, str]] = []
        self.host = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def _basic_ok(self, header: str) -> bool:
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return header == f"Basic {expected}"

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests.append(dict(request.query))
        if not self._basic_ok(request.headers.get("Authorization", "")):
            return web.Response(status=401, body=_UNAUTHORIZED, content_type="application/json")
        return web.json_response({"token": self.token, "access_token": self.token, "expires_in": 300})

    async def _v2(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        ok = auth == f"Bearer {self.token}" if self.scheme == "bearer" else self._basic_ok(auth)
        if not ok:
            repo = request.match_info["tail"].split("/manifests/")[0].split("/blobs/")[0]
            challenge = (f'Bearer realm="http://{self.host}/token",service="stub-registry",'
                         f'scope="repository:{repo}:pull"' if self.scheme == "bearer"
                         else 'Basic realm="stub-registry"')
            return web.Response(status=401, body=_UNAUTHORIZED, content_type="application/json",
                                headers={"WWW-Authenticate": challenge})
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() == "accept"}
        async with self._session.get(f"{self.upstream}/v2/{request.match_info['tail']}", headers=headers) as up:
            body = await up.read()
            keep = {k: v for k, v in up.headers.items() if k.lower() in ("content-type", "docker-content-digest")}
            return web.Response(status=up.status, body=body, headers=keep)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/token", self._token)
        app.router.add_get("/v2/{tail:.*}", self._v2)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.host = f"127.0.0.1:{port}"
        return self.host

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
