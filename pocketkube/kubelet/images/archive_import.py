"""Import image archives: `docker save` tarballs and OCI image layouts in a tar (`oci-archive`).

docker save: `manifest.json` lists each image's config file, RepoTags and layer tars; a Docker
schema 2 manifest is synthesized for it. OCI: `index.json` names images through the
`io.containerd.image.name` or `org.opencontainers.image.ref.name` annotations (a bare tag is
joined to `base_name`); indexes are resolved to this node's platform. Archives written by newer
docker carry both; the OCI index wins and `manifest.json` RepoTags fill in missing names.
Blobs are verified against their digests and layers against the config's diff_ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import posixpath
import tarfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from pocketkube.kubelet.images.errors import ArchiveError, ImageError
from pocketkube.kubelet.images.layer_unpack import detect_compression
from pocketkube.kubelet.images.manifest import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_LAYER,
    OCI_LAYER_ZSTD,
    Index,
    Manifest,
    check_digest,
    parse_image_config,
    parse_manifest_document,
    select_platform,
    sha256_digest,
)
from pocketkube.kubelet.images.reference import ImageReference, parse_reference

if TYPE_CHECKING:
    from pocketkube.kubelet.images.store import ImageStore

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
_LAYER_TYPES = {"gzip": DOCKER_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD,
                "none": "application/vnd.docker.image.rootfs.diff.tar"}


@dataclass
class _Candidate:
    """One image found in the archive, before its layers are unpacked."""

    refs: list[ImageReference]
    manifest: bytes | None  # None: docker save, synthesized once layer digests are known
    config: bytes
    layer_paths: list[str]  # archive member names, bottom first


class _Archive:
    """Blocking reads of one tar archive (always called from one worker thread at a time)."""

    def __init__(self, path: str) -> None:
        try:
            self.tar = tarfile.open(path, "r:*")
        except (OSError, tarfile.TarError) as e:
            raise ArchiveError(f"cannot open image archive {path}: {e}") from e
        self.names = {posixpath.normpath(m.name.lstrip("/")): m for m in self.tar.getmembers()}

    def has(self, name: str) -> bool:
        return name in self.names

    def read(self, name: str, *, limit: int = 64 << 20) -> bytes:
        src = self._open(name)
        data: bytes = src.read(limit + 1)
        if len(data) > limit:
            raise ArchiveError(f"{name} in archive is too large")
        return data

    def read_blob(self, digest: str) -> bytes:
        data = self.read(f"blobs/sha256/{check_digest(digest, 'archive').removeprefix('sha256:')}")
        if sha256_digest(data) != digest:
            raise ArchiveError(f"blob {digest} in archive does not match its digest")
        return data

    def copy_out(self, name: str, dest: str) -> tuple[str, int, str]:
        """Copy a member to `dest`; returns (sha256 digest, size, compression)."""
        src = self._open(name)
        sha = hashlib.sha256()
        size = 0
        head = b""
        with open(dest, "xb") as out:
            while chunk := src.read(1 << 20):
                if not head:
                    head = chunk[:4]
                sha.update(chunk)
                size += len(chunk)
                out.write(chunk)
        return "sha256:" + sha.hexdigest(), size, detect_compression(head)

    def _open(self, name: str) -> Any:
        member = self.names.get(posixpath.normpath(name.lstrip("/")))
        if member is None:
            raise ArchiveError(f"{name} is missing from the archive")
        try:
            src = self.tar.extractfile(member)
        except (KeyError, tarfile.TarError) as e:
            raise ArchiveError(f"cannot read {name} from the archive: {e}") from e
        if src is None:
            raise ArchiveError(f"{name} in the archive is not a file")
        return src

    def close(self) -> None:
        self.tar.close()


def _load_json(archive: _Archive, name: str) -> Any:
    try:
        return orjson.loads(archive.read(name))
    except orjson.JSONDecodeError as e:
        raise ArchiveError(f"{name} in archive is not valid JSON: {e}") from e


def _oci_names(annotations: dict[str, str], base_name: str | None) -> list[ImageReference]:
    name = annotations.get(CONTAINERD_NAME) or annotations.get(REF_NAME)
    if not name:
        return []
    if base_name and not any(c in name for c in "/:@"):
        name = f"{base_name}:{name}"
    return [parse_reference(name)]


def _oci_candidates(archive: _Archive, platform: tuple[str, str], base_name: str | None) -> list[_Candidate]:
    index = parse_manifest_document(archive.read("index.json"))
    if not isinstance(index, Index):
        raise ArchiveError("index.json of the OCI archive is not an image index")
    found: dict[bytes, _Candidate] = {}
    for desc in index.manifests:
        body = archive.read_blob(desc.digest)
        doc = parse_manifest_document(body, desc.media_type)
        if isinstance(doc, Index):
            chosen = select_platform(doc, *platform)
            body = archive.read_blob(chosen.digest)
            doc = parse_manifest_document(body, chosen.media_type)
        if not isinstance(doc, Manifest):
            raise ArchiveError("nested indexes are not supported")
        candidate = found.setdefault(body, _Candidate([], body, archive.read_blob(doc.config.digest),
                                                       [f"blobs/sha256/{d.digest[7:]}" for d in doc.layers]))
        candidate.refs.extend(_oci_names(desc.annotations, base_name))
    return list(found.values())


def _docker_candidates(archive: _Archive) -> list[_Candidate]:
    entries = _load_json(archive, "manifest.json")
    if not isinstance(entries, list):
        raise ArchiveError("manifest.json of the docker archive is not a list")
    out = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise ArchiveError("manifest.json entry without Config")
        refs = [parse_reference(t) for t in entry.get("RepoTags") or []]
        out.append(_Candidate(refs, None, archive.read(entry["Config"]), [str(p) for p in entry.get("Layers") or []]))
    return out


def _synthesize_manifest(config: bytes, layers: list[tuple[str, int, str]]) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
           "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": sha256_digest(config)},
           "layers": [{"mediaType": _LAYER_TYPES.get(kind, OCI_LAYER), "size": size, "digest": digest}
                      for digest, size, kind in layers]}
    return orjson.dumps(doc)


async def import_archive(store: ImageStore, path: str, *, base_name: str | None = None) -> list[str]:
    """Import every image of the archive at `path`; returns normalized refs (image ID if untagged)."""
    archive = await asyncio.to_thread(_Archive, path)
    imported: list[str] = []
    try:
        if archive.has("oci-layout") and archive.has("index.json"):
            candidates = await asyncio.to_thread(_oci_candidates, archive, store.platform, base_name)
            if archive.has("manifest.json") and not any(c.refs for c in candidates):
                tags = {sha256_digest(c.config): c.refs for c in await asyncio.to_thread(_docker_candidates, archive)}
                for c in candidates:
                    c.refs.extend(tags.get(sha256_digest(c.config), []))
        elif archive.has("manifest.json"):
            candidates = await asyncio.to_thread(_docker_candidates, archive)
        else:
            raise ArchiveError(f"{path} is neither a docker save archive nor an OCI archive")
        for candidate in candidates:
            image = await _import_one(store, archive, candidate)
            imported.extend([str(r) for r in candidate.refs] or [image])
    except ImageError:
        raise
    except (OSError, tarfile.TarError, EOFError) as e:
        raise ArchiveError(f"cannot import {path}: {e}") from e
    finally:
        archive.close()
    return list(dict.fromkeys(imported))


async def _import_one(store: ImageStore, archive: _Archive, candidate: _Candidate) -> str:
    config = parse_image_config(candidate.config)
    if len(config.diff_ids) != len(candidate.layer_paths):
        raise ArchiveError(f"image config lists {len(config.diff_ids)} layers, archive {len(candidate.layer_paths)}")
    layers: list[tuple[str, int, str]] = []
    with store.pinned(config.diff_ids):
        for name, diff_id in zip(candidate.layer_paths, config.diff_ids, strict=True):
            blob = store.ingest_path()
            try:
                digest, size, kind = await asyncio.to_thread(archive.copy_out, name, blob)
                if candidate.manifest is not None and name.startswith("blobs/sha256/") and digest[7:] != name[13:]:
                    raise ArchiveError(f"layer {name} in archive does not match its digest")
                layers.append((digest, size, kind))

                async def take(path: str, blob: str = blob) -> None:
                    os.replace(blob, path)

                await store.ensure_layer(diff_id, take)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(blob)
        manifest = candidate.manifest or _synthesize_manifest(candidate.config, layers)
        doc = parse_manifest_document(manifest)
        media_type = doc.media_type
        image = await store.commit_image(refs=candidate.refs, manifest=manifest, manifest_media_type=media_type,
                                         config=candidate.config, layers=config.diff_ids,
                                         size=len(candidate.config) + sum(s for _, s, _ in layers))
    return image.id



