"""Workload controllers against a real server and hollow nodes: DaemonSet, StatefulSet, Job, TTL.

A `pocketkube agent --hollow --count 3` subprocess provides three nodes that move bound pods to
Running/Ready (and to Succeeded/Failed after the hollow-complete-after/fail-after annotations).
The server's scheduler binds the pods: DaemonSet pods through the matchFields node affinity the
controller pins them with. Every template selects the three nodes by a label the fixture puts on
them, so no pod lands on a node another test left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from pocketkube.api import meta
from pocketkube.client.rest import APIClient, ClientConfig
from tests.conftest import REPO, ServerProcess, run_kubectl

Obj = dict[str, Any]
NODE_LABEL = "pocketkube.io/workloads-test"


@pytest.fixture(scope="module")
def hollow_nodes(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    prefix = f"wl{uuid.uuid4().hex[:4]}-"
    with open(os.path.join(server.data_dir, "token")) as f:
        token = f.read().strip()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pocketkube", "agent", "--hollow", "--count", "3", "--name-prefix", prefix,
         "--server", server.url, "--token", token, "--data-dir", str(tmp_path_factory.mktemp("hollow"))],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    names = [f"{prefix}{i}" for i in range(3)]
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            out = run_kubectl(server, "get", "nodes", "-o", "name").stdout
            if all(f"node/{n}" in out for n in names):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("hollow nodes did not register")
        # pods select these nodes by this label: hollow nodes other tests left behind stay out
        run_kubectl(server, "label", "nodes", *names, f"{NODE_LABEL}=yes")
        yield names
    finally:
        proc.terminate()
        proc.wait(10)
        run_kubectl(server, "delete", "nodes", *names, "--wait=false", check=False)


@contextlib.asynccontextmanager
async def api(server: ServerProcess) -> AsyncIterator[APIClient]:
    client = APIClient(ClientConfig.from_kubeconfig(server.kubeconfig))
    try:
        yield client
    finally:
        await client.close()


async def wait_for(fn: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await fn()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.15)


def kubectl_apply(server: ServerProcess, ns: str, doc: str) -> None:
    run_kubectl(server, "-n", ns, "apply", "-f", "-", input=doc)


async def test_daemonset_runs_one_pod_per_node_and_rolls(server: ServerProcess, namespace: str,
                                                         hollow_nodes: list[str]) -> None:
    doc = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {pocketkube.io/workloads-test: "yes"}
      containers: [{name: c, image: %s}]
"""
    kubectl_apply(server, namespace, doc % "busybox:1")
    async with api(server) as client:
        ds_client = client.resource("apps", "v1", "daemonsets")

        async def rolled(image: str) -> bool:
            status = (await ds_client.get("agent", namespace)).get("status") or {}
            pods = (await client.core("pods").list(namespace)).get("items") or []
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            return (status.get("numberReady") == status.get("updatedNumberScheduled") == len(hollow_nodes)
                    and status.get("desiredNumberScheduled") == len(hollow_nodes)
                    and sorted(p["spec"].get("nodeName", "") for p in live) == sorted(hollow_nodes)
                    and all(p["spec"]["containers"][0]["image"] == image for p in live))

        await wait_for(lambda: rolled("busybox:1"))
        kubectl_apply(server, namespace, doc % "busybox:2")
        await wait_for(lambda: rolled("busybox:2"))
    out = run_kubectl(server, "-n", namespace, "rollout", "status", "ds/agent", "--timeout=10s").stdout
    assert "successfully rolled out" in out
    revs = run_kubectl(server, "-n", namespace, "get", "controllerrevisions", "-o", "name").stdout.split()
    assert len(revs) == 2


async def test_statefulset_creates_pods_in_order_with_stable_names(server: ServerProcess, namespace: str,
                                                                   hollow_nodes: list[str]) -> None:
    kubectl_apply(server, namespace, """
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {clusterIP: None, selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {pocketkube.io/workloads-test: "yes"}
      containers: [{name: c, image: nginx}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
""")
    async with api(server) as client:
        sts = client.resource("apps", "v1", "statefulsets")

        async def ready() -> bool:
            return ((await sts.get("web", namespace)).get("status") or {}).get("readyReplicas") == 3
        await wait_for(ready)
        pods = {p["metadata"]["name"]: p for p in (await client.core("pods").list(namespace)).get("items") or []}
        events = (await client.core("events").list(namespace)).get("items") or []
    assert sorted(pods) == ["web-0", "web-1", "web-2"]
    for i in (1, 2):
        prev_ready = next(c for c in pods[f"web-{i - 1}"]["status"]["conditions"] if c["type"] == "Ready")
        created = meta.parse_time(pods[f"web-{i}"]["metadata"]["creationTimestamp"])
        assert created is not None and created >= meta.parse_time(prev_ready["lastTransitionTime"])  # type: ignore[operator]
    for name, pod in pods.items():
        assert pod["spec"]["hostname"] == name and pod["spec"]["subdomain"] == "web"
        claim = next(v for v in pod["spec"]["volumes"] if v["name"] == "data")
        assert claim["persistentVolumeClaim"]["claimName"] == f"data-{name}"
    creates = [e["message"] for e in sorted(events, key=lambda e: int(e["metadata"]["resourceVersion"]))
               if e["reason"] == "SuccessfulCreate" and "create Pod" in e["message"]]
    assert [m.split()[2] for m in creates] == ["web-0", "web-1", "web-2"]
    claims = run_kubectl(server, "-n", namespace, "get", "pvc", "-o", "name").stdout.split()
    assert claims == ["persistentvolumeclaim/data-web-0", "persistentvolumeclaim/data-web-1",
                      "persistentvolumeclaim/data-web-2"]


JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: %(name)s}
spec:
  completions: %(completions)d
  parallelism: 2
  backoffLimit: %(backoff)d
  %(extra)s
  template:
    metadata: {annotations: {%(annotation)s: "%(after)s"}}
    spec:
      restartPolicy: Never
      nodeSelector: {pocketkube.io/workloads-test: "yes"}
      containers: [{name: c, image: busybox}]
"""


async def test_job_completes_and_kubectl_shows_completions(server: ServerProcess, namespace: str,
                                                          hollow_nodes: list[str]) -> None:
    kubectl_apply(server, namespace, JOB % {"name": "pi", "completions": 3, "backoff": 6, "extra": "",
                                            "annotation": "pocketkube.io/hollow-complete-after", "after": "0.5s"})
    async with api(server) as client:
        jobs = client.resource("batch", "v1", "jobs")

        async def complete() -> Obj | None:
            job = await jobs.get("pi", namespace)
            conds = {c["type"] for c in (job.get("status") or {}).get("conditions") or [] if c["status"] == "True"}
            return job if "Complete" in conds else None
        job = await wait_for(complete)
        pods = (await client.core("pods").list(namespace, label_selector="batch.kubernetes.io/job-name=pi")).get("items")
    status = job["status"]
    assert status["succeeded"] == 3 and status.get("failed", 0) == 0 and status["completionTime"]
    assert [c["type"] for c in status["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert pods and not any(p["metadata"].get("finalizers") for p in pods)
    row = run_kubectl(server, "-n", namespace, "get", "jobs").stdout.splitlines()[1].split()
    assert row[:3] == ["pi", "Complete", "3/3"]


async def test_job_backoff_limit_then_ttl_deletes_it(server: ServerProcess, namespace: str,
                                                    hollow_nodes: list[str]) -> None:
    kubectl_apply(server, namespace, JOB % {"name": "bad", "completions": 4, "backoff": 1,
                                            "extra": "ttlSecondsAfterFinished: 2",
                                            "annotation": "pocketkube.io/hollow-fail-after", "after": "0.3s"})
    async with api(server) as client:
        jobs = client.resource("batch", "v1", "jobs")

        async def failed() -> Obj | None:
            job = await jobs.get("bad", namespace)
            conds = {c["type"]: c for c in (job.get("status") or {}).get("conditions") or []}
            return job if "Failed" in conds else None
        job = await wait_for(failed)
        assert job["status"]["failed"] >= 2
        assert job["status"]["conditions"][-1]["reason"] == "BackoffLimitExceeded"

        async def gone() -> bool:
            return "bad" not in [j["metadata"]["name"] for j in (await jobs.list(namespace)).get("items") or []]
        await wait_for(gone, timeout=15)
    assert json.loads(run_kubectl(server, "-n", namespace, "get", "jobs", "-o", "json").stdout)["items"] == []


async def test_cronjob_starts_jobs_and_records_status(server: ServerProcess, namespace: str,
                                                     hollow_nodes: list[str]) -> None:
    # "@every 1s" fires without waiting for a minute boundary; job names are per minute, so runs
    # within one minute share a name and start once.
    kubectl_apply(server, namespace, """
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "@every 1s"
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        metadata: {annotations: {pocketkube.io/hollow-complete-after: "0.3s"}}
        spec:
          restartPolicy: Never
          nodeSelector: {pocketkube.io/workloads-test: "yes"}
          containers: [{name: c, image: busybox}]
""")
    async with api(server) as client:
        cronjobs = client.resource("batch", "v1", "cronjobs")

        async def succeeded() -> Obj | None:
            cj = await cronjobs.get("tick", namespace)
            return cj if (cj.get("status") or {}).get("lastSuccessfulTime") else None
        cj = await wait_for(succeeded)
        jobs = (await client.resource("batch", "v1", "jobs").list(namespace)).get("items") or []
    assert cj["status"]["lastScheduleTime"]
    assert 1 <= len(jobs) <= 2  # at most a minute boundary apart (and history keeps one success)
    for job in jobs:
        assert job["metadata"]["name"].startswith("tick-")
        assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
        assert job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"].endswith("Z")
    row = run_kubectl(server, "-n", namespace, "get", "cronjobs").stdout.splitlines()[1].split()
    assert row[:4] == ["tick", "@every", "1s", "<none>"]
    run_kubectl(server, "-n", namespace, "patch", "cronjob", "tick", "--type=merge", "-p", '{"spec":{"suspend":true}}')
