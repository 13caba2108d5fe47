"""Container create+start latency through ContainerRuntime (conmon + runc), beside the raw floor.

The floor is `runc run -d` of the same bundle from the same process (stdio on /dev/null), which
skips conmon; both are measured in this run, N containers each running `sleep`. Needs root.

    PYTHONPATH=. python bench/bench_runtime.py [-n 10] [--asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid

from pocketkube.kubelet.runtime import ContainerRuntime, SandboxRef, build_container_spec
from pocketkube.kubelet.runtime.host_facts import remove_cgroup

RUNC = "/usr/sbin/runc"


def make_rootfs(base: str) -> str:
    rootfs = os.path.join(base, "rootfs")
    for sub in ("bin", "proc", "dev", "sys", "tmp"):
        os.makedirs(os.path.join(rootfs, sub))
    shutil.copy2("/usr/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    for applet in ("sh", "sleep"):
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    return rootfs


def make_bundle(base: str, rootfs: str, cid: str, cgroup_parent: str) -> str:
    config = build_container_spec(
        pod={"metadata": {"name": "bench"}, "spec": {}}, container={"name": cid, "command": ["sleep", "1000"]},
        image_config={"Env": ["PATH=/bin"]}, rootfs=rootfs, sandbox=SandboxRef(netns_path=None), mounts=[],
        env=[], cgroup_parent=cgroup_parent, hostname="bench", container_id=cid)
    bundle = os.path.join(base, "bundles", cid)
    os.makedirs(bundle)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    return bundle


def summary(name: str, samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return f"{name:28s} mean {statistics.mean(ms):6.1f} ms  min {min(ms):6.1f}  max {max(ms):6.1f}  (n={len(ms)})"


async def main(n: int) -> None:
    tag = f"pkbench-{uuid.uuid4().hex[:8]}"
    base = tempfile.mkdtemp(prefix=f"{tag}-", dir="/tmp")
    cgroup_parent = f"/pocketkube-test-{tag}"
    rootfs = make_rootfs(base)
    rt = ContainerRuntime(os.path.join(base, "c"), os.path.join(base, "runc"), os.path.join(base, "exits"))
    ours: list[float] = []
    creates: list[float] = []
    floor: list[float] = []
    ids: list[str] = []
    try:
        for i in range(n):
            cid = f"{tag}-c{i}"
            ids.append(cid)
            bundle = make_bundle(base, rootfs, cid, cgroup_parent)
            t0 = time.perf_counter()
            await rt.create(cid, bundle, os.path.join(base, "logs", f"{cid}.log"))
            creates.append(time.perf_counter() - t0)
            await rt.start(cid)
            ours.append(time.perf_counter() - t0)
            cid = f"{tag}-r{i}"
            ids.append(cid)
            bundle = make_bundle(base, rootfs, cid, cgroup_parent)
            t0 = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                RUNC, "--root", rt.runc.root, "run", "-d", "-b", bundle, cid, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await proc.wait()
            floor.append(time.perf_counter() - t0)
        print(summary("conmon + runc start (ours)", ours))
        print(summary("  of which create (conmon)", creates))
        print(summary("runc run -d (floor)", floor))
    finally:
        for cid in ids:
            await rt.delete(cid, force=True)
        await asyncio.sleep(0.2)
        remove_cgroup(cgroup_parent)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--asyncio", action="store_true", help="plain asyncio loop instead of uvloop (the agent's)")
    args = parser.parse_args()
    if args.asyncio:
        asyncio.run(main(args.n))
    else:
        import uvloop

        uvloop.run(main(args.n))
