"""The impure inputs of `oci_spec.build_container_spec`, read from this host or an image rootfs.

Kept out of the builder so it stays a pure function: the agent's own capabilities (what "ALL" and
privileged may grant), the host's device nodes (what a privileged container sees), a user-name
resolver over the image's /etc/passwd, and cgroup directory clean-up for every hierarchy.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any

from pocketkube.kubelet.runtime.oci_defaults import ALL_CAPABILITIES

CGROUP_ROOT = "/sys/fs/cgroup"


def current_capabilities(status_path: str = "/proc/self/status") -> list[str]:
    """The capabilities this process holds (CapEff), by name, in ALL_CAPABILITIES order."""
    with open(status_path) as f:
        for line in f:
            if line.startswith("CapEff:"):
                mask = int(line.split()[1], 16)
                return [cap for bit, cap in enumerate(ALL_CAPABILITIES) if mask >> bit & 1]
    return list(ALL_CAPABILITIES)


def host_devices(dev_dir: str = "/dev") -> list[dict[str, Any]]:
    """Character and block devices under /dev, as OCI `linux.devices` entries (for privileged)."""
    out: list[dict[str, Any]] = []
    for root, dirs, files in os.walk(dev_dir):
        dirs[:] = [x for x in dirs if x not in ("pts", "shm", "mqueue")]
        for name in sorted(files):
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                if path in ("/dev/console", "/dev/ptmx"):
                    continue
                out.append({
                    "path": path, "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                    "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                    "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
                })
    return sorted(out, key=lambda dev: str(dev["path"]))


def passwd_resolver(rootfs: str) -> Callable[[str], tuple[int, int]]:
    """A `resolve_user` for the builder: name -> (uid, gid) from <rootfs>/etc/passwd; KeyError if absent."""

    def resolve(name: str) -> tuple[int, int]:
        path = os.path.join(rootfs, "etc", "passwd")
        with open(path) as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 4 and fields[0] == name:
                    return int(fields[2]), int(fields[3])
        raise KeyError(f"no matching entries in passwd file for {name!r}")

    return resolve


def cgroup_dirs(cgroups_path: str, root: str = CGROUP_ROOT) -> list[str]:
    """Where runc's cgroupfs driver puts `cgroups_path`: one dir per mounted hierarchy (v1 and unified)."""
    rel = cgroups_path.strip("/")
    if os.path.exists(os.path.join(root, "cgroup.controllers")):  # pure v2 host: one hierarchy
        return [os.path.join(root, rel)]
    out = []
    try:
        hierarchies = sorted(os.listdir(root))
    except OSError:
        return []
    for name in hierarchies:
        base = os.path.join(root, name)
        if os.path.isdir(base) and not os.path.islink(base):
            out.append(os.path.join(base, rel))
    return out


def remove_cgroup(cgroups_path: str, root: str = CGROUP_ROOT) -> list[str]:
    """rmdir the cgroup (children first) in every hierarchy; returns dirs that could not be removed."""
    left: list[str] = []
    for top in cgroup_dirs(cgroups_path, root):
        if not os.path.isdir(top):
            continue
        for current, dirs, _files in os.walk(top, topdown=False):
            del dirs
            try:
                os.rmdir(current)
            except OSError:
                left.append(current)
    return left
