"""Write kubeconfig files: the admin one (client certificate) and token-based ones for components."""

from __future__ import annotations

import base64
import os

import yaml

from pocketkube.apiserver.certs import ClusterPKI


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def render(server: str, ca_pem: bytes, *, user: dict[str, str], name: str = "pocketkube") -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}],
        "current-context": name,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_admin_kubeconfig(data_dir: str, pki: ClusterPKI, server: str) -> str:
    path = os.path.join(data_dir, "kubeconfig.yaml")
    text = render(server, pki.ca.cert_pem, user={
        "client-certificate-data": _b64(pki.admin.cert_pem),
        "client-key-data": _b64(pki.admin.key_pem),
    })
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def token_kubeconfig(server: str, ca_pem: bytes, token: str) -> str:
    return render(server, ca_pem, user={"token": token})
