"""The node's content-addressed image store: blobs, unpacked layers, references, rootfs mounts.

Layout under the root dir (default `<data-dir>/images`):

    blobs/sha256/<hex>   manifests, indexes and configs, by digest
    layers/<hex>         one unpacked layer per diff_id (an overlayfs lower dir), shared by images
    ingest/              downloads in progress
    index.json           image records (by image ID = config digest) and references → image ID

Pulls (puller.py) and archive imports (archive_import.py) feed it through `ensure_layer`,
`write_blob` and `commit_image`. Layers are unpacked once; compressed layer blobs are dropped
after unpacking. Garbage collection keeps what an image record, a pull in progress (pins) or a
mounted overlay (read from mountinfo, so it survives restarts) still uses.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fcntl
import functools
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from pocketkube.kubelet.images import overlay_mount
from pocketkube.kubelet.images.archive_import import import_archive
from pocketkube.kubelet.images.credentials import Credentials, lookup_credentials
from pocketkube.kubelet.images.errors import ImageNeverPullError, ImageNotFoundError, MountError
from pocketkube.kubelet.images.layer_unpack import unpack_layer
from pocketkube.kubelet.images.manifest import ImageConfig, host_platform, parse_image_config, sha256_digest
from pocketkube.kubelet.images.puller import pull_image
from pocketkube.kubelet.images.reference import ImageReference, is_digest, is_image_id, parse_reference

PullPolicy = Literal["Always", "IfNotPresent", "Never"]


@dataclass(frozen=True)
class Image:
    """An image in the store, as the kubelet sees it."""

    id: str  # config digest, "sha256:…"
    references: tuple[str, ...]  # normalized: docker.io/library/busybox:1.36, name@sha256:…
    repo_digests: tuple[str, ...]  # repository@manifest-or-index digest
    manifest_digest: str
    config: ImageConfig
    layers: tuple[str, ...]  # diff_ids, bottom layer first
    size: int  # bytes as distributed (config + compressed layers)


@dataclass
class _Record:
    manifest: str
    manifest_media_type: str
    index: str | None
    layers: list[str]
    repo_digests: list[str]
    size: int
    created: float


@dataclass(frozen=True)
class GCResult:
    blobs_removed: int
    layers_removed: int


async def _in_thread_to_completion(fn: Callable[[], None]) -> None:
    """Run `fn` in a thread; a cancelled caller still waits for it, so no thread outlives a pull."""
    future = asyncio.get_running_loop().run_in_executor(None, fn)
    cancelled = False
    while True:
        try:
            await asyncio.shield(future)
            break
        except asyncio.CancelledError:
            cancelled = True
            if future.done():
                break
    if cancelled:
        future.exception()  # retrieved: the caller's cancellation wins over the thread's error
        raise asyncio.CancelledError
    future.result()


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class ImageStore:
    """Images of one node. Methods are coroutines where they touch the network or many files."""

    def __init__(self, root: str, *, insecure_registries: Sequence[str] = (),
                 platform: tuple[str, str] | None = None, max_concurrent_downloads: int = 3) -> None:
        self.root = os.path.abspath(root)
        self.blobs_dir = os.path.join(self.root, "blobs", "sha256")
        self.layers_dir = os.path.join(self.root, "layers")
        self.ingest_dir = os.path.join(self.root, "ingest")
        self._empty_dir = os.path.join(self.root, "empty")
        for d in (self.blobs_dir, self.layers_dir, self.ingest_dir, self._empty_dir):
            os.makedirs(d, exist_ok=True)
        self.insecure_registries = tuple(insecure_registries)
        self.platform = platform or host_platform()
        self.max_concurrent_downloads = max_concurrent_downloads
        self._index_path = os.path.join(self.root, "index.json")
        self._index_mtime = 0
        self._records: dict[str, _Record] = {}
        self._refs: dict[str, str] = {}
        self._configs: dict[str, ImageConfig] = {}
        self._lock = asyncio.Lock()
        self._layer_locks: dict[str, asyncio.Lock] = {}
        self._pins: Counter[str] = Counter()
        self._busy = 0
        self._inflight: dict[tuple[str, tuple[str, str] | None], asyncio.Future[Image]] = {}
        self._load()

    # ---- reading -------------------------------------------------------------------------------

    def list(self) -> list[Image]:
        self._refresh()
        return [self._image(image_id) for image_id in sorted(self._records, key=lambda i: self._records[i].created)]

    def get(self, ref: str) -> Image | None:
        """By reference (`busybox`, `docker.io/library/busybox:1.36`, `name@sha256:…`) or image ID."""
        self._refresh()
        image_id = self._resolve(ref)
        return self._image(image_id) if image_id else None

    def layer_dir(self, diff_id: str) -> str:
        return os.path.join(self.layers_dir, diff_id.removeprefix("sha256:"))

    def has_layer(self, diff_id: str) -> bool:
        return os.path.isdir(self.layer_dir(diff_id))

    # ---- pulling and importing -----------------------------------------------------------------

    async def pull(self, ref: str, *, credentials: Credentials | None = None) -> Image:
        """Pull `ref` from its registry (concurrent pulls of one reference share the work)."""
        parsed = parse_reference(ref)
        key = (str(parsed), lookup_credentials(credentials, parsed.domain))
        while (shared := self._inflight.get(key)) is not None:
            try:
                return await asyncio.shield(shared)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not shared.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The pull we joined was cancelled, we were not: take over.
        future: asyncio.Future[Image] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            image = await pull_image(self, parsed, ref, credentials)
        except BaseException as e:
            if isinstance(e, Exception):
                future.set_exception(e)
                future.exception()  # waiters re-raise it; nobody else needs to
            else:
                future.cancel()
            raise
        finally:
            del self._inflight[key]
        future.set_result(image)
        return image

    async def pull_if_needed(self, ref: str, policy: PullPolicy = "IfNotPresent",
                             credentials: Credentials | None = None) -> Image:
        """The kubelet's image policy: Always pulls, IfNotPresent pulls when missing, Never never does."""
        parse_reference(ref)  # InvalidReferenceError before anything else, like the kubelet
        if policy != "Always":
            present = self.get(ref)
            if present is not None:
                return present
            if policy == "Never":
                raise ImageNeverPullError(ref)
        return await self.pull(ref, credentials=credentials)

    async def import_archive(self, path: str, *, base_name: str | None = None) -> builtins.list[str]:
        """Import a `docker save` tarball or an OCI archive; returns the references imported."""
        return await import_archive(self, path, base_name=base_name)

    def ingest_path(self) -> str:
        return os.path.join(self.ingest_dir, uuid.uuid4().hex)

    def write_blob(self, data: bytes) -> str:
        digest = sha256_digest(data)
        path = self._blob_path(digest)
        if not os.path.exists(path):
            tmp = self.ingest_path()
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        return digest

    def read_blob(self, digest: str) -> bytes:
        with open(self._blob_path(digest), "rb") as f:
            return f.read()

    def read_blob_if_present(self, digest: str) -> bytes | None:
        """A stored blob, re-verified (a re-pull of a known image skips fetching its config)."""
        try:
            data = self.read_blob(digest)
        except FileNotFoundError:
            return None
        return data if sha256_digest(data) == digest else None

    @contextlib.contextmanager
    def pinned(self, diff_ids: Iterable[str]) -> Iterator[None]:
        """Keep these layers (and any ingest/tmp files) from GC while a pull or import runs."""
        ids = list(diff_ids)
        self._pins.update(ids)
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1
            self._pins.subtract(ids)
            self._pins += Counter()  # drop zero counts

    async def ensure_layer(self, diff_id: str, fetch: Callable[[str], Awaitable[None]]) -> None:
        """Unless layer `diff_id` is unpacked: `fetch(path)` writes its blob to `path`, then unpack.

        One fetch and one unpack per layer even when several pulls want it at once.
        """
        lock = self._layer_locks.setdefault(diff_id, asyncio.Lock())
        async with lock:
            if self.has_layer(diff_id):
                return
            path = self.ingest_path()
            try:
                await fetch(path)
                await _in_thread_to_completion(functools.partial(self._unpack, path, diff_id))
            finally:
                await asyncio.to_thread(_unlink, path)

    def _unpack(self, blob_path: str, diff_id: str) -> None:
        tmp = os.path.join(self.layers_dir, f".tmp-{uuid.uuid4().hex}")
        unpack_layer(blob_path, tmp, expected_diff_id=diff_id)
        os.rename(tmp, self.layer_dir(diff_id))

    async def commit_image(self, *, refs: Sequence[ImageReference], manifest: bytes, manifest_media_type: str,
                           config: bytes, layers: Sequence[str], size: int, index: bytes | None = None,
                           repo_digests: Sequence[str] = ()) -> Image:
        """Record an image whose layers are unpacked; `refs` move to it from any older image."""
        missing = [d for d in layers if not self.has_layer(d)]
        if missing:
            raise ImageNotFoundError(f"layers not unpacked: {', '.join(missing)}")
        image_id = self.write_blob(config)
        manifest_digest = self.write_blob(manifest)
        index_digest = self.write_blob(index) if index is not None else None
        async with self._shared():
            old = self._records.get(image_id)
            digests = list(dict.fromkeys([*(old.repo_digests if old else []), *repo_digests]))
            self._records[image_id] = _Record(manifest_digest, manifest_media_type, index_digest, list(layers),
                                              digests, size, old.created if old else time.time())
            untagged = False
            for ref in refs:
                previous = self._refs.get(str(ref))
                self._refs[str(ref)] = image_id
                if previous and previous != image_id and previous not in self._refs.values():
                    del self._records[previous]  # a retag leaves the old image unnamed: drop it
                    untagged = True
            self._save()
            if untagged:
                await self._gc_locked()
        return self._image(image_id)

    # ---- removing ------------------------------------------------------------------------------

    async def remove(self, ref: str) -> None:
        """Remove a reference (or, given an image ID or repo digest, the whole image), then GC."""
        image_id = self._resolve(ref)
        if image_id is None:
            raise ImageNotFoundError(f"image {ref!r} not found")
        async with self._shared():
            normalized = None if is_image_id(ref) else str(parse_reference(ref))
            if normalized is not None and self._refs.get(normalized) == image_id:
                del self._refs[normalized]
                if image_id not in self._refs.values():
                    self._records.pop(image_id, None)
            else:
                self._refs = {r: i for r, i in self._refs.items() if i != image_id}
                self._records.pop(image_id, None)
            self._save()
            await self._gc_locked()

    async def gc(self) -> GCResult:
        """Delete blobs and layers no image, pull in progress or mounted overlay still uses."""
        async with self._shared():
            return await self._gc_locked()

    async def _gc_locked(self) -> GCResult:
        keep_blobs: set[str] = set()
        keep_layers = {d.removeprefix("sha256:") for d in self._pins}
        for image_id, rec in self._records.items():
            keep_blobs.update(d.removeprefix("sha256:") for d in (image_id, rec.manifest, rec.index) if d)
            keep_layers.update(d.removeprefix("sha256:") for d in rec.layers)
        keep_layers |= overlay_mount.layers_in_use(self.layers_dir)
        blobs = [n for n in os.listdir(self.blobs_dir) if n not in keep_blobs]
        for name in blobs:
            os.unlink(os.path.join(self.blobs_dir, name))
        layers = [n for n in os.listdir(self.layers_dir)
                  if n not in keep_layers and (not n.startswith(".tmp-") or self._busy == 0)]
        for name in layers:
            await asyncio.to_thread(shutil.rmtree, os.path.join(self.layers_dir, name), True)
        if self._busy == 0:
            for name in os.listdir(self.ingest_dir):
                os.unlink(os.path.join(self.ingest_dir, name))
        return GCResult(len(blobs), len([n for n in layers if not n.startswith(".tmp-")]))

    # ---- rootfs --------------------------------------------------------------------------------

    async def mount_rootfs(self, image: Image | str, container_dir: str) -> str:
        """Overlay-mount the image at `container_dir/rootfs` (upper and work dirs beside it)."""
        img = image if isinstance(image, Image) else self.get(image)
        if img is None:
            raise ImageNotFoundError(f"image {image!r} not found")
        async with self._mounting():  # GC must not take a layer between the check and the mount
            return await asyncio.to_thread(self._mount, img, container_dir)

    def _mount(self, img: Image, container_dir: str) -> str:
        container_dir = os.path.abspath(container_dir)
        rootfs, upper, work = (os.path.join(container_dir, d) for d in ("rootfs", "upper", "work"))
        for d in (rootfs, upper, work):
            os.makedirs(d, exist_ok=True)
        if overlay_mount.is_mountpoint(rootfs):
            return rootfs
        lowers = [self.layer_dir(d) for d in reversed(img.layers)] or [self._empty_dir]
        missing = [p for p in lowers if not os.path.isdir(p)]
        if missing:
            raise MountError(f"image {img.id} is missing layers {missing}")
        overlay_mount.mount_overlay(lowers, upper, work, rootfs, layers_root=self.layers_dir)
        return rootfs

    async def unmount(self, container_dir: str) -> None:
        """Unmount `container_dir/rootfs`; nothing happens if it is not mounted."""
        await asyncio.to_thread(overlay_mount.unmount, os.path.join(container_dir, "rootfs"))

    # ---- internals -----------------------------------------------------------------------------

    def _blob_path(self, digest: str) -> str:
        if not is_digest(digest):
            raise ValueError(f"invalid digest {digest!r}")
        return os.path.join(self.blobs_dir, digest.removeprefix("sha256:"))

    def _resolve(self, ref: str) -> str | None:
        if is_image_id(ref):
            image_id = ref if ref.startswith("sha256:") else f"sha256:{ref}"
            return image_id if image_id in self._records else None
        normalized = str(parse_reference(ref))
        if normalized in self._refs:
            return self._refs[normalized]
        for image_id, rec in self._records.items():
            if normalized in rec.repo_digests:
                return image_id
        return None

    def _image(self, image_id: str) -> Image:
        rec = self._records[image_id]
        config = self._configs.get(image_id)
        if config is None:
            config = self._configs[image_id] = parse_image_config(self.read_blob(image_id))
        return Image(id=image_id, references=tuple(sorted(r for r, i in self._refs.items() if i == image_id)),
                     repo_digests=tuple(rec.repo_digests), manifest_digest=rec.manifest, config=config,
                     layers=tuple(rec.layers), size=rec.size)

    @contextlib.asynccontextmanager
    async def _shared(self) -> AsyncIterator[None]:
        """The store may be shared by processes (the agent and `pocketkube image`): every change runs
        under an flock of the index, on the index as it is on disk."""
        async with self._lock:
            fd = os.open(os.path.join(self.root, "index.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
                self._reload()
                yield
            finally:
                os.close(fd)  # releases the flock

    @contextlib.asynccontextmanager
    async def _mounting(self) -> AsyncIterator[None]:
        """A shared flock of the index: changes (import, rm, GC) take it exclusively, so no layer
        goes while a mount is being made, and mounts do not wait for one another (taking the
        exclusive lock and re-reading the index for each serialised a burst of pod starts)."""
        fd = os.open(os.path.join(self.root, "index.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _reload(self) -> None:
        self._records.clear()
        self._refs = {}
        self._load()

    def _refresh(self) -> None:
        """Pick up changes another process made to the index."""
        try:
            mtime = os.stat(self._index_path).st_mtime_ns
        except FileNotFoundError:
            return
        if mtime != self._index_mtime:
            self._reload()

    def _load(self) -> None:
        try:
            self._index_mtime = os.stat(self._index_path).st_mtime_ns
        except FileNotFoundError:
            self._index_mtime = 0
        try:
            with open(self._index_path, "rb") as f:
                doc: Any = orjson.loads(f.read())
        except FileNotFoundError:
            return
        for image_id, raw in doc.get("images", {}).items():
            self._records[image_id] = _Record(raw["manifest"], raw.get("manifest_media_type", ""), raw.get("index"),
                                              list(raw["layers"]), list(raw.get("repo_digests", [])),
                                              int(raw.get("size", 0)), float(raw.get("created", 0)))
        self._refs = {r: i for r, i in doc.get("refs", {}).items() if i in self._records}

    def _save(self) -> None:
        doc = {"version": 1, "refs": self._refs,
               "images": {i: {"manifest": r.manifest, "manifest_media_type": r.manifest_media_type, "index": r.index,
                              "layers": r.layers, "repo_digests": r.repo_digests, "size": r.size,
                              "created": r.created} for i, r in self._records.items()}}
        tmp = f"{self._index_path}.tmp"
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._index_path)
        self._index_mtime = os.stat(self._index_path).st_mtime_ns
