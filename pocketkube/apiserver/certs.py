"""The cluster's PKI: a CA, the API server's serving certificate and client certificates.

The API server also holds a client certificate (CN `kube-apiserver-kubelet-client`) for the
kubelets' streaming servers, which accept no one else. Generated at first start into `<data-dir>/tls/` (kept across restarts, so kubeconfigs stay
valid). Keys are ECDSA P-256: generated in about a millisecond and accepted by Go's TLS stack,
kubectl and the Python client. Client certificates carry the user in CN and groups in O, as
kube-apiserver's x509 authenticator reads them.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=3650)
KUBELET_CLIENT_CN = "kube-apiserver-kubelet-client"


@dataclass(frozen=True)
class KeyPair:
    cert_pem: bytes
    key_pem: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str, orgs: list[str] | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs or []]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def make_ca(cn: str = "pocketkube-ca") -> KeyPair:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _issue(ca: KeyPair, subject: x509.Name, *, server: bool, dns: list[str], ips: list[str]) -> KeyPair:
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH] if server else [ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if server:
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def make_serving_cert(ca: KeyPair, *, dns: list[str], ips: list[str]) -> KeyPair:
    return _issue(ca, _name("kube-apiserver"), server=True, dns=dns, ips=ips)


def make_client_cert(ca: KeyPair, user: str, groups: list[str]) -> KeyPair:
    return _issue(ca, _name(user, groups), server=False, dns=[], ips=[])


def cert_sans(pem: bytes) -> tuple[set[str], set[str]]:
    cert = x509.load_pem_x509_certificate(pem)
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return set(ext.get_values_for_type(x509.DNSName)), {str(i) for i in ext.get_values_for_type(x509.IPAddress)}


@dataclass(frozen=True)
class ClusterPKI:
    dir: str
    ca: KeyPair
    serving: KeyPair
    admin: KeyPair
    kubelet_client: KeyPair

    @property
    def kubelet_client_cert_path(self) -> str:
        return os.path.join(self.dir, "kubelet-client.crt")

    @property
    def kubelet_client_key_path(self) -> str:
        return os.path.join(self.dir, "kubelet-client.key")

    @property
    def ca_path(self) -> str:
        return os.path.join(self.dir, "ca.crt")

    @property
    def serving_cert_path(self) -> str:
        return os.path.join(self.dir, "serving.crt")

    @property
    def serving_key_path(self) -> str:
        return os.path.join(self.dir, "serving.key")


def _write(path: str, data: bytes, mode: int = 0o600) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _load(path_base: str) -> KeyPair | None:
    try:
        with open(path_base + ".crt", "rb") as c, open(path_base + ".key", "rb") as k:
            return KeyPair(c.read(), k.read())
    except FileNotFoundError:
        return None


def default_sans(extra_ips: list[str] | None = None, extra_dns: list[str] | None = None) -> tuple[list[str], list[str]]:
    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           "kubernetes.default.svc.cluster.local", socket.gethostname()]
    ips = ["127.0.0.1", "::1", "10.43.0.1"]
    for ip in extra_ips or []:
        if ip not in ips:
            ips.append(ip)
    for d in extra_dns or []:
        if d not in dns:
            dns.append(d)
    return dns, ips


def ensure_pki(tls_dir: str, *, dns: list[str], ips: list[str]) -> ClusterPKI:
    """Load the PKI from `tls_dir`, creating what is missing; reissue the serving cert on new SANs."""
    os.makedirs(tls_dir, mode=0o700, exist_ok=True)
    ca = _load(os.path.join(tls_dir, "ca"))
    if ca is None:
        ca = make_ca()
        _write(os.path.join(tls_dir, "ca.key"), ca.key_pem)
        _write(os.path.join(tls_dir, "ca.crt"), ca.cert_pem, 0o644)
    serving = _load(os.path.join(tls_dir, "serving"))
    if serving is not None:
        have_dns, have_ips = cert_sans(serving.cert_pem)
        if not (set(dns) <= have_dns and set(ips) <= have_ips):
            serving = None
    if serving is None:
        serving = make_serving_cert(ca, dns=dns, ips=ips)
        _write(os.path.join(tls_dir, "serving.key"), serving.key_pem)
        _write(os.path.join(tls_dir, "serving.crt"), serving.cert_pem, 0o644)
    admin = _load(os.path.join(tls_dir, "admin"))
    if admin is None:
        admin = make_client_cert(ca, "admin", ["system:masters"])
        _write(os.path.join(tls_dir, "admin.key"), admin.key_pem)
        _write(os.path.join(tls_dir, "admin.crt"), admin.cert_pem)
    kubelet_client = _load(os.path.join(tls_dir, "kubelet-client"))
    if kubelet_client is None:
        # What the API server shows kubelets when it proxies logs/exec/port-forward to them.
        kubelet_client = make_client_cert(ca, KUBELET_CLIENT_CN, ["system:masters"])
        _write(os.path.join(tls_dir, "kubelet-client.key"), kubelet_client.key_pem)
        _write(os.path.join(tls_dir, "kubelet-client.crt"), kubelet_client.cert_pem)
    return ClusterPKI(tls_dir, ca, serving, admin, kubelet_client)
