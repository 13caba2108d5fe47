"""Build small real images for tests, in pure Python (tarfile + json + hashlib), no skopeo.

`build_busybox_image` writes an OCI archive (oci-layout + index.json + gzip layers) or a
`docker save` tarball (manifest.json + repositories + uncompressed layer.tar) whose base layer is
the static /usr/bin/busybox with `/bin/<applet>` symlinks. Extra layers can delete files: a path
mapped to None becomes an OCI whiteout `.wh.NAME`, and `DIR/.wh..wh..opq` makes DIR opaque.
Several platforms give a multi-arch image index (each platform's base layer has `/etc/arch`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import posixpath
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

BUSYBOX = "/usr/bin/busybox"
MTIME = 1_700_000_000
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)

FileContent = bytes | str | None
"""A regular file's content; None in an extra layer means "delete this path" (a whiteout)."""


@dataclass
class BuiltImage:
    """What was written, so tests can compare with what the store reports."""

    path: str
    ref: str
    config_digest: str  # the image ID (of the first platform)
    manifest_digest: str  # of the first platform
    diff_ids: list[str]  # of the first platform
    index_digest: str | None = None  # multi-platform only
    platform_config_digests: dict[str, str] = field(default_factory=dict)  # "linux/amd64" → config digest
    size: int = 0  # of the archive file


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@cache
def busybox_applets() -> tuple[str, ...]:
    out = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout
    return tuple(sorted({a for a in out.split() if a and "/" not in a and a != "busybox"}))


def _info(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _add_parents(entries: list[tuple[tarfile.TarInfo, bytes | None]], seen: set[str], path: str) -> None:
    parent = posixpath.dirname(path)
    if parent and parent not in seen:
        _add_parents(entries, seen, parent)
        seen.add(parent)
        entries.append((_info(parent + "/", tarfile.DIRTYPE, 0o755), None))


def _file_entries(files: Mapping[str, FileContent], entries: list[tuple[tarfile.TarInfo, bytes | None]],
                  seen: set[str]) -> None:
    for name in sorted(files):
        content = files[name]
        path = name.strip("/")
        _add_parents(entries, seen, path)
        if content is None:
            path = posixpath.join(posixpath.dirname(path), ".wh." + posixpath.basename(path))
            content = b""
        data = content.encode() if isinstance(content, str) else content
        entries.append((_info(path, mode=0o755 if path.startswith("bin/") else 0o644, size=len(data)), data))


def base_layer(extra_files: Mapping[str, FileContent] | None = None, *, arch: str | None = None) -> bytes:
    with open(BUSYBOX, "rb") as f:
        binary = f.read()
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for d, mode in (("bin", 0o755), ("etc", 0o755), ("root", 0o700), ("tmp", 0o1777), ("var", 0o755)):
        entries.append((_info(d + "/", tarfile.DIRTYPE, mode), None))
    entries.append((_info("bin/busybox", mode=0o755, size=len(binary)), binary))
    for applet in busybox_applets():
        link = _info(f"bin/{applet}", tarfile.SYMTYPE, 0o777)
        link.linkname = "busybox"
        entries.append((link, None))
    files: dict[str, FileContent] = {
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        "etc/group": "root:x:0:\nnobody:x:65534:\n",
    }
    if arch:
        files["etc/arch"] = arch + "\n"
    files.update(extra_files or {})
    _file_entries(files, entries, {"bin", "etc", "root", "tmp", "var"})
    return _tar(entries)


def layer_from_files(files: Mapping[str, FileContent]) -> bytes:
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = []
    _file_entries(files, entries, set())
    return _tar(entries)


def _config(arch: str, diff_ids: list[str], *, cmd: Sequence[str] | None, env: Sequence[str] | None,
            entrypoint: Sequence[str] | None, working_dir: str | None, user: str | None,
            exposed_ports: Sequence[str] | None) -> bytes:
    conf: dict[str, Any] = {"Env": list(env) if env is not None else list(DEFAULT_ENV),
                            "Cmd": list(cmd) if cmd is not None else ["sh"]}
    if entrypoint is not None:
        conf["Entrypoint"] = list(entrypoint)
    if working_dir:
        conf["WorkingDir"] = working_dir
    if user:
        conf["User"] = user
    if exposed_ports:
        conf["ExposedPorts"] = {p: {} for p in exposed_ports}
    doc = {"architecture": arch, "os": "linux", "created": "2023-11-14T22:13:20Z", "config": conf,
           "rootfs": {"type": "layers", "diff_ids": diff_ids},
           "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "tests/support/images.py"}
                       for _ in diff_ids]}
    return json.dumps(doc, sort_keys=True).encode()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, size=len(data)), io.BytesIO(data))


def build_busybox_image(path: str | os.PathLike[str], *, ref: str,
                        extra_files: Mapping[str, FileContent] | None = None,
                        cmd: Sequence[str] | None = None, env: Sequence[str] | None = None,
                        fmt: Literal["oci", "docker"] = "oci",
                        extra_layers: Sequence[Mapping[str, FileContent]] = (),
                        platforms: Sequence[str] = ("linux/amd64",),
                        entrypoint: Sequence[str] | None = None, working_dir: str | None = None,
                        user: str | None = None, exposed_ports: Sequence[str] | None = None) -> BuiltImage:
    """Write an image archive at `path` and describe it. `ref` is recorded as the image's name."""
    path = os.fspath(path)
    multi = len(platforms) > 1
    if multi and fmt != "oci":
        raise ValueError("multi-platform images need fmt='oci'")
    blobs: dict[str, bytes] = {}
    manifests: list[tuple[str, str, bytes, str, list[str], list[bytes]]] = []  # platform, digest, body, config
    for plat in platforms:
        arch = plat.split("/")[1]
        raw_layers = [base_layer(extra_files, arch=arch if multi else None),
                      *(layer_from_files(layer) for layer in extra_layers)]
        diff_ids = [_digest(layer) for layer in raw_layers]
        config = _config(arch, diff_ids, cmd=cmd, env=env, entrypoint=entrypoint, working_dir=working_dir,
                         user=user, exposed_ports=exposed_ports)
        gz = [gzip.compress(layer, mtime=0) for layer in raw_layers]
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": _digest(g), "size": len(g)} for g in gz],
        }, sort_keys=True).encode()
        for blob in (config, manifest, *gz):
            blobs[_digest(blob)] = blob
        manifests.append((plat, _digest(manifest), manifest, _digest(config), diff_ids, raw_layers))
    first = manifests[0]
    built = BuiltImage(path, ref, first[3], first[1], first[4],
                       platform_config_digests={m[0]: m[3] for m in manifests})
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        if fmt == "docker":
            _, _, _, config_digest, diff_ids, raw_layers = first
            layer_names = [f"{d[7:]}/layer.tar" for d in diff_ids]
            for name, layer in zip(layer_names, raw_layers, strict=True):
                tar.addfile(_info(name.split("/")[0] + "/", tarfile.DIRTYPE, 0o755))
                _add_bytes(tar, name, layer)
            _add_bytes(tar, f"{config_digest[7:]}.json", blobs[config_digest])
            repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
            _add_bytes(tar, "manifest.json", json.dumps([{
                "Config": f"{config_digest[7:]}.json", "RepoTags": [f"{repo}:{tag}"], "Layers": layer_names,
            }]).encode())
            _add_bytes(tar, "repositories", json.dumps({repo: {tag: diff_ids[-1][7:]}}).encode())
        else:
            _write_oci(tar, built, manifests, blobs, ref)
    built.size = os.path.getsize(path)
    return built


def _write_oci(tar: tarfile.TarFile, built: BuiltImage,
               manifests: list[tuple[str, str, bytes, str, list[str], list[bytes]]],
               blobs: dict[str, bytes], ref: str) -> None:
    first = manifests[0]
    top: dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": first[1], "size": len(first[2])}
    if len(manifests) > 1:
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": m[1], "size": len(m[2]),
             "platform": {"os": m[0].split("/")[0], "architecture": m[0].split("/")[1]}} for m in manifests
        ]}, sort_keys=True).encode()
        blobs[_digest(index)] = index
        built.index_digest = _digest(index)
        top = {"mediaType": OCI_INDEX, "digest": _digest(index), "size": len(index)}
    top["annotations"] = {"org.opencontainers.image.ref.name": ref}
    _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    _add_bytes(tar, "index.json", json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                              "manifests": [top]}).encode())
    for d in ("blobs/", "blobs/sha256/"):
        tar.addfile(_info(d, tarfile.DIRTYPE, 0o755))
    for digest, blob in sorted(blobs.items()):
        _add_bytes(tar, f"blobs/sha256/{digest[7:]}", blob)
