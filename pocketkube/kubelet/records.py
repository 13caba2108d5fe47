"""What the kubelet remembers about each container it started, on disk, so a restarted agent
re-adopts running containers instead of restarting them (containers outlive the agent)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ContainerRecord:
    pod_uid: str
    name: str
    attempt: int
    container_id: str
    image: str
    image_id: str
    bundle_dir: str
    log_path: str
    init: bool = False
    created_at: str = ""
    started_at: str = ""
    finished_at: str = ""
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    spec_hash: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return bool(self.started_at) and self.exit_code is None


class RecordStore:
    """records/<pod uid>/<container>-<attempt>.json under the agent's data dir."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, exist_ok=True)

    def _path(self, rec: ContainerRecord) -> str:
        return os.path.join(self.root, rec.pod_uid, f"{rec.name}-{rec.attempt}.json")

    def save(self, rec: ContainerRecord) -> None:
        path = self._path(rec)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(asdict(rec), f)
        os.replace(tmp, path)

    def delete(self, rec: ContainerRecord) -> None:
        try:
            os.unlink(self._path(rec))
        except FileNotFoundError:
            pass

    def for_pod(self, pod_uid: str) -> list[ContainerRecord]:
        d = os.path.join(self.root, pod_uid)
        out = []
        if os.path.isdir(d):
            for name in os.listdir(d):
                if name.endswith(".json"):
                    try:
                        with open(os.path.join(d, name)) as f:
                            out.append(ContainerRecord(**json.load(f)))
                    except (OSError, ValueError, TypeError):
                        continue
        return sorted(out, key=lambda r: (r.name, r.attempt))

    def pod_uids(self) -> list[str]:
        return [d for d in os.listdir(self.root) if os.path.isdir(os.path.join(self.root, d))]

    def forget_pod(self, pod_uid: str) -> None:
        shutil.rmtree(os.path.join(self.root, pod_uid), ignore_errors=True)

    async def forget_pod_async(self, pod_uid: str) -> None:
        """forget_pod off the event loop (a pod's teardown must not stall the others' starts)."""
        await asyncio.to_thread(self.forget_pod, pod_uid)
