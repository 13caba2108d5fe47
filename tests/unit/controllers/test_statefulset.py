"""StatefulSet sync against the in-memory API: ordered creation and removal, Parallel, stable
identity and claims, RollingUpdate highest ordinal first with a partition, OnDelete, status."""

from __future__ import annotations

from typing import Any

from pocketkube.controllers.revisions import HASH_LABEL
from pocketkube.controllers.statefulset import StatefulSetController
from tests.unit.controllers.fake_api import FakeAPI

Obj = dict[str, Any]


def make(**spec: Any) -> tuple[FakeAPI, StatefulSetController]:
    api = FakeAPI()
    ctl = StatefulSetController(api)
    api.attach(ctl)
    api.put("statefulsets", {"apiVersion": "apps/v1", "kind": "StatefulSet",
                             "metadata": {"name": "web", "namespace": "ns"},
                             "spec": {"replicas": 3, "serviceName": "web",
                                      "selector": {"matchLabels": {"app": "web"}},
                                      "template": {"metadata": {"labels": {"app": "web"}},
                                                   "spec": {"containers": [{"name": "c", "image": "v1"}]}},
                                      "podManagementPolicy": "OrderedReady",
                                      "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                                      "revisionHistoryLimit": 10, **spec}})
    return api, ctl


def names(api: FakeAPI) -> list[str]:
    return [p["metadata"]["name"] for p in api.items("pods")]


def set_spec(api: FakeAPI, **changes: Any) -> None:
    api.get("statefulsets", "ns/web")["spec"].update(changes)


def set_image(api: FakeAPI, image: str) -> None:
    api.get("statefulsets", "ns/web")["spec"]["template"]["spec"]["containers"][0]["image"] = image


async def settle(api: FakeAPI, ctl: StatefulSetController, rounds: int = 12) -> None:
    for _ in range(rounds):
        await ctl.sync("ns/web")
        for pod in api.items("pods"):
            if (pod.get("status") or {}).get("phase") != "Running":
                api.set_pod_phase(f"ns/{pod['metadata']['name']}", "Running")


async def test_ordered_ready_creates_one_at_a_time() -> None:
    api, ctl = make()
    await ctl.sync("ns/web")
    await ctl.sync("ns/web")
    assert names(api) == ["web-0"]  # web-1 waits for web-0 to be Running and Ready
    api.set_pod_phase("ns/web-0", "Running", ready=False)
    await ctl.sync("ns/web")
    assert names(api) == ["web-0"]
    api.set_pod_phase("ns/web-0", "Running")
    await ctl.sync("ns/web")
    assert names(api) == ["web-0", "web-1"]
    await settle(api, ctl)
    assert names(api) == ["web-0", "web-1", "web-2"]
    status = api.get("statefulsets", "ns/web")["status"]
    assert status["replicas"] == status["readyReplicas"] == status["availableReplicas"] == 3
    assert status["currentRevision"] == status["updateRevision"] == api.items("controllerrevisions")[0]["metadata"]["name"]
    assert status["currentReplicas"] == status["updatedReplicas"] == 3


async def test_identity_and_claims() -> None:
    api, ctl = make(volumeClaimTemplates=[{"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}])
    await settle(api, ctl)
    pod = api.get("pods", "ns/web-1")
    assert pod["spec"]["hostname"] == "web-1" and pod["spec"]["subdomain"] == "web"
    labels = pod["metadata"]["labels"]
    assert labels["statefulset.kubernetes.io/pod-name"] == "web-1" and labels["apps.kubernetes.io/pod-index"] == "1"
    assert labels[HASH_LABEL].startswith("web-")
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}} in pod["spec"]["volumes"]
    claims = [c["metadata"]["name"] for c in api.items("persistentvolumeclaims")]
    assert claims == ["data-web-0", "data-web-1", "data-web-2"]
    assert api.get("persistentvolumeclaims", "ns/data-web-0")["metadata"]["labels"] == {"app": "web"}
    assert "ownerReferences" not in api.get("persistentvolumeclaims", "ns/data-web-0")["metadata"]  # Retain


async def test_claim_retention_policy_delete() -> None:
    api, ctl = make(replicas=2, persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete", "whenScaled": "Delete"},
                    volumeClaimTemplates=[{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}])
    await settle(api, ctl)
    refs = api.get("persistentvolumeclaims", "ns/data-web-0")["metadata"]["ownerReferences"]
    assert [(r["kind"], r["name"]) for r in refs] == [("StatefulSet", "web")]
    uid = api.get("pods", "ns/web-1")["metadata"]["uid"]
    set_spec(api, replicas=1)
    await ctl.sync("ns/web")
    refs = api.get("persistentvolumeclaims", "ns/data-web-1")["metadata"]["ownerReferences"]
    assert [(r["kind"], r["name"], r["uid"]) for r in refs] == [("Pod", "web-1", uid)]
    assert "ownerReferences" in api.get("persistentvolumeclaims", "ns/data-web-0")["metadata"]


async def test_scale_down_removes_highest_ordinal_first() -> None:
    api, ctl = make(replicas=4)
    await settle(api, ctl)
    set_spec(api, replicas=1)
    await ctl.sync("ns/web")
    assert names(api) == ["web-0", "web-1", "web-2"]
    await ctl.sync("ns/web")
    assert names(api) == ["web-0", "web-1"]
    await ctl.sync("ns/web")
    assert names(api) == ["web-0"]


async def test_parallel_creates_and_deletes_at_once() -> None:
    api, ctl = make(podManagementPolicy="Parallel")
    await ctl.sync("ns/web")
    assert names(api) == ["web-0", "web-1", "web-2"]
    set_spec(api, replicas=1)
    await ctl.sync("ns/web")
    assert names(api) == ["web-0"]


async def test_rolling_update_highest_first_down_to_partition() -> None:
    api, ctl = make()
    await settle(api, ctl)
    old_rev = api.get("statefulsets", "ns/web")["status"]["currentRevision"]
    set_spec(api, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}})
    set_image(api, "v2")
    await ctl.sync("ns/web")
    assert names(api) == ["web-0", "web-1"]  # web-2 went first
    await ctl.sync("ns/web")
    assert api.get("pods", "ns/web-2")["spec"]["containers"][0]["image"] == "v2"
    await ctl.sync("ns/web")
    assert names(api) == ["web-0", "web-1", "web-2"]  # waits for web-2 to be ready
    await settle(api, ctl)
    images = [p["spec"]["containers"][0]["image"] for p in api.items("pods")]
    assert images == ["v1", "v2", "v2"]  # web-0 is below the partition
    status = api.get("statefulsets", "ns/web")["status"]
    assert status["currentRevision"] == old_rev and status["updatedReplicas"] == 2 and status["currentReplicas"] == 1
    set_spec(api, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    await settle(api, ctl)
    status = api.get("statefulsets", "ns/web")["status"]
    assert status["currentRevision"] == status["updateRevision"] != old_rev
    assert status["currentReplicas"] == 3


async def test_on_delete_and_failed_pods() -> None:
    api, ctl = make(updateStrategy={"type": "OnDelete"})
    await settle(api, ctl)
    set_image(api, "v2")
    await settle(api, ctl)
    assert [p["spec"]["containers"][0]["image"] for p in api.items("pods")] == ["v1", "v1", "v1"]
    await api.remove("pods", "ns/web-1")
    await settle(api, ctl)
    assert [p["spec"]["containers"][0]["image"] for p in api.items("pods")] == ["v1", "v2", "v1"]
    api.set_pod_phase("ns/web-0", "Failed")
    uid = api.get("pods", "ns/web-0")["metadata"]["uid"]
    await settle(api, ctl)
    assert api.get("pods", "ns/web-0")["metadata"]["uid"] != uid
