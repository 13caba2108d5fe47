"""The kubelet streaming server lets in only the API server's kubelet-client certificate."""

from __future__ import annotations

import os
import ssl
from typing import Any

import aiohttp
import pytest

from pocketkube.apiserver.certs import KUBELET_CLIENT_CN, KeyPair, make_ca, make_client_cert
from pocketkube.kubelet.records import RecordStore
from pocketkube.kubelet.server import KubeletServer, KubeletServerConfig


def _client_ssl(tmp: str, pair: KeyPair | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if pair is not None:
        crt, key = os.path.join(tmp, "c.crt"), os.path.join(tmp, "c.key")
        with open(crt, "wb") as f:
            f.write(pair.cert_pem)
        with open(key, "wb") as f:
            f.write(pair.key_pem)
        ctx.load_cert_chain(crt, key)
    return ctx


async def test_only_the_api_server_may_call(tmp_path: Any) -> None:
    ca = make_ca()
    pods = {"default/p": {"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
                          "spec": {"containers": [{"name": "c"}]}}}

    async def no_exec(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("not called")

    server = KubeletServer(
        KubeletServerConfig(node_ip="127.0.0.1", port=0, data_dir=str(tmp_path), ca_pem=ca.cert_pem),
        pods=pods.get, records=RecordStore(str(tmp_path / "records")), exec_fn=no_exec, exited=lambda cid: True,
        exit_code=lambda cid: 0)
    await server.start()
    base = f"https://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):  # no client certificate: the handshake fails
                async with session.get(f"{base}/healthz", ssl=_client_ssl(str(tmp_path), None)) as r:
                    await r.read()
            admin = make_client_cert(ca, "admin", ["system:masters"])
            async with session.get(f"{base}/healthz", ssl=_client_ssl(str(tmp_path), admin)) as r:
                assert r.status == 403
            apiserver = make_client_cert(ca, KUBELET_CLIENT_CN, ["system:masters"])
            ctx = _client_ssl(str(tmp_path), apiserver)
            async with session.get(f"{base}/healthz", ssl=ctx) as r:
                assert r.status == 200
            async with session.get(f"{base}/containerLogs/default/missing/c", ssl=ctx) as r:
                assert r.status == 404
            async with session.get(f"{base}/containerLogs/default/p/c", ssl=ctx) as r:
                body = await r.json()
                assert r.status == 400
                assert body["message"] == 'container "c" in pod "p" is waiting to start: ContainerCreating'
            async with session.get(f"{base}/exec/default/p/nosuch?command=ls", ssl=ctx) as r:
                assert r.status == 404
    finally:
        await server.stop()
