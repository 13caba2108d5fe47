"""Pod volumes on the node: emptyDir (also tmpfs), hostPath, configMap, secret, downwardAPI, projected.

Each volume becomes a directory under `<pod dir>/volumes/<type>/<name>`, bind-mounted into the
containers that mount it. configMap, secret, downwardAPI and projected volumes are written the
kubelet's atomic way (pkg/volume/util/atomic_writer.go): files land in a fresh `..<timestamp>`
directory, `..data` is switched to it with one rename, and each visible name is a symlink through
`..data`, so a container never sees half an update.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import stat
import time
from dataclasses import dataclass
from typing import Any

from pocketkube.kubelet.env import EnvError, Lookup, field_value, resource_value

Obj = dict[str, Any]


class VolumeError(Exception):
    """The volume cannot be set up (missing source, bad path): the pod says which."""


@dataclass(frozen=True)
class VolumeMount:
    source: str
    destination: str
    read_only: bool


def atomic_write(target_dir: str, files: dict[str, tuple[bytes, int]]) -> None:
    """Publish `files` (relative path -> (content, mode)) into target_dir atomically."""
    os.makedirs(target_dir, exist_ok=True)
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.") + f"{time.time_ns() % 10**9:09d}"
    new_dir = os.path.join(target_dir, stamp)
    os.mkdir(new_dir, 0o755)
    for rel, (content, mode) in files.items():
        path = os.path.join(new_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
        os.chmod(path, mode)
    data_link = os.path.join(target_dir, "..data")
    tmp_link = os.path.join(target_dir, "..data_tmp")
    old = os.readlink(data_link) if os.path.islink(data_link) else None
    if os.path.lexists(tmp_link):
        os.unlink(tmp_link)
    os.symlink(stamp, tmp_link)
    os.replace(tmp_link, data_link)
    tops = {rel.split("/", 1)[0] for rel in files}
    for top in tops:
        link = os.path.join(target_dir, top)
        if not os.path.lexists(link):
            os.symlink(os.path.join("..data", top), link)
    for entry in os.listdir(target_dir):
        if entry.startswith("..") or entry in tops:
            continue
        path = os.path.join(target_dir, entry)
        if os.path.islink(path):
            os.unlink(path)
    if old and old != stamp:
        shutil.rmtree(os.path.join(target_dir, old), ignore_errors=True)


def _mode(value: Any, default: int) -> int:
    return int(value) & 0o7777 if isinstance(value, int) else default


def _key_files(data: dict[str, bytes], items: list[Obj] | None, default_mode: int, what: str,
               optional: bool) -> dict[str, tuple[bytes, int]]:
    out: dict[str, tuple[bytes, int]] = {}
    if items:
        for item in items:
            key = item.get("key", "")
            if key not in data:
                if optional:
                    continue
                raise VolumeError(f"configmap references non-existent config key: {key}" if what == "configMap"
                                  else f"references non-existent secret key: {key}")
            out[item.get("path") or key] = (data[key], _mode(item.get("mode"), default_mode))
    else:
        for key, value in data.items():
            out[key] = (value, default_mode)
    return out


class PodVolumes:
    """Set up and tear down the volumes of one pod."""

    def __init__(self, pod_dir: str, pod: Obj, lookup: Lookup, *, node_allocatable: dict[str, str] | None = None):
        self.pod_dir = pod_dir
        self.pod = pod
        self.lookup = lookup
        self.node_allocatable = node_allocatable or {}
        self.paths: dict[str, str] = {}

    def _dir(self, kind: str, name: str) -> str:
        return os.path.join(self.pod_dir, "volumes", kind, name)

    async def setup(self) -> dict[str, str]:
        """Create every volume; returns name -> host path. VolumeError on the first bad one."""
        for vol in (self.pod.get("spec") or {}).get("volumes") or []:
            self.paths[vol["name"]] = await self._setup_one(vol)
        return self.paths

    async def _source(self, kind: str, name: str, optional: bool, what: str) -> Obj | None:
        obj = await self.lookup(kind, name)
        if obj is None and not optional:
            raise VolumeError(f'{what} "{name}" not found')
        return obj

    async def _setup_one(self, vol: Obj) -> str:
        name = vol["name"]
        if "hostPath" in vol:
            return self._host_path(vol["hostPath"])
        if "emptyDir" in vol or len(vol) == 1:
            path = self._dir("empty-dir", name)
            os.makedirs(path, exist_ok=True)
            os.chmod(path, 0o777)
            if ((vol.get("emptyDir") or {}).get("medium")) == "Memory" and not os.path.ismount(path):
                size = (vol.get("emptyDir") or {}).get("sizeLimit")
                opts = "mode=1777" + (f",size={size}" if size else "")
                proc = await asyncio.create_subprocess_exec("mount", "-t", "tmpfs", "-o", opts, "tmpfs", path,
                                                            stderr=asyncio.subprocess.PIPE)
                _, err = await proc.communicate()
                if proc.returncode != 0:
                    raise VolumeError(f"mounting tmpfs for emptyDir {name}: {err.decode().strip()}")
            return path
        files: dict[str, tuple[bytes, int]] = {}
        kind = "projected"
        if "configMap" in vol:
            kind = "configmap"
            files = await self._configmap(vol["configMap"])
        elif "secret" in vol:
            kind = "secret"
            files = await self._secret(vol["secret"])
        elif "downwardAPI" in vol:
            kind = "downward-api"
            files = self._downward(vol["downwardAPI"].get("items") or [], _mode(vol["downwardAPI"].get("defaultMode"), 0o644))
        elif "projected" in vol:
            proj = vol["projected"]
            default = _mode(proj.get("defaultMode"), 0o644)
            for src in proj.get("sources") or []:
                if "configMap" in src:
                    files.update(await self._configmap({**src["configMap"], "defaultMode": default}))
                elif "secret" in src:
                    files.update(await self._secret({**src["secret"], "defaultMode": default}))
                elif "downwardAPI" in src:
                    files.update(self._downward(src["downwardAPI"].get("items") or [], default))
        elif "persistentVolumeClaim" in vol:
            raise VolumeError(f"volume {name}: persistentVolumeClaim volumes are not supported on this node yet")
        else:
            raise VolumeError(f"volume {name}: unsupported volume type {sorted(k for k in vol if k != 'name')}")
        path = self._dir(kind, name)
        atomic_write(path, files)
        return path

    def _host_path(self, spec: Obj) -> str:
        path = spec.get("path", "")
        htype = spec.get("type") or ""
        exists = os.path.exists(path)
        if htype == "DirectoryOrCreate" and not exists:
            os.makedirs(path, 0o755, exist_ok=True)
        elif htype == "FileOrCreate" and not exists:
            os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
            open(path, "a").close()
        elif htype == "Directory" and not os.path.isdir(path):
            raise VolumeError(f"hostPath type check failed: {path} is not a directory")
        elif htype == "File" and not os.path.isfile(path):
            raise VolumeError(f"hostPath type check failed: {path} is not a file")
        elif htype == "Socket" and not (exists and stat.S_ISSOCK(os.stat(path).st_mode)):
            raise VolumeError(f"hostPath type check failed: {path} is not a socket file")
        return str(path)

    async def _configmap(self, spec: Obj) -> dict[str, tuple[bytes, int]]:
        optional = bool(spec.get("optional"))
        cm = await self._source("configmaps", spec.get("name", ""), optional, "configmap")
        data = {k: str(v).encode() for k, v in ((cm or {}).get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in ((cm or {}).get("binaryData") or {}).items()})
        return _key_files(data, spec.get("items"), _mode(spec.get("defaultMode"), 0o644), "configMap", optional)

    async def _secret(self, spec: Obj) -> dict[str, tuple[bytes, int]]:
        optional = bool(spec.get("optional"))
        secret = await self._source("secrets", spec.get("secretName") or spec.get("name", ""), optional, "secret")
        data = {k: base64.b64decode(v) for k, v in ((secret or {}).get("data") or {}).items()}
        return _key_files(data, spec.get("items"), _mode(spec.get("defaultMode"), 0o644), "secret", optional)

    def _downward(self, items: list[Obj], default_mode: int) -> dict[str, tuple[bytes, int]]:
        out: dict[str, tuple[bytes, int]] = {}
        for item in items:
            try:
                if "fieldRef" in item:
                    value = field_value(self.pod, item["fieldRef"].get("fieldPath", ""))
                else:
                    ref = item.get("resourceFieldRef") or {}
                    container: Obj = next((c for c in (self.pod.get("spec") or {}).get("containers") or []
                                      if c.get("name") == ref.get("containerName")), {})
                    value = resource_value(container, ref.get("resource", ""), ref.get("divisor"), self.node_allocatable)
            except EnvError as e:
                raise VolumeError(str(e)) from e
            out[item.get("path", "")] = (value.encode(), _mode(item.get("mode"), default_mode))
        return out

    def mounts_for(self, container: Obj) -> list[VolumeMount]:
        out = []
        for vm in container.get("volumeMounts") or []:
            src = self.paths.get(vm.get("name", ""))
            if src is None:
                raise VolumeError(f"volume {vm.get('name')} is not defined in the pod")
            if vm.get("subPath"):
                src = os.path.join(src, vm["subPath"])
                os.makedirs(src, exist_ok=True)
            out.append(VolumeMount(src, vm.get("mountPath", ""), bool(vm.get("readOnly"))))
        return out

    async def teardown(self) -> None:
        vols = os.path.join(self.pod_dir, "volumes", "empty-dir")
        if os.path.isdir(vols):
            for name in os.listdir(vols):
                path = os.path.join(vols, name)
                if os.path.ismount(path):
                    proc = await asyncio.create_subprocess_exec("umount", "-l", path)
                    await proc.wait()
        shutil.rmtree(os.path.join(self.pod_dir, "volumes"), ignore_errors=True)
