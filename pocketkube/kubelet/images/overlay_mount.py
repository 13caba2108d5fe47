"""Overlay mounts of container root filesystems, and which layers they hold.

`mount(2)` through ctypes: no fork/exec, so a mount costs well under the ~6 ms of `mount -t
overlay` measured in reference/platform.md. When the lowerdir list is too long for one page of
mount data, the layers are named relative to the layers dir and `mount(8)` is run there instead.
Which layers are in use is read from /proc/self/mountinfo, so it survives a kubelet restart.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import subprocess

from pocketkube.kubelet.images.errors import MountError

MNT_DETACH = 2
_PAGE = 4096
_LAYER_NAME = re.compile(r"^[0-9a-f]{64}$")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.mount.restype = ctypes.c_int
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.umount2.restype = ctypes.c_int


def _check_path(path: str) -> None:
    if any(c in path for c in ",:\n"):
        raise MountError(f"path {path!r} cannot be used in overlay options (contains ',' ':' or newline)")


def mount_overlay(lower_dirs: list[str], upper: str, work: str, target: str, *, layers_root: str) -> None:
    """Mount an overlay at `target`; `lower_dirs` top layer first. Blocking (call from a thread)."""
    for path in (*lower_dirs, upper, work, target):
        _check_path(path)
    options = f"lowerdir={':'.join(lower_dirs)},upperdir={upper},workdir={work}"
    if len(options) < _PAGE:
        if _libc.mount(b"overlay", target.encode(), b"overlay", 0, options.encode()) != 0:
            err = ctypes.get_errno()
            raise MountError(f"mount overlay on {target}: {os.strerror(err)}")
        return
    relative = [os.path.relpath(p, layers_root) for p in lower_dirs]
    options = f"lowerdir={':'.join(relative)},upperdir={upper},workdir={work}"
    if len(options) >= _PAGE:
        raise MountError(f"too many layers to mount ({len(lower_dirs)})")
    proc = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, target], cwd=layers_root,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise MountError(f"mount overlay on {target}: {proc.stderr.strip()}")


def unmount(target: str) -> bool:
    """Unmount `target`; False if nothing was mounted there. Lazy-detaches when busy."""
    if _libc.umount2(target.encode(), 0) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):
        return False
    if err == errno.EBUSY and _libc.umount2(target.encode(), MNT_DETACH) == 0:
        return True
    raise MountError(f"unmount {target}: {os.strerror(ctypes.get_errno() or err)}")


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def is_mountpoint(path: str) -> bool:
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            return any(_unescape(line.split(" ")[4]) == real for line in f)
    except OSError:
        return os.path.ismount(path)


def layers_in_use(layers_root: str | None = None) -> set[str]:
    """Layer names (64-hex dir names) that are lower dirs of a mounted overlay — of this store's
    layers dir when `layers_root` is given: another store (another node's agent on the machine)
    holding a layer of the same digest must not keep ours. Relative lower dirs (the long-list
    mount, made from inside the layers dir) count as ours."""
    roots = {"", os.path.abspath(layers_root), os.path.realpath(layers_root)} if layers_root is not None else None
    used: set[str] = set()
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return used
    for line in lines:
        _, sep, tail = line.partition(" - ")
        fields = tail.split(" ")
        if not sep or len(fields) < 3 or fields[0] != "overlay":
            continue
        for option in _unescape(fields[2]).split(","):
            if option.startswith("lowerdir="):
                for lower in option[len("lowerdir="):].split(":"):
                    parent, name = os.path.split(lower.rstrip("/"))
                    if _LAYER_NAME.match(name) and (roots is None or parent in roots):
                        used.add(name)
    return used
