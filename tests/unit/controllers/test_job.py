"""Job sync against the in-memory API: parallelism, counting through the tracking finalizer,
SuccessCriteriaMet then Complete, backoffLimit, activeDeadlineSeconds, Indexed, suspend."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pocketkube.controllers import job_util as ju
from pocketkube.controllers.job import JobController
from tests.unit.controllers.fake_api import FakeAPI

Obj = dict[str, Any]


def make(**spec: Any) -> tuple[FakeAPI, JobController]:
    api = FakeAPI()
    ctl = JobController(api, now=lambda: api.clock)
    api.attach(ctl)
    api.put("jobs", {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "ns"},
                     "spec": {"completions": 3, "parallelism": 2, "backoffLimit": 6, "completionMode": "NonIndexed",
                              "template": {"spec": {"restartPolicy": "Never",
                                                    "containers": [{"name": "c", "image": "busybox"}]}},
                              **spec}})
    return api, ctl


def pods(api: FakeAPI) -> list[Obj]:
    return api.items("pods")


def job(api: FakeAPI) -> Obj:
    return api.get("jobs", "ns/pi")


def conditions(api: FakeAPI) -> list[str]:
    return [c["type"] for c in job(api)["status"].get("conditions") or [] if c["status"] == "True"]


def finish(api: FakeAPI, phase: str, n: int = 1) -> None:
    for pod in [p for p in pods(api) if p["status"]["phase"] in ("Pending", "Running")][:n]:
        api.set_pod_phase(f"ns/{pod['metadata']['name']}", phase)


async def test_runs_parallelism_pods_with_labels_and_finalizer() -> None:
    api, ctl = make()
    await ctl.sync("ns/pi")
    assert len(pods(api)) == 2
    uid = job(api)["metadata"]["uid"]
    for pod in pods(api):
        md = pod["metadata"]
        assert md["finalizers"] == [ju.TRACKING_FINALIZER]
        assert md["labels"] == {"batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
                                "batch.kubernetes.io/job-name": "pi", "job-name": "pi"}
        assert md["generateName"] == "pi-" and md["ownerReferences"][0]["kind"] == "Job"
    status = job(api)["status"]
    assert status["active"] == 2 and status["startTime"] == "2026-01-01T12:00:00Z"


async def test_counts_through_uncounted_then_completes() -> None:
    api, ctl = make()
    await ctl.sync("ns/pi")
    finish(api, "Succeeded", 2)
    await ctl.sync("ns/pi")
    status = job(api)["status"]
    assert status["succeeded"] == 2 and status.get("uncountedTerminatedPods", {}) == {}
    assert all(not p["metadata"].get("finalizers") for p in pods(api) if p["status"]["phase"] == "Succeeded")
    assert status["active"] == 1 and len(pods(api)) == 3  # only one more is needed
    await ctl.sync("ns/pi")
    assert len(pods(api)) == 3 and job(api)["status"]["succeeded"] == 2  # no double counting
    api.clock += timedelta(seconds=30)
    finish(api, "Succeeded")
    await ctl.sync("ns/pi")
    status = job(api)["status"]
    assert status["succeeded"] == 3 and conditions(api) == ["SuccessCriteriaMet", "Complete"]
    assert status["completionTime"] == "2026-01-01T12:00:30Z" and not status.get("active")
    await ctl.sync("ns/pi")  # finished: nothing more happens
    assert len(pods(api)) == 3


async def test_work_queue_completes_when_one_succeeded_and_the_rest_stopped() -> None:
    api, ctl = make(completions=None, parallelism=2)
    await ctl.sync("ns/pi")
    finish(api, "Succeeded")
    await ctl.sync("ns/pi")
    assert conditions(api) == [] and len(pods(api)) == 2  # no new pods once one succeeded
    finish(api, "Succeeded")
    await ctl.sync("ns/pi")
    assert conditions(api) == ["SuccessCriteriaMet", "Complete"]
    assert job(api)["status"]["succeeded"] == 2


async def test_success_deletes_leftovers_before_complete() -> None:
    api, ctl = make(completions=2, parallelism=2)
    await ctl.sync("ns/pi")
    finish(api, "Succeeded")
    await ctl.sync("ns/pi")
    job(api)["spec"]["completions"] = 1  # (Indexed-style elastic change) leaves one pod over
    await ctl.sync("ns/pi")
    assert conditions(api) == ["SuccessCriteriaMet"]  # the leftover is terminating
    await ctl.sync("ns/pi")  # counts it (failed) and drops its finalizer: it goes
    await ctl.sync("ns/pi")
    assert conditions(api) == ["SuccessCriteriaMet", "Complete"]
    assert len(pods(api)) == 1 and job(api)["status"]["failed"] == 1


async def test_backoff_limit_fails_the_job_and_deletes_active_pods() -> None:
    api, ctl = make(backoffLimit=1, parallelism=3, completions=5)
    await ctl.sync("ns/pi")
    finish(api, "Failed")
    await ctl.sync("ns/pi")
    assert job(api)["status"]["failed"] == 1 and not conditions(api)
    assert len([p for p in pods(api) if p["status"]["phase"] == "Pending"]) == 2  # backing off
    api.clock += timedelta(seconds=9)
    await ctl.sync("ns/pi")
    assert len([p for p in pods(api) if p["status"]["phase"] == "Pending"]) == 2
    api.clock += timedelta(seconds=1)
    await ctl.sync("ns/pi")
    assert len([p for p in pods(api) if p["status"]["phase"] == "Pending"]) == 3  # replaced after 10 s
    finish(api, "Failed")
    await ctl.sync("ns/pi")
    assert "FailureTarget" in conditions(api)
    for _ in range(2):
        await ctl.sync("ns/pi")
    assert conditions(api) == ["FailureTarget", "Failed"]
    failed = next(c for c in job(api)["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert [p["status"]["phase"] for p in pods(api)] == ["Failed", "Failed"]  # active ones were deleted
    assert not any(p["metadata"].get("finalizers") for p in pods(api))


async def test_backoff_doubles_and_a_success_resets_it() -> None:
    api, ctl = make(completions=10, parallelism=1)
    await ctl.sync("ns/pi")
    for wait in (10, 20, 40):
        finish(api, "Failed")
        await ctl.sync("ns/pi")
        api.clock += timedelta(seconds=wait - 1)
        await ctl.sync("ns/pi")
        assert not [p for p in pods(api) if p["status"]["phase"] == "Pending"], wait
        api.clock += timedelta(seconds=1)
        await ctl.sync("ns/pi")
        assert len([p for p in pods(api) if p["status"]["phase"] == "Pending"]) == 1, wait
    finish(api, "Succeeded")
    await ctl.sync("ns/pi")
    assert len([p for p in pods(api) if p["status"]["phase"] == "Pending"]) == 1  # no wait after a success


async def test_active_deadline() -> None:
    api, ctl = make(activeDeadlineSeconds=10)
    await ctl.sync("ns/pi")
    api.clock += timedelta(seconds=11)
    for _ in range(3):
        await ctl.sync("ns/pi")
    assert conditions(api) == ["FailureTarget", "Failed"]
    assert job(api)["status"]["conditions"][-1]["reason"] == "DeadlineExceeded"
    assert pods(api) == []


async def test_indexed_completion() -> None:
    api, ctl = make(completionMode="Indexed", completions=3, parallelism=2)
    await ctl.sync("ns/pi")
    idx = sorted(ju.index_of(p) or 0 for p in pods(api))
    assert idx == [0, 1]
    pod0 = next(p for p in pods(api) if ju.index_of(p) == 0)
    assert pod0["metadata"]["generateName"] == "pi-0-" and pod0["spec"]["hostname"] == "pi-0"
    assert pod0["metadata"]["labels"][ju.INDEX_KEY] == "0"
    assert pod0["spec"]["containers"][0]["env"][0]["name"] == "JOB_COMPLETION_INDEX"
    api.set_pod_phase(f"ns/{pod0['metadata']['name']}", "Failed")
    await ctl.sync("ns/pi")
    api.clock += timedelta(seconds=10)
    await ctl.sync("ns/pi")
    active_idx = sorted(ju.index_of(p) or 0 for p in pods(api) if p["status"]["phase"] == "Pending")
    assert active_idx == [0, 1]  # index 0 retried
    for p in pods(api):
        if p["status"]["phase"] == "Pending":
            api.set_pod_phase(f"ns/{p['metadata']['name']}", "Succeeded")
    await ctl.sync("ns/pi")
    assert job(api)["status"]["completedIndexes"] == "0-1" and job(api)["status"]["succeeded"] == 2
    assert [ju.index_of(p) for p in pods(api) if p["status"]["phase"] == "Pending"] == [2]
    finish(api, "Succeeded")
    await ctl.sync("ns/pi")
    assert job(api)["status"]["completedIndexes"] == "0-2" and "Complete" in conditions(api)


async def test_suspend_and_resume() -> None:
    api, ctl = make(suspend=True)
    await ctl.sync("ns/pi")
    assert pods(api) == [] and conditions(api) == ["Suspended"] and "startTime" not in job(api)["status"]
    job(api)["spec"]["suspend"] = False
    await ctl.sync("ns/pi")
    assert len(pods(api)) == 2 and conditions(api) == [] and job(api)["status"]["startTime"]
    job(api)["spec"]["suspend"] = True
    await ctl.sync("ns/pi")
    await ctl.sync("ns/pi")
    assert conditions(api) == ["Suspended"] and pods(api) == []
    assert not job(api)["status"].get("failed")  # pods stopped by suspension are not failures


async def test_orphaned_pods_lose_the_finalizer() -> None:
    api, ctl = make()
    await ctl.sync("ns/pi")
    del api.objects["jobs"]["ns/pi"]
    await ctl.sync("ns/pi")
    assert not any(p["metadata"].get("finalizers") for p in pods(api))


def test_index_sets() -> None:
    assert ju.format_indexes({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert ju.parse_indexes("0-2,5,7-8") == {0, 1, 2, 5, 7, 8}
    assert ju.format_indexes(set()) == "" and ju.parse_indexes("") == set()


def exited(api: FakeAPI, pod: Obj, code: int) -> None:
    key = f"ns/{pod['metadata']['name']}"
    api.set_pod_phase(key, "Failed")
    api.objects["pods"][key]["status"]["containerStatuses"] = [
        {"name": "c", "state": {"terminated": {"exitCode": code}}}]


async def test_pod_failure_policy_ignore_and_fail_job() -> None:
    policy = {"rules": [{"action": "Ignore", "onExitCodes": {"operator": "In", "values": [42]}},
                        {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "NotIn",
                                                              "values": [1, 42]}}]}
    api, ctl = make(podFailurePolicy=policy, backoffLimit=0, parallelism=1, completions=1)
    await ctl.sync("ns/pi")
    exited(api, pods(api)[0], 42)
    await ctl.sync("ns/pi")
    assert not job(api)["status"].get("failed") and not conditions(api)  # ignored, not counted
    assert len([p for p in pods(api) if p["status"]["phase"] == "Pending"]) == 1  # replaced at once
    pending = next(p for p in pods(api) if p["status"]["phase"] == "Pending")
    exited(api, pending, 3)
    await ctl.sync("ns/pi")
    await ctl.sync("ns/pi")
    assert conditions(api) == ["FailureTarget", "Failed"]
    failed = job(api)["status"]["conditions"][-1]
    assert failed["reason"] == "PodFailurePolicy"
    assert failed["message"] == (f"Container c for pod ns/{pending['metadata']['name']} failed with exit code 3 "
                                 "matching FailJob rule at index 1")


def test_failure_policy_on_pod_conditions() -> None:
    job_obj: Obj = {"spec": {"podFailurePolicy": {"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]}}}
    pod: Obj = {"metadata": {"name": "p", "namespace": "ns"},
           "status": {"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True"}]}}
    assert ju.failure_policy_match(job_obj, pod) == (
        "Ignore", "Pod ns/p has condition DisruptionTarget matching Ignore rule at index 0")
    pod["status"]["conditions"][0]["status"] = "False"
    assert ju.failure_policy_match(job_obj, pod) is None
