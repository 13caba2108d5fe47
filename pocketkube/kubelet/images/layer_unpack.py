"""Unpack one layer tarball into its own directory, ready to be an overlayfs lower dir.

Runs in a worker thread. The tar stream is decompressed (gzip, zstd through the `zstd` binary,
or none — detected by magic bytes), hashed on the fly and checked against the config's diff_id.
Paths never leave the layer dir: names are clamped to it and symlinks met on the way are resolved
inside it (like containerd's fs.RootPath). Owners are numeric, modes kept verbatim (setuid, sticky).
OCI whiteouts become what overlayfs reads: `.wh.NAME` → a 0/0 character device, `.wh..wh..opq`
→ the `trusted.overlay.opaque=y` xattr on the directory.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import posixpath
import shutil
import stat
import subprocess
import tarfile
from typing import IO, BinaryIO

from pocketkube.kubelet.images.errors import LayerError

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_MAX_SYMLINK_HOPS = 255


class _HashingReader:
    """A read-only stream that hashes what passes through it."""

    def __init__(self, raw: IO[bytes] | gzip.GzipFile) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.sha.update(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def detect_compression(head: bytes) -> str:
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return "none"


def file_digest(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


def unpack_layer(blob_path: str, dest: str, *, expected_diff_id: str | None) -> str:
    """Unpack `blob_path` into the new directory `dest`; returns the diff_id (uncompressed sha256).

    On any error `dest` is removed and LayerError raised.
    """
    os.makedirs(dest)
    proc: subprocess.Popen[bytes] | None = None
    try:
        with open(blob_path, "rb") as head:
            kind = detect_compression(head.read(4))
        with open(blob_path, "rb") as blob:
            stream: IO[bytes] | gzip.GzipFile
            if kind == "gzip":
                stream = gzip.GzipFile(fileobj=blob, mode="rb")
            elif kind == "zstd":
                if shutil.which("zstd") is None:
                    raise LayerError("zstd-compressed layer but no zstd binary on this node")
                proc = subprocess.Popen(["zstd", "-dcq"], stdin=blob, stdout=subprocess.PIPE)
                assert proc.stdout is not None
                stream = proc.stdout
            else:
                stream = blob
            reader = _HashingReader(stream)
            _extract(reader, dest)
            reader.drain()
            if proc is not None:
                assert proc.stdout is not None
                proc.stdout.close()
                if proc.wait() != 0:
                    raise LayerError(f"zstd failed with exit code {proc.returncode}")
        diff_id = reader.digest()
        if expected_diff_id is not None and diff_id != expected_diff_id:
            raise LayerError(f"layer diff_id mismatch: config says {expected_diff_id}, content is {diff_id}")
        return diff_id
    except BaseException as e:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(e, (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile)):
            raise LayerError(f"failed to unpack layer: {e}") from e
        raise


def _clean_name(name: str) -> str:
    """Archive name → relative path clamped inside the root (`../../x` → `x`)."""
    return posixpath.normpath("/" + name).lstrip("/")


def scoped_path(root: str, rel: str, *, follow_final: bool) -> str:
    """Join `rel` to `root`, resolving symlinks as if `root` were `/` (never escapes `root`)."""
    pending = [p for p in rel.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *done, part)
        if pending or follow_final:
            try:
                st = os.lstat(candidate)
            except FileNotFoundError:
                done.append(part)
                continue
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:
                    raise LayerError(f"too many levels of symbolic links in {rel!r}")
                target = os.readlink(candidate)
                if target.startswith("/"):
                    done = []
                pending = [p for p in target.split("/") if p not in ("", ".")] + pending
                continue
        done.append(part)
    return os.path.join(root, *done)


def _remove_existing(path: str, *, keep_dir: bool) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if not keep_dir:
            shutil.rmtree(path)
    else:
        os.unlink(path)


def _apply_xattrs(path: str, member: tarfile.TarInfo) -> None:
    for key, value in member.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        name = key[len("SCHILY.xattr."):]
        if name.startswith("trusted.overlay."):
            continue  # a layer must not steer overlayfs (redirects, metacopy)
        try:
            os.setxattr(path, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
        except OSError:
            pass  # xattrs are best effort (ENOTSUP on some filesystems)


def _set_owner_mode(path: str, member: tarfile.TarInfo, *, is_link: bool) -> None:
    os.lchown(path, member.uid, member.gid)
    if not is_link:
        os.chmod(path, stat.S_IMODE(member.mode))  # after chown, which clears setuid bits
    os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)


def _extract(stream: BinaryIO | _HashingReader, root: str) -> None:
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
        for member in tar:
            name = _clean_name(member.name)
            if not name:
                dirs.append((root, member))
                continue
            parent_rel, base = posixpath.split(name)
            parent = scoped_path(root, parent_rel, follow_final=True)
            os.makedirs(parent, 0o755, exist_ok=True)
            if base == WHITEOUT_OPAQUE:
                os.setxattr(parent, OVERLAY_OPAQUE_XATTR, b"y")
                continue
            if base.startswith(WHITEOUT_META_PREFIX):
                continue  # aufs bookkeeping (.wh..wh.plnk and friends)
            if base.startswith(WHITEOUT_PREFIX):
                path = os.path.join(parent, base[len(WHITEOUT_PREFIX):])
                _remove_existing(path, keep_dir=False)
                os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(0, 0))
                continue
            path = os.path.join(parent, base)
            _extract_member(tar, member, root, path, dirs)
    # Directory times and modes last: creating children would change them again.
    for path, member in reversed(dirs):
        if stat.S_ISDIR(os.lstat(path).st_mode):  # a later entry may have replaced it by a symlink
            _set_owner_mode(path, member, is_link=False)


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: str, path: str,
                    dirs: list[tuple[str, tarfile.TarInfo]]) -> None:
    if member.isdir():
        _remove_existing(path, keep_dir=True)
        if not os.path.isdir(path):
            os.mkdir(path, 0o700)
        _apply_xattrs(path, member)
        dirs.append((path, member))
        return
    _remove_existing(path, keep_dir=False)
    if member.isreg():
        src = tar.extractfile(member)
        assert src is not None
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        _apply_xattrs(path, member)
        _set_owner_mode(path, member, is_link=False)
    elif member.issym():
        os.symlink(member.linkname, path)
        _set_owner_mode(path, member, is_link=True)
    elif member.islnk():
        target = scoped_path(root, _clean_name(member.linkname), follow_final=False)
        if not os.path.lexists(target):
            raise LayerError(f"hard link {member.name!r} points to missing {member.linkname!r}")
        os.link(target, path, follow_symlinks=False)
    elif member.ischr() or member.isblk() or member.isfifo():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
        os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        _set_owner_mode(path, member, is_link=False)
    else:
        raise LayerError(f"unsupported tar entry type {member.type!r} for {member.name!r}")
