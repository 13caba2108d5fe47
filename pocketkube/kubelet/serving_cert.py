"""The kubelet streaming server's self-signed serving certificate, made once by a child process.

The kubelet keeps a self-signed serving certificate under /var/lib/kubelet/pki when it has no
other; so does this one, under `<data dir>/tls`. Importing `cryptography` to make it cost the agent
~10 MB of RSS for the rest of its life (an idle agent's budget is 60 MB) for a few milliseconds of
work at its first start, so the certificate is made by `python -m pocketkube.kubelet.serving_cert`
and the agent only loads the files, with the standard library's `ssl`.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import sys
import time


def self_signed(node_name: str, ip: str) -> tuple[bytes, bytes]:
    """(certificate PEM, PKCS#8 key PEM): EC P-256, CN `<node>@<unix time>`, SANs node name and IP."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{node_name}@{int(time.time())}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(node_name),
                                                        x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_pair(crt: str, key: str, node_name: str, ip: str) -> None:
    cert_pem, key_pem = self_signed(node_name, ip)
    for path, data in ((key, key_pem), (crt, cert_pem)):
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)


async def ensure(crt: str, key: str, node_name: str, ip: str, *, timeout: float = 60.0) -> None:
    """Make the pair unless both files exist (a restarted agent keeps its certificate)."""
    if os.path.exists(crt) and os.path.exists(key):
        return
    os.makedirs(os.path.dirname(crt) or ".", mode=0o700, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", __name__, node_name, ip, crt, key, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"making the kubelet's serving certificate failed: {err.decode(errors='replace')[-2000:]}")


if __name__ == "__main__":  # python -m pocketkube.kubelet.serving_cert NODE IP CRT KEY
    node, address, crt_path, key_path = sys.argv[1:5]
    write_pair(crt_path, key_path, node, address)
