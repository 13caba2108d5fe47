"""Named network namespaces under /run/netns, and running commands inside one.

Pod sandboxes (and, in tests or `hollow`-style clusters, whole nodes) each get a named network
namespace. Two pitfalls shape this module (reference/platform.md §4):

* Namespaces must be created from the HOST mount namespace. `ip netns add` run under
  `ip netns exec` bind-mounts into an rslave mount namespace, so the host only sees an empty
  placeholder file and later joins fail with "Invalid argument".
* Commands are entered with `nsenter --net=PATH`, never `ip netns exec`, which remounts /sys in a
  private mount namespace so runc then finds no cgroup mount.

Creation does what `ip netns add` does in a short-lived thread of the agent (unshare + bind mount:
no process to start; `ip netns add` was 1.8 ms of CPU and a process start per pod, and
`pyroute2.netns.create` forks a helper, 6.3 ms); `ip netns add` is still used while /run/netns is
not yet the shared mount it sets up. Removal is an in-process detach-unmount + unlink via pyroute2
(0.15 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyroute2 import netns as _pyroute2_netns

from pocketkube.kubelet import spawn

NETNS_RUN_DIR = "/run/netns"
_CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


class NetnsError(Exception):
    """A network namespace could not be created, removed or entered."""


@dataclass(frozen=True)
class CommandResult:
    """Outcome of a command run inside a network namespace."""

    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def netns_path(name: str) -> str:
    """The bind-mount path of the named namespace (what CNI_NETNS and the OCI spec take)."""
    if not name or "/" in name or name in (".", ".."):
        raise NetnsError(f"invalid network namespace name {name!r}")
    return os.path.join(NETNS_RUN_DIR, name)


def is_netns(path: str) -> bool:
    """True if `path` is a live namespace mount (nsfs), not an empty placeholder file."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


def list_netns(prefix: str = "") -> list[str]:
    """Names under /run/netns starting with `prefix` (placeholders included, so leaks show)."""
    try:
        names = os.listdir(NETNS_RUN_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


async def create_netns(name: str) -> str:
    """Create the named namespace if it is missing; returns its path. Idempotent.

    A stale placeholder (left by a creation inside another mount namespace, or a crash between
    the file creation and the bind mount) is removed and the namespace created again.
    """
    path = netns_path(name)
    if is_netns(path):
        return path
    _remove_path(path)
    if _run_dir_is_shared_mount():
        await _create_in_thread(path)
    else:  # `ip` makes /run/netns a shared mount first, as the first namespace on a host needs
        result = await run_command(["ip", "netns", "add", name], timeout=10.0)
        if not result.ok and not is_netns(path):
            raise NetnsError(f"ip netns add {name}: {result.stderr.decode(errors='replace').strip()}")
    if not is_netns(path):
        raise NetnsError(f"{path} is not a network namespace after creation (created from a non-host mount ns?)")
    return path


def _run_dir_is_shared_mount() -> bool:
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split(" - ", 1)[0].split()
                if len(fields) > 4 and fields[4] == NETNS_RUN_DIR:
                    return any(opt.startswith("shared:") for opt in fields[6:])
    except OSError:
        pass
    return False


async def _create_in_thread(path: str) -> None:
    """What `ip netns add` does, without its process: a new thread unshares its network
    namespace and bind-mounts it on `path`, then ends (the mount keeps the namespace alive).
    A thread of its own, because the namespace it leaves behind is not the host's; started and
    joined from a worker thread, as Thread.start() waits until the new thread runs (3-4 ms
    under load, which the event loop would otherwise spend blocked)."""
    errors: list[BaseException] = []

    def body() -> None:
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
            if _libc.unshare(_CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}")
            source = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
            if _libc.mount(source, path.encode(), b"none", _MS_BIND, None) != 0:
                raise OSError(ctypes.get_errno(), f"bind mount on {path}: {os.strerror(ctypes.get_errno())}")
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.unlink(path)
            errors.append(e)

    def create() -> None:
        thread = threading.Thread(target=body, name="netns-create", daemon=True)
        thread.start()
        thread.join()
        if errors:
            raise NetnsError(f"create network namespace {path}: {errors[0]}")

    # Shielded: a cancelled caller leaves a namespace the next create_netns (or the sandbox's
    # teardown) finds or removes, never a thread stuck halfway.
    await asyncio.shield(spawn.call(create))


async def delete_netns(name: str) -> None:
    """Unmount and remove the named namespace; a missing one is fine. Idempotent."""
    _remove_path(netns_path(name))


def _remove_path(path: str) -> None:
    if not os.path.lexists(path):
        return
    try:
        # umount2(MNT_DETACH) + unlink, in-process; a placeholder's failed umount is ignored.
        _pyroute2_netns.remove(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise NetnsError(f"remove {path}: {e}") from e


def nsenter_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    """`argv` prefixed with `nsenter --net=PATH --` (unchanged when `netns` is None: the host)."""
    if netns is None:
        return list(argv)
    return ["nsenter", f"--net={netns}", "--", *argv]


async def run_command(argv: Sequence[str], *, input: bytes | None = None,
                      env: Mapping[str, str] | None = None, timeout: float = 30.0) -> CommandResult:
    """Run `argv` to completion, capturing output (from a worker thread: kubelet/spawn.py);
    TimeoutError after `timeout` s, the process killed."""
    try:
        res = await spawn.run(argv, input=input, env=env, timeout=timeout)
    except OSError as e:
        raise NetnsError(f"cannot run {argv[0]}: {e}") from e
    return CommandResult(res.returncode, res.stdout, res.stderr)


async def run_in_netns(netns: str | None, argv: Sequence[str], *, input: bytes | None = None,
                       env: Mapping[str, str] | None = None, timeout: float = 30.0) -> CommandResult:
    """Run `argv` inside the namespace at path `netns` (host if None) via nsenter."""
    if netns is not None and not is_netns(netns):
        raise NetnsError(f"{netns} is not a network namespace")
    return await run_command(nsenter_argv(netns, argv), input=input, env=env, timeout=timeout)
