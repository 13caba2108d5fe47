"""The image store against a real registry (Debian docker-registry), real archives and real overlay
mounts: pull by tag, digest and through a manifest list, registry errors in the registry's words,
bearer and basic auth through a stub, archive import, whiteouts in a mounted rootfs, remove + GC.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pocketkube.kubelet.images import (
    ImageNeverPullError,
    ImageNotFoundError,
    ImagePullError,
    ImageStore,
    credentials_from_dockerconfigjson,
)
from pocketkube.kubelet.images.overlay_mount import is_mountpoint, layers_in_use
from tests.support.images import build_busybox_image
from tests.support.registry import AuthProxy, LocalRegistry, stop_registry

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay mounts, numeric owners)"),
]


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """A unique dir; any overlay left mounted under it is unmounted at the end."""
    base = tmp_path / f"img-{uuid.uuid4().hex[:8]}"
    base.mkdir()
    yield base
    from pocketkube.kubelet.images.overlay_mount import unmount

    with open("/proc/self/mountinfo") as f:
        targets = [line.split(" ")[4] for line in f if line.split(" ")[4].startswith(str(base))]
    for target in reversed(targets):
        unmount(target)


@pytest.fixture
def store(workdir: Path) -> ImageStore:
    return ImageStore(str(workdir / "images"))


async def test_pull_by_tag_then_by_digest(local_registry: LocalRegistry, store: ImageStore, workdir: Path) -> None:
    built = build_busybox_image(workdir / "bb.tar", ref="busybox:1", cmd=["sleep", "3600"],
                                env=["PATH=/bin", "GREETING=hi"], working_dir="/tmp", user="65534",
                                exposed_ports=["8080/tcp"])
    local_registry.push(built.path, "library/busybox:1")
    ref = f"{local_registry.host}/library/busybox:1"

    started = time.perf_counter()
    first, second = await asyncio.gather(store.pull(ref), store.pull(ref))  # one shared pull
    elapsed = time.perf_counter() - started
    print(f"pull of a {built.size // 1024} KiB image: {elapsed * 1000:.0f} ms")

    assert first == second
    assert first.id == built.config_digest
    assert first.references == (ref,)
    assert first.layers == tuple(built.diff_ids)
    assert first.manifest_digest == built.manifest_digest
    assert first.repo_digests == (f"{local_registry.host}/library/busybox@{built.manifest_digest}",)
    assert first.config.cmd == ("sleep", "3600")
    assert first.config.env_dict() == {"PATH": "/bin", "GREETING": "hi"}
    assert (first.config.working_dir, first.config.user) == ("/tmp", "65534")
    assert first.config.exposed_ports == ("8080/tcp",)
    layer = Path(store.layer_dir(built.diff_ids[0]))
    assert os.readlink(layer / "bin" / "sh") == "busybox"
    assert stat.S_IMODE((layer / "tmp").stat().st_mode) == 0o1777
    assert os.listdir(store.ingest_dir) == []

    by_digest = f"{local_registry.host}/library/busybox@{built.manifest_digest}"
    image = await store.pull(by_digest)
    assert image.id == built.config_digest
    assert set(image.references) == {ref, by_digest}
    assert store.get(by_digest) == image
    assert store.get(built.config_digest) == image
    # A reopened store reads the same index.
    assert ImageStore(store.root).get(ref) == image


async def test_docker_media_types(local_registry: LocalRegistry, store: ImageStore, workdir: Path) -> None:
    built = build_busybox_image(workdir / "bb-docker.tar", ref="busybox:d", fmt="docker")
    local_registry.push(built.path, "team/app:v2s2", fmt="docker")
    image = await store.pull(f"{local_registry.host}/team/app:v2s2")
    assert image.id == built.config_digest
    assert image.layers == tuple(built.diff_ids)


async def test_manifest_list_resolves_to_linux_amd64(local_registry: LocalRegistry, store: ImageStore,
                                                     workdir: Path) -> None:
    built = build_busybox_image(workdir / "multi.tar", ref="busybox:multi",
                                platforms=("linux/arm64", "linux/amd64", "linux/s390x"))
    local_registry.push(built.path, "library/multi:1", all_platforms=True)
    amd64 = ImageStore(str(workdir / "amd64"), platform=("linux", "amd64"))
    image = await amd64.pull(f"{local_registry.host}/library/multi:1")
    assert image.id == built.platform_config_digests["linux/amd64"]
    assert image.config.architecture == "amd64"
    assert image.repo_digests == (f"{local_registry.host}/library/multi@{built.index_digest}",)
    assert (Path(amd64.layer_dir(image.layers[0])) / "etc" / "arch").read_text() == "amd64\n"

    riscv = ImageStore(str(workdir / "riscv"), platform=("linux", "riscv64"))
    with pytest.raises(ImagePullError, match="no matching manifest for linux/riscv64"):
        await riscv.pull(f"{local_registry.host}/library/multi:1")


async def test_unknown_image_fails_with_the_registry_words(local_registry: LocalRegistry, store: ImageStore) -> None:
    ref = f"{local_registry.host}/nope:1"
    with pytest.raises(ImagePullError) as err:
        await store.pull(ref)
    assert str(err.value) == f'failed to pull image "{ref}": manifest unknown'
    assert (err.value.code, err.value.http_status, err.value.reason) == ("MANIFEST_UNKNOWN", 404, "ErrImagePull")

    port = local_registry.host.rsplit(":", 1)[1]
    stop_registry(local_registry)
    with pytest.raises(ImagePullError, match=f'failed to pull image "127.0.0.1:{port}/x:1": 127.0.0.1:{port}: '):
        await store.pull(f"127.0.0.1:{port}/x:1")


@pytest.mark.parametrize("scheme", ["bearer", "basic"])
async def test_auth_through_a_stub(local_registry: LocalRegistry, store: ImageStore, workdir: Path,
                                   scheme: str) -> None:
    built = build_busybox_image(workdir / "bb.tar", ref="private:1")
    local_registry.push(built.path, "team/private:1")
    proxy = AuthProxy(local_registry.url, username="alice", password="s3cret", scheme=scheme)  # type: ignore[arg-type]
    host = await proxy.start()
    try:
        ref = f"{host}/team/private:1"
        with pytest.raises(ImagePullError) as err:
            await store.pull(ref)
        assert str(err.value) == f'failed to pull image "{ref}": unauthorized: authentication required'
        with pytest.raises(ImagePullError, match="unauthorized: authentication required"):
            await store.pull(ref, credentials={host: ("alice", "wrong")})

        auth = base64.b64encode(b"alice:s3cret").decode()
        creds = credentials_from_dockerconfigjson(json.dumps({"auths": {f"http://{host}": {"auth": auth}}}).encode())
        image = await store.pull(ref, credentials=creds)
        assert image.id == built.config_digest
        if scheme == "bearer":
            assert proxy.token_requests[-1] == {"service": "stub-registry", "scope": "repository:team/private:pull"}
    finally:
        await proxy.stop()


async def test_pull_policies(local_registry: LocalRegistry, store: ImageStore, workdir: Path) -> None:
    built = build_busybox_image(workdir / "bb.tar", ref="busybox:p")
    local_registry.push(built.path, "library/pol:1")
    ref = f"{local_registry.host}/library/pol:1"
    with pytest.raises(ImageNeverPullError, match="is not present with pull policy of Never"):
        await store.pull_if_needed(ref, "Never")
    image = await store.pull_if_needed(ref, "IfNotPresent")
    stop_registry(local_registry)  # from here on only the local store can answer
    assert await store.pull_if_needed(ref, "IfNotPresent") == image
    assert await store.pull_if_needed(ref, "Never") == image
    with pytest.raises(ImagePullError):
        await store.pull_if_needed(ref, "Always")


async def test_import_oci_and_docker_archives(store: ImageStore, workdir: Path) -> None:
    oci = build_busybox_image(workdir / "oci.tar", ref="example.com/tools/bb:oci", cmd=["echo", "oci"])
    docker = build_busybox_image(workdir / "docker.tar", ref="bb:docker", fmt="docker", cmd=["echo", "docker"])
    assert await store.import_archive(oci.path) == ["example.com/tools/bb:oci"]
    assert await store.import_archive(docker.path) == ["docker.io/library/bb:docker"]
    assert store.get("example.com/tools/bb:oci").config.cmd == ("echo", "oci")  # type: ignore[union-attr]
    img = store.get("bb:docker")
    assert img is not None and img.id == docker.config_digest and img.config.cmd == ("echo", "docker")
    assert img.layers == tuple(docker.diff_ids)  # one busybox layer, unpacked once for both images
    assert sorted(os.listdir(store.layers_dir)) == [oci.diff_ids[0][7:]]


async def test_whiteouts_in_an_overlay_mount(store: ImageStore, workdir: Path) -> None:
    built = build_busybox_image(
        workdir / "wh.tar", ref="wh:1",
        extra_files={"etc/hello": "hello\n", "etc/keep": "keep\n", "opt/data/a": "a", "opt/data/b": "b"},
        extra_layers=[{"etc/hello": None, "opt/data/.wh..wh..opq": b"", "opt/data/c": "c"}])
    await store.import_archive(built.path)
    top = Path(store.layer_dir(built.diff_ids[1]))
    st = os.lstat(top / "etc" / "hello")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(top / "opt" / "data", "trusted.overlay.opaque") == b"y"
    assert not (top / "opt" / "data" / ".wh..wh..opq").exists()

    container = workdir / "containers" / "c1"
    started = time.perf_counter()
    rootfs = Path(await store.mount_rootfs("wh:1", str(container)))
    print(f"overlay mount: {(time.perf_counter() - started) * 1000:.1f} ms")
    try:
        assert rootfs == container / "rootfs" and is_mountpoint(str(rootfs))
        assert await store.mount_rootfs("wh:1", str(container)) == str(rootfs)  # idempotent
        assert not (rootfs / "etc" / "hello").exists()
        assert (rootfs / "etc" / "keep").read_text() == "keep\n"
        assert sorted(os.listdir(rootfs / "opt" / "data")) == ["c"]
        assert (rootfs / "bin" / "busybox").stat().st_size > 0
        (rootfs / "newfile").write_text("x")
        assert set(built.diff_ids) <= {"sha256:" + n for n in layers_in_use()}
    finally:
        started = time.perf_counter()
        await store.unmount(str(container))
        print(f"overlay unmount: {(time.perf_counter() - started) * 1000:.1f} ms")
    assert not is_mountpoint(str(rootfs))
    assert (container / "upper" / "newfile").read_text() == "x"
    await store.unmount(str(container))  # a second unmount is a no-op


async def test_remove_and_gc(store: ImageStore, workdir: Path) -> None:
    one = build_busybox_image(workdir / "one.tar", ref="gc:one", extra_layers=[{"one": "1"}])
    two = build_busybox_image(workdir / "two.tar", ref="gc:two", extra_layers=[{"two": "2"}])
    await store.import_archive(one.path)
    await store.import_archive(two.path)
    base, only_one, only_two = one.diff_ids[0], one.diff_ids[1], two.diff_ids[1]
    assert sorted(os.listdir(store.layers_dir)) == sorted(d[7:] for d in (base, only_one, only_two))

    await store.remove("gc:one")
    assert store.get("gc:one") is None
    assert sorted(os.listdir(store.layers_dir)) == sorted(d[7:] for d in (base, only_two))
    assert one.config_digest[7:] not in os.listdir(store.blobs_dir)
    with pytest.raises(ImageNotFoundError):
        await store.remove("gc:one")

    # A mounted image's layers survive its removal until the overlay is gone.
    container = workdir / "c2"
    await store.mount_rootfs("gc:two", str(container))
    try:
        await store.remove(two.config_digest)
        assert store.list() == []
        assert sorted(os.listdir(store.layers_dir)) == sorted(d[7:] for d in (base, only_two))
    finally:
        await store.unmount(str(container))
    result = await store.gc()
    assert result.layers_removed == 2
    assert os.listdir(store.layers_dir) == [] and os.listdir(store.blobs_dir) == []


async def test_gc_ignores_the_same_layer_mounted_by_another_store(store: ImageStore, workdir: Path) -> None:
    """Two agents on one machine unpack the same layer digest: one's mount must not pin the other's copy."""
    built = build_busybox_image(workdir / "shared.tar", ref="gc:shared")
    other = ImageStore(str(workdir / "other-node-images"))
    await store.import_archive(built.path)
    await other.import_archive(built.path)
    container = workdir / "other-c"
    await other.mount_rootfs("gc:shared", str(container))
    try:
        assert {d[7:] for d in built.diff_ids} <= layers_in_use(other.layers_dir)
        assert not layers_in_use(store.layers_dir) & {d[7:] for d in built.diff_ids}
        await store.remove("gc:shared")
        assert os.listdir(store.layers_dir) == []  # GC'd although the other store's copy is mounted
        assert sorted(os.listdir(other.layers_dir)) == sorted(d[7:] for d in built.diff_ids)
    finally:
        await other.unmount(str(container))


async def test_import_names_retag_and_untagged(store: ImageStore, workdir: Path) -> None:
    bare = build_busybox_image(workdir / "bare.tar", ref="1.0", cmd=["echo", "bare"])
    assert await store.import_archive(bare.path, base_name="example.com/app") == ["example.com/app:1.0"]

    first = build_busybox_image(workdir / "first.tar", ref="x:1", extra_layers=[{"first": "1"}])
    second = build_busybox_image(workdir / "second.tar", ref="x:1", extra_layers=[{"second": "2"}])
    await store.import_archive(first.path)
    await store.import_archive(second.path)  # x:1 moves; the unnamed first image is collected
    assert store.get("x:1").id == second.config_digest  # type: ignore[union-attr]
    assert store.get(first.config_digest) is None
    assert first.diff_ids[1][7:] not in os.listdir(store.layers_dir)

    untagged = workdir / "untagged.tar"
    build_busybox_image(untagged, ref="x:y", fmt="docker", cmd=["true"])
    _rewrite_docker_repo_tags(untagged, None)
    imported = await store.import_archive(str(untagged))
    assert len(imported) == 1 and imported[0].startswith("sha256:")
    image = store.get(imported[0])
    assert image is not None and image.references == () and image.config.cmd == ("true",)
    await store.remove(imported[0])
    assert store.get(imported[0]) is None


def _rewrite_docker_repo_tags(path: Path, tags: list[str] | None) -> None:
    import io
    import tarfile

    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(path, "w") as tar:
        for member, data in members:
            if member.name == "manifest.json" and data is not None:
                doc = json.loads(data)
                doc[0]["RepoTags"] = tags
                data = json.dumps(doc).encode()
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data) if data is not None else None)


async def test_shared_layer_is_fetched_and_unpacked_once(local_registry: LocalRegistry, store: ImageStore,
                                                         workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one = build_busybox_image(workdir / "one.tar", ref="s:one", extra_layers=[{"one": "1"}])
    two = build_busybox_image(workdir / "two.tar", ref="s:two", extra_layers=[{"two": "2"}])
    local_registry.push(one.path, "shared/one:1")
    local_registry.push(two.path, "shared/two:1")
    unpacked: list[str] = []
    real_unpack = store._unpack

    def counting_unpack(path: str, diff_id: str) -> None:
        unpacked.append(diff_id)
        real_unpack(path, diff_id)

    monkeypatch.setattr(store, "_unpack", counting_unpack)
    await asyncio.gather(store.pull(f"{local_registry.host}/shared/one:1"),
                         store.pull(f"{local_registry.host}/shared/two:1"))
    assert sorted(unpacked) == sorted({*one.diff_ids, *two.diff_ids})
    assert len(unpacked) == 3


async def test_many_layers_mount_through_relative_lowerdirs(store: ImageStore, workdir: Path) -> None:
    layers = [{f"layer/{i:02d}": str(i)} for i in range(45)]  # lowerdir= of absolute paths > one page
    built = build_busybox_image(workdir / "tall.tar", ref="tall:1", extra_layers=layers)
    await store.import_archive(built.path)
    assert len(":".join(store.layer_dir(d) for d in built.diff_ids)) > 4096
    container = workdir / "tall"
    rootfs = Path(await store.mount_rootfs("tall:1", str(container)))
    try:
        assert sorted(os.listdir(rootfs / "layer")) == [f"{i:02d}" for i in range(45)]
        assert (rootfs / "bin" / "busybox").exists()
        assert {d[7:] for d in built.diff_ids} <= layers_in_use()
    finally:
        await store.unmount(str(container))
    assert not is_mountpoint(str(rootfs))


async def test_corrupt_blob_is_rejected(local_registry: LocalRegistry, store: ImageStore, workdir: Path) -> None:
    built = build_busybox_image(workdir / "bb.tar", ref="bad:1", extra_layers=[{"x": "x"}])
    local_registry.push(built.path, "library/bad:1")
    _corrupt_top_layer(local_registry, built.manifest_digest)
    with pytest.raises(ImagePullError, match="digest mismatch for blob"):
        await store.pull(f"{local_registry.host}/library/bad:1")
    assert store.list() == []
    assert os.listdir(store.ingest_dir) == []
    assert not any(n.startswith(".tmp-") for n in os.listdir(store.layers_dir))


def _corrupt_top_layer(registry: LocalRegistry, manifest_digest: str) -> None:
    manifest = json.loads(Path(_registry_blob(registry, manifest_digest)).read_bytes())
    layer = Path(_registry_blob(registry, manifest["layers"][-1]["digest"]))
    layer.write_bytes(layer.read_bytes()[:-1] + b"!")  # same size, wrong bytes


def _registry_blob(registry: LocalRegistry, digest: str) -> str:
    hexd = digest.removeprefix("sha256:")
    return os.path.join(registry.data_dir, "data", "docker", "registry", "v2", "blobs", "sha256", hexd[:2], hexd, "data")
