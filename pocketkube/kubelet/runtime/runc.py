"""Thin async wrapper over the runc CLI: start, kill, state, list, delete, and exec argv.

Every call is a short-lived `runc --root <runc_root> ...` whose stderr is turned into a typed
error carrying runc's own message (logrus text `time=... level=error msg="..."` is unwrapped).
Containers are never created here: conmon runs `runc create` (see conmon.py). stdin is always
/dev/null so no runc child can hold the caller's pipes.
"""

from __future__ import annotations

import json
import os
import re
import signal as signal_mod
from dataclasses import dataclass, field
from typing import Any

from pocketkube.kubelet import spawn
from pocketkube.kubelet.runtime.errors import (
    ContainerNotFound,
    ContainerNotRunning,
    RuntimeCommandError,
    RuntimeError_,
)

RUNC = "/usr/sbin/runc"
_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class ContainerState:
    """`runc state`: status is one of creating, created, running, paused, stopped."""

    id: str
    status: str
    pid: int
    bundle: str = ""
    created: str = ""
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ContainerState:
        return cls(id=str(raw.get("id", "")), status=str(raw.get("status", "")), pid=int(raw.get("pid") or 0),
                   bundle=str(raw.get("bundle", "")), created=str(raw.get("created", "")),
                   annotations=dict(raw.get("annotations") or {}))


def runc_message(stderr: str) -> str:
    """runc's error text without logrus decoration: the last `msg="..."`, unescaped, or the raw text."""
    found = _MSG.findall(stderr)
    if not found:
        return stderr.strip()
    inner = found[-1]
    try:
        text: str = json.loads(f'"{inner}"')
    except ValueError:
        text = inner.replace('\\"', '"')
    return text


def classify(message: str, container_id: str | None, returncode: int | None = None) -> RuntimeError_:
    """The typed error for a runc failure message."""
    lowered = message.lower()
    if "container does not exist" in lowered:
        return ContainerNotFound(message, container_id=container_id)
    if any(text in lowered for text in ("not running", "process already finished", "cannot exec in a stopped")):
        return ContainerNotRunning(message, container_id=container_id)
    return RuntimeCommandError(message, container_id=container_id, returncode=returncode)


def signal_arg(sig: int | str) -> str:
    """runc accepts names (KILL, SIGTERM) or numbers; normalise ints and enum members."""
    if isinstance(sig, signal_mod.Signals):
        return str(int(sig))
    return str(sig)


class Runc:
    """runc with a fixed state root (`--root`), one process per call."""

    def __init__(self, root: str, *, binary: str = RUNC) -> None:
        self.root = root
        self.binary = binary

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", self.root, *args]

    async def run(self, *args: str, container_id: str | None = None, timeout: float = 30.0) -> str:
        res = await spawn.run(self.argv(*args), timeout=timeout)  # started off the event loop
        if res.returncode != 0:
            raise classify(runc_message(res.stderr.decode(errors="replace")) or f"runc {args[0]} failed",
                           container_id, res.returncode)
        return res.stdout.decode(errors="replace")

    async def start(self, container_id: str) -> None:
        await self.run("start", container_id, container_id=container_id)

    async def kill(self, container_id: str, sig: int | str, *, all_processes: bool = False) -> None:
        extra = ["--all"] if all_processes else []
        await self.run("kill", *extra, container_id, signal_arg(sig), container_id=container_id)

    def exists(self, container_id: str) -> bool:
        """runc keeps a container's state in `<root>/<id>`; without it every command only answers
        "container does not exist" — after ~10-300 ms of fork+exec of a Go binary."""
        return os.path.isdir(os.path.join(self.root, container_id))

    async def state(self, container_id: str) -> ContainerState:
        if not self.exists(container_id):
            raise ContainerNotFound("container does not exist", container_id=container_id)
        out = await self.run("state", container_id, container_id=container_id)
        return ContainerState.from_json(json.loads(out))

    async def list(self) -> list[ContainerState]:
        out = await self.run("list", "--format", "json")
        raw = json.loads(out) if out.strip() else None
        return [ContainerState.from_json(item) for item in raw or []]

    async def delete(self, container_id: str, *, force: bool = False) -> None:
        if not self.exists(container_id):
            raise ContainerNotFound("container does not exist", container_id=container_id)
        extra = ["--force"] if force else []
        await self.run("delete", *extra, container_id, container_id=container_id)
