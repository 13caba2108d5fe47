"""libnftables in-process: the same `nft -f` transactions without a process per sync.

A partial sync is a handful of commands, yet through the CLI each one costs a fork + exec of
`nsenter` and `nft` on top of nft's own work (about 40 ms of CPU at 1,000 Services against 25 ms
in-process, measured in bench/bench_proxy.py). libnftables (`libnftables.so.1`, the library the
`nft` binary is built on, Debian's libnftables1, always installed with nftables) takes the same
script text through `nft_run_cmd_from_buffer` and commits it as one batch, exactly as `nft -f`.

The netlink socket belongs to the network namespace of the thread that creates the context, so
each namespace gets one worker thread that enters it (`setns`, per thread) and keeps one context.
ctypes drops the GIL during the call, so the event loop runs meanwhile. Only diffs come here: a
whole 10,000-Service table parsed in-process would leave ~270 MB in this process's heap, so those go
through the CLI (nftables_apply.py). `close()` frees the context
and ends the thread: a thread left inside a deleted namespace would keep it (and its links) alive.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import threading
from concurrent.futures import ThreadPoolExecutor

CLONE_NEWNET = 0x40000000


class NftError(Exception):
    """libnftables refused the script; the message is nft's own error text."""


def _load() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL("libnftables.so.1")
    except OSError:
        return None
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    return lib


_lib = _load()
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def available() -> bool:
    return _lib is not None


class Context:
    """One libnftables context on its own thread, inside `netns` (None: this process's)."""

    def __init__(self, netns: str | None) -> None:
        if _lib is None:
            raise NftError("libnftables.so.1 is not installed")
        self.netns = netns
        self._ctx: int | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="libnftables")
        self._pool.submit(self._enter).result()  # raises here if the namespace cannot be entered

    def _enter(self) -> None:
        assert _lib is not None
        if self.netns:
            fd = os.open(self.netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise NftError(f"setns {self.netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
        ctx = _lib.nft_ctx_new(0)
        if not ctx:
            raise NftError("nft_ctx_new failed")
        _lib.nft_ctx_buffer_output(ctx)
        _lib.nft_ctx_buffer_error(ctx)
        self._ctx = ctx

    def _run(self, script: bytes) -> None:
        assert _lib is not None and self._ctx is not None
        if _lib.nft_run_cmd_from_buffer(self._ctx, script) != 0:
            err = (_lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace").strip()
            raise NftError(err[:2000] or "nft failed")

    async def run(self, script: str) -> None:
        """Commit `script` (nft syntax, one batch) or raise NftError with nft's message."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self._run, script.encode())

    def close(self) -> None:
        def free() -> None:
            if _lib is not None and self._ctx is not None:
                _lib.nft_ctx_free(self._ctx)
                self._ctx = None

        self._pool.submit(free).result()
        self._pool.shutdown(wait=True)


_contexts: dict[str | None, Context] = {}
_lock = threading.Lock()


def context(netns: str | None) -> Context:
    """The shared context of a namespace, created on first use."""
    with _lock:
        ctx = _contexts.get(netns)
        if ctx is None:
            ctx = _contexts[netns] = Context(netns)
        return ctx


def close(netns: str | None) -> None:
    with _lock:
        ctx = _contexts.pop(netns, None)
    if ctx is not None:
        ctx.close()
