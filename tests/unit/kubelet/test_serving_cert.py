"""The kubelet's serving certificate: made once, by a child process, so the agent never loads `cryptography`."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from typing import Any

from cryptography import x509

from pocketkube.kubelet import serving_cert
from tests.conftest import REPO


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


async def test_made_once_with_the_node_names(tmp_path: Any) -> None:
    crt, key = str(tmp_path / "tls" / "kubelet.crt"), str(tmp_path / "tls" / "kubelet.key")
    await serving_cert.ensure(crt, key, "node-a", "127.0.0.7")
    cert = x509.load_pem_x509_certificate(read(crt))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node-a"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.7")]
    assert os.stat(key).st_mode & 0o777 == 0o600 and b"PRIVATE KEY" in read(key)
    before = os.stat(crt).st_mtime_ns
    await serving_cert.ensure(crt, key, "node-a", "127.0.0.7")  # a restarted agent keeps it
    assert os.stat(crt).st_mtime_ns == before


def test_the_agent_does_not_import_cryptography() -> None:
    probe = ("import sys, pocketkube.agent.run, pocketkube.agent.node_runtime, pocketkube.kubelet.kubelet, "
             "pocketkube.kubelet.server; print(sorted(m for m in sys.modules if m.startswith('cryptography')))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": REPO}, timeout=60).stdout
    assert out.strip() == "[]"
