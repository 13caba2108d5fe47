"""Image store timings beside their raw floors, measured in the same run.

- pull of the small busybox test image from a local docker-registry (cold store) vs the floor:
  `curl` of the same layer blob + GNU `tar xzf --numeric-owner` of it;
- layer unpack alone (pocketkube.kubelet.images.layer_unpack) vs `tar xzf`;
- overlay mount through mount(2) (what the store does) vs `mount -t overlay` (platform.md: ~6 ms).
Needs root, docker-registry, skopeo, curl. Run:

    PYTHONPATH=. python bench/bench_images.py [--runs 7]
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
from collections.abc import Callable
from functools import partial

from pocketkube.kubelet.images import ImageStore
from pocketkube.kubelet.images.layer_unpack import unpack_layer
from pocketkube.kubelet.images.overlay_mount import mount_overlay, unmount
from tests.support.images import build_busybox_image
from tests.support.registry import start_registry, stop_registry


def _median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:7.1f} ms (min {min(samples) * 1000:.1f})"


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _untar(blob: str, out: str) -> None:
    subprocess.run(["tar", "xzf", blob, "-C", out, "--numeric-owner"], check=True)


def _curl_and_untar(url: str, blob: str, out: str) -> None:
    subprocess.run(["curl", "-sf", "-o", blob, url], check=True)
    _untar(blob, out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    work = tempfile.mkdtemp(prefix="bench-images-")
    registry = start_registry(os.path.join(work, "registry"))
    try:
        built = build_busybox_image(os.path.join(work, "bb.tar"), ref="busybox:bench")
        registry.push(built.path, "library/busybox:bench")
        ref = f"{registry.host}/library/busybox:bench"
        manifest = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                                  capture_output=True, text=True, check=True).stdout
        layer_digest = json.loads(manifest)["layers"][0]["digest"]

        pulls: list[float] = []
        floors: list[float] = []
        unpacks: list[float] = []
        tars: list[float] = []
        mounts: list[float] = []
        mount_cmds: list[float] = []
        for i in range(runs):
            store = ImageStore(os.path.join(work, f"store-{i}"))
            pulls.append(_timed(partial(asyncio.run, store.pull(ref))))
            blob, out, out2 = (os.path.join(work, f"{k}-{i}") for k in ("blob", "tar", "tar2"))
            os.makedirs(out)
            os.makedirs(out2)
            url = f"{registry.url}/v2/library/busybox/blobs/{layer_digest}"
            floors.append(_timed(partial(_curl_and_untar, url, blob, out)))
            unpacks.append(_timed(partial(unpack_layer, blob, os.path.join(work, f"unpack-{i}"),
                                          expected_diff_id=None)))
            tars.append(_timed(partial(_untar, blob, out2)))
            upper, wdir, rootfs = (os.path.join(work, f"c-{i}", k) for k in ("upper", "work", "rootfs"))
            for d in (upper, wdir, rootfs):
                os.makedirs(d)
            lowers = [store.layer_dir(d) for d in reversed(built.diff_ids)]
            mounts.append(_timed(partial(mount_overlay, lowers, upper, wdir, rootfs, layers_root=store.layers_dir)))
            unmount(rootfs)
            opts = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={wdir}"
            mount_cmds.append(_timed(partial(subprocess.run, ["mount", "-t", "overlay", "overlay", "-o", opts, rootfs],
                                             check=True)))
            unmount(rootfs)
        size_kib = os.path.getsize(built.path) // 1024
        print(f"image: busybox test image, {size_kib} KiB archive, 1 layer; {runs} runs, medians")
        print(f"pull (cold store)           {_median_ms(pulls)}   floor curl+tar xzf {_median_ms(floors)}")
        print(f"layer unpack                {_median_ms(unpacks)}   floor tar xzf      {_median_ms(tars)}")
        print(f"overlay mount (mount(2))    {_median_ms(mounts)}   mount -t overlay   {_median_ms(mount_cmds)}")
    finally:
        stop_registry(registry)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
