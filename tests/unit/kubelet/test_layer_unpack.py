"""Layer unpacking: nothing escapes the layer dir, links and owners kept, digests verified."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from pocketkube.kubelet.images import LayerError
from pocketkube.kubelet.images.layer_unpack import scoped_path, unpack_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, trusted xattrs)")


def _entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **attrs: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode = kind, len(data), 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def _layer(path: Path, entries: list[tuple[tarfile.TarInfo, bytes]], *, compress: bool = True) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    path.write_bytes(gzip.compress(buf.getvalue()) if compress else buf.getvalue())
    return path


def test_paths_never_escape(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    blob = _layer(tmp_path / "evil.tgz", [
        _entry("../../escaped", data=b"x"),
        _entry("/abs", data=b"y"),
        _entry("up", tarfile.SYMTYPE, linkname=str(outside)),
        _entry("up/through-symlink", data=b"z"),
        _entry("rel", tarfile.SYMTYPE, linkname="../../../.."),
        _entry("rel/through-relative", data=b"w"),
        _entry("hard", tarfile.LNKTYPE, linkname="../../escaped"),
    ])
    dest = tmp_path / "layer"
    unpack_layer(str(blob), str(dest), expected_diff_id=None)
    assert os.listdir(outside) == []
    assert (dest / "escaped").read_bytes() == b"x" and (dest / "abs").read_bytes() == b"y"
    assert os.readlink(dest / "up") == str(outside)  # the link itself is kept verbatim
    assert (dest / str(outside).lstrip("/") / "through-symlink").read_bytes() == b"z"
    assert (dest / "through-relative").read_bytes() == b"w"
    assert os.stat(dest / "hard").st_ino == os.stat(dest / "escaped").st_ino
    assert scoped_path(str(dest), "up/x", follow_final=True).startswith(str(dest) + "/")


def test_owners_modes_devices_and_diff_id(tmp_path: Path) -> None:
    entries = [
        _entry("bin/", tarfile.DIRTYPE, mode=0o755),
        _entry("bin/su", data=b"#!", mode=0o4755, uid=0, gid=0),
        _entry("home/user/", tarfile.DIRTYPE, mode=0o700, uid=1000, gid=1001),
        _entry("home/user/file", data=b"f", mode=0o600, uid=1000, gid=1001),
        _entry("tmp/", tarfile.DIRTYPE, mode=0o1777),
        _entry("dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
        _entry("etc/os", data=b"os"),
        _entry("etc/os", data=b"replaced"),  # later entries win
        _entry("old/", tarfile.DIRTYPE),
        _entry("old/.wh.gone"),
        _entry("old/.wh..wh..opq"),
        _entry(".wh..wh.plnk/", tarfile.DIRTYPE),
    ]
    blob = _layer(tmp_path / "l.tar", entries, compress=False)
    raw = blob.read_bytes()

    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    dest = tmp_path / "layer"
    assert unpack_layer(str(blob), str(dest), expected_diff_id=digest) == digest
    assert stat.S_IMODE(os.stat(dest / "bin/su").st_mode) == 0o4755
    st = os.stat(dest / "home/user/file")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o600)
    assert stat.S_IMODE(os.stat(dest / "home/user").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(dest / "tmp").st_mode) == 0o1777
    assert os.stat(dest / "dev/null").st_rdev == os.makedev(1, 3)
    assert (dest / "etc/os").read_bytes() == b"replaced"
    assert os.lstat(dest / "old/gone").st_rdev == os.makedev(0, 0)
    assert os.getxattr(dest / "old", "trusted.overlay.opaque") == b"y"
    assert not (dest / ".wh..wh.plnk").exists()


def test_diff_id_mismatch_removes_the_dir(tmp_path: Path) -> None:
    blob = _layer(tmp_path / "l.tgz", [_entry("a", data=b"a")])
    dest = tmp_path / "layer"
    with pytest.raises(LayerError, match="diff_id mismatch"):
        unpack_layer(str(blob), str(dest), expected_diff_id="sha256:" + "0" * 64)
    assert not dest.exists()
    (tmp_path / "junk").write_bytes(b"\x1f\x8bnot gzip at all")
    with pytest.raises(LayerError, match="failed to unpack layer"):
        unpack_layer(str(tmp_path / "junk"), str(dest), expected_diff_id=None)
    assert not dest.exists()


@pytest.mark.skipif(shutil.which("zstd") is None, reason="no zstd binary")
def test_zstd_layer(tmp_path: Path) -> None:
    plain = _layer(tmp_path / "l.tar", [_entry("z", data=b"zstd")], compress=False)
    subprocess.run(["zstd", "-q", str(plain), "-o", str(tmp_path / "l.tar.zst")], check=True)
    dest = tmp_path / "layer"
    diff_id = unpack_layer(str(tmp_path / "l.tar.zst"), str(dest), expected_diff_id=None)
    assert diff_id == "sha256:" + hashlib.sha256(plain.read_bytes()).hexdigest()
    assert (dest / "z").read_bytes() == b"zstd"
