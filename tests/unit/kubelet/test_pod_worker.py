"""Pod worker semantics over a fake runtime: init order, restarts with backoff, phases, deletion."""

from __future__ import annotations

from typing import Any

from pocketkube.kubelet.pod_files import DNSSettings
from pocketkube.kubelet.pod_worker import PodWorker
from pocketkube.kubelet.records import RecordStore
from tests.unit.kubelet.fake_runtime import FakeRuntime


async def nothing(kind: str, name: str) -> dict[str, Any] | None:
    return None


class Clock:
    t = 1000.0

    def __call__(self) -> float:
        return self.t


def pod(containers: list[dict[str, Any]], *, policy: str = "Always", init: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "uid-1"},
            "spec": {"restartPolicy": policy, "containers": containers, "initContainers": init or []},
            "status": {"phase": "Pending"}}


def make(tmp_path: Any, rt: FakeRuntime) -> PodWorker:
    return PodWorker(runtime=rt, records=RecordStore(str(tmp_path / "records")), lookup=nothing,
                     pod_dir=str(tmp_path / "pod"), dns=DNSSettings(), clock=Clock())


async def test_running_pod(tmp_path: Any) -> None:
    rt = FakeRuntime()
    w = make(tmp_path, rt)
    status = await w.sync(pod([{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]))
    assert status["phase"] == "Running" and status["podIP"] == "10.42.0.7"
    assert [cs["state"].keys() for cs in status["containerStatuses"]] == [{"running": 0}.keys()] * 2
    conds = {c["type"]: c["status"] for c in status["conditions"]}
    assert conds["Ready"] == "True" and conds["Initialized"] == "True"


async def test_crash_restarts_with_backoff(tmp_path: Any) -> None:
    rt = FakeRuntime()
    rt.exits["a"] = [1, 1, 1, None]
    w = make(tmp_path, rt)
    p = pod([{"name": "a", "image": "x"}])
    await w.sync(p)  # start 0 (exits 1)
    await w.sync(p)  # the first restart is immediate (exits 1)
    assert rt.started == [("a", 0), ("a", 1)]
    s = await w.sync(p)  # now in back-off
    cs = s["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff" and cs["restartCount"] == 1
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert "back-off 10s restarting failed container=a" in cs["state"]["waiting"]["message"]


async def test_init_containers_then_app_and_never_policy(tmp_path: Any) -> None:
    rt = FakeRuntime()
    rt.exits["i1"] = [0]
    rt.exits["app"] = [3]
    w = make(tmp_path, rt)
    p = pod([{"name": "app", "image": "x"}], policy="Never", init=[{"name": "i1", "image": "x"}])
    await w.sync(p)
    s = await w.sync(p)
    assert [n for n, _ in rt.started] == ["i1", "app"]
    assert s["phase"] == "Failed"
    assert s["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert s["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


async def test_succeeded_with_on_failure(tmp_path: Any) -> None:
    rt = FakeRuntime()
    rt.exits["a"] = [0]
    w = make(tmp_path, rt)
    s = await w.sync(pod([{"name": "a", "image": "x"}], policy="OnFailure"))
    s = await w.sync(pod([{"name": "a", "image": "x"}], policy="OnFailure"))
    assert s["phase"] == "Succeeded" and rt.started == [("a", 0)]


async def test_image_pull_backoff(tmp_path: Any) -> None:
    rt = FakeRuntime()
    rt.bad_images.add("nope:1")
    w = make(tmp_path, rt)
    p = pod([{"name": "a", "image": "nope:1"}])
    s = await w.sync(p)
    assert s["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"
    s = await w.sync(p)
    waiting = s["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ImagePullBackOff" and "nope:1" in waiting["message"]
    assert s["phase"] == "Pending"


async def test_missing_configmap_is_a_config_error(tmp_path: Any) -> None:
    rt = FakeRuntime()
    w = make(tmp_path, rt)
    p = pod([{"name": "a", "image": "x", "envFrom": [{"configMapRef": {"name": "gone"}}]}])
    s = await w.sync(p)
    w0 = s["containerStatuses"][0]["state"]["waiting"]
    assert w0["reason"] == "CreateContainerConfigError" and 'configmap "gone" not found' in w0["message"]


async def test_terminate_stops_everything(tmp_path: Any) -> None:
    rt = FakeRuntime()
    w = make(tmp_path, rt)
    p = pod([{"name": "a", "image": "x"}])
    await w.sync(p)
    await w.terminate(p, "uid-1", 1)
    assert rt.stopped == ["a"] and not rt.sandboxes


async def test_app_containers_start_together_init_containers_in_order(tmp_path: Any) -> None:
    """App containers are independent once init is done: started concurrently; init ones one by one."""
    import asyncio

    class SlowRuntime(FakeRuntime):
        def __init__(self) -> None:
            super().__init__()
            self.running = 0
            self.most = 0

        async def start_container(self, *args: Any, **kwargs: Any) -> Any:
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                await asyncio.sleep(0.05)
                return await super().start_container(*args, **kwargs)
            finally:
                self.running -= 1

    rt = SlowRuntime()
    rt.exits["i1"] = [0]
    rt.exits["i2"] = [0]
    w = make(tmp_path, rt)
    p = pod([{"name": n, "image": "x"} for n in ("a", "b", "c")],
            init=[{"name": "i1", "image": "x"}, {"name": "i2", "image": "x"}])
    for _ in range(3):  # one init container per sync, then the app containers
        status = await w.sync(p)
    assert rt.started[:2] == [("i1", 0), ("i2", 0)]
    assert sorted(rt.started[2:]) == [("a", 0), ("b", 0), ("c", 0)]
    assert rt.most == 3
    assert status["phase"] == "Running"
    assert [cs["name"] for cs in status["containerStatuses"]] == ["a", "b", "c"]
