"""The throughput shortcuts must not change a decision: memoised resource scores equal a fresh
computation after every kind of node change, informer confirmations reuse the parsed pod only when
nothing it parsed changed, and the percentage limits how many feasible nodes are scored, never which
nodes pass the filters."""

from __future__ import annotations

import copy
import random

from sched_testlib import node, pod

from pocketkube.scheduler.cache import SchedulerCache
from pocketkube.scheduler.framework.interface import CycleState
from pocketkube.scheduler.framework.registry import Profile, new_framework
from pocketkube.scheduler.framework.runtime import Framework, num_feasible_nodes_to_find
from pocketkube.scheduler.node_info import NodeInfo
from pocketkube.scheduler.queue import SchedulingQueue
from pocketkube.scheduler.scheduler import Scheduler
from pocketkube.scheduler.types import PodInfo, same_scheduling_inputs


def _fresh_totals(fw: Framework, state: CycleState, p: PodInfo, nodes: list[NodeInfo]) -> list[int]:
    """What prioritize() would return with no memo: every plugin's per-node score()."""
    totals = [0] * len(nodes)
    for name, weight in fw.score_weights.items():
        plugin = fw.plugins[name]
        pre = getattr(plugin, "pre_score", None)
        if pre is not None:
            st = pre(state, p, nodes)
            if st is not None and st.code.name == "SKIP":
                continue
        scores = [plugin.score(state, p, n) for n in nodes]
        normalize = getattr(plugin, "normalize_score", None)
        if normalize is not None:
            normalize(state, p, nodes, scores)
        totals = [t + s * weight for t, s in zip(totals, scores, strict=True)]
    return totals


def test_memoised_scores_match_fresh_scores_through_changes() -> None:
    cache = SchedulerCache()
    for i in range(12):
        cache.add_node(node(f"n{i}", cpu=str(2 + i % 3), memory=f"{4 + i % 5}Gi"))
    fw = new_framework(Profile(percentage_of_nodes_to_score=100), cache, rng=random.Random(3))
    rng = random.Random(7)
    shapes = [("100m", "128Mi"), ("250m", "1Gi"), (None, None), ("1", "256Mi")]
    for step in range(60):
        cpu, mem = shapes[step % len(shapes)]
        p = PodInfo(pod(f"p{step}", cpu=cpu, memory=mem, owner="rs" if step % 2 else ""))
        nodes = cache.node_list()
        state = CycleState()
        got = fw.prioritize(state, p, nodes)
        assert got == _fresh_totals(fw, CycleState(), p, nodes), f"step {step}"
        cache.assume(p, rng.choice(nodes).name)  # the node that took it must be re-scored
        if step % 7 == 3:  # a pod leaves
            cache.remove_pod(f"default/p{step - 2}")
        if step % 11 == 5:  # a node grows
            cache.update_node(node("n3", cpu="16", memory="64Gi"))


def test_mixed_pod_shapes_score_like_fresh() -> None:
    cache = SchedulerCache()
    cache.add_node(node("a", cpu="64", memory="256Gi"))
    cache.add_node(node("b", cpu="8", memory="16Gi"))
    fw = new_framework(Profile(percentage_of_nodes_to_score=100), cache)
    for i in range(20):  # alternating shapes overwrite the one-shape memo each time
        p = PodInfo(pod(f"p{i}", cpu=f"{(i % 3) * 500 + 100}m", memory=f"{(i % 2) + 1}Gi"))
        nodes = cache.node_list()
        assert fw.prioritize(CycleState(), p, nodes) == _fresh_totals(fw, CycleState(), p, nodes)
    assert cache.nodes["a"].owner_pods == {}
    cache.assume(PodInfo(pod("o", owner="rs")), "a")
    assert cache.nodes["a"].owner_pods == {"rs-rs": 1}
    cache.forget("default/o")
    assert cache.nodes["a"].owner_pods == {}


def test_same_scheduling_inputs() -> None:
    pending = pod("x", cpu="1", labels={"app": "a"})
    bound = copy.deepcopy(pending)
    bound["spec"]["nodeName"] = "n1"
    bound["status"] = {"phase": "Running", "podIP": "10.0.0.5"}
    bound["metadata"]["resourceVersion"] = "9"
    assert same_scheduling_inputs(pending, bound)
    relabeled = copy.deepcopy(bound)
    relabeled["metadata"]["labels"] = {"app": "b"}
    assert not same_scheduling_inputs(bound, relabeled)
    resized = copy.deepcopy(bound)
    resized["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "2"
    assert not same_scheduling_inputs(bound, resized)
    done = copy.deepcopy(bound)
    done["status"]["phase"] = "Succeeded"
    assert not same_scheduling_inputs(bound, done)


def _scheduler() -> tuple[Scheduler, SchedulerCache]:
    cache = SchedulerCache()
    fw = new_framework(Profile(), cache, rng=random.Random(1))
    queue = SchedulingQueue(events=fw.events)

    async def bind(p: PodInfo, n: str) -> None:
        return None

    return Scheduler(framework=fw, cache=cache, queue=queue, binder=bind), cache


def test_binding_and_status_reports_reuse_the_parsed_pod() -> None:
    sched, cache = _scheduler()
    sched.on_node(None, node("n1", cpu="4"))
    pending = pod("x", cpu="1", owner="rs")
    sched.on_pod(None, pending)
    qpi = sched.queue.try_pop()
    assert qpi is not None and sched.schedule_one(qpi) == "n1"
    assert cache.is_assumed("default/x")
    parsed = cache.pods["default/x"]
    bound = copy.deepcopy(pending)
    bound["spec"]["nodeName"] = "n1"
    sched.on_pod(pending, bound)  # the informer shows our binding
    confirmed = cache.pods["default/x"]
    assert not cache.is_assumed("default/x")
    assert confirmed.obj is bound and confirmed.node_name == "n1" and confirmed.tolerations is parsed.tolerations
    assert cache.nodes["n1"].req_cpu == 1000 and cache.nodes["n1"].pod_count == 1
    assert cache.owner_counts == {"rs-rs": {"n1": 1}}
    running = copy.deepcopy(bound)
    running["status"] = {"phase": "Running"}
    sched.on_pod(bound, running)  # a kubelet status report
    assert cache.pods["default/x"].obj is running and cache.nodes["n1"].req_cpu == 1000
    relabeled = copy.deepcopy(running)
    relabeled["metadata"]["labels"] = {"tier": "web"}
    sched.on_pod(running, relabeled)  # a change the plugins read: parsed again
    assert cache.pods["default/x"].labels == {"tier": "web"} and cache.nodes["n1"].pod_count == 1
    finished = copy.deepcopy(relabeled)
    finished["status"] = {"phase": "Succeeded"}
    sched.on_pod(relabeled, finished)  # finished pods free their node
    assert cache.nodes["n1"].pod_count == 0 and cache.nodes["n1"].req_cpu == 0


def test_binding_to_another_node_takes_the_full_path() -> None:
    sched, cache = _scheduler()
    sched.on_node(None, node("n1", cpu="4"))
    sched.on_node(None, node("n2", cpu="4"))
    pending = pod("x", cpu="1")
    sched.on_pod(None, pending)
    qpi = sched.queue.try_pop()
    assert qpi is not None
    chosen = sched.schedule_one(qpi)
    other = "n2" if chosen == "n1" else "n1"
    bound = copy.deepcopy(pending)
    bound["spec"]["nodeName"] = other  # someone else bound it first
    sched.on_pod(pending, bound)
    assert cache.node_of("default/x") == other and not cache.is_assumed("default/x")
    assert cache.nodes[other].req_cpu == 1000 and cache.nodes[str(chosen)].req_cpu == 0


def test_percentage_limits_scored_nodes_not_filters() -> None:
    cache = SchedulerCache()
    for i in range(400):  # only every 10th node has room: filters must still reject the others
        cache.add_node(node(f"n{i:03d}", cpu="4" if i % 10 == 0 else "100m"))
    fw = new_framework(Profile(), cache, rng=random.Random(2))
    assert num_feasible_nodes_to_find(400) == 400 * 47 // 100  # 50 - 400/125 = 47%
    for i in range(30):
        p = PodInfo(pod(f"p{i}", cpu="500m"))
        feasible, _ = fw.find_nodes_that_fit(CycleState(), p, cache.node_list())
        assert feasible and all(int(n.name[1:]) % 10 == 0 for n in feasible)
        chosen = fw.schedule(p, cache.node_list())
        assert int(chosen.name[1:]) % 10 == 0
        cache.assume(p, chosen.name)
    wide = new_framework(Profile(percentage_of_nodes_to_score=5), cache)
    feasible, _ = wide.find_nodes_that_fit(CycleState(), PodInfo(pod("q", cpu="100m")), cache.node_list())
    assert len(feasible) == 100  # 5% of 400 is 20, but never fewer than 100 feasible nodes are sought


def test_rotation_visits_every_node() -> None:
    cache = SchedulerCache()
    for i in range(1000):
        cache.add_node(node(f"n{i:04d}"))
    fw = new_framework(Profile(percentage_of_nodes_to_score=10), cache)
    seen: set[str] = set()
    for i in range(10):
        feasible, _ = fw.find_nodes_that_fit(CycleState(), PodInfo(pod(f"p{i}")), cache.node_list())
        assert len(feasible) == 100
        seen.update(n.name for n in feasible)
    assert len(seen) == 1000


def test_rotation_wraps_around_the_node_list() -> None:
    cache = SchedulerCache()
    for i in range(1000):
        cache.add_node(node(f"n{i:04d}"))
    fw = new_framework(Profile(percentage_of_nodes_to_score=30), cache)
    samples = [fw.find_nodes_that_fit(CycleState(), PodInfo(pod(f"p{i}")), cache.node_list())[0] for i in range(4)]
    assert [n.name for n in samples[2]] == [f"n{i:04d}" for i in range(600, 900)]
    assert [n.name for n in samples[3]] == [f"n{i:04d}" for i in (*range(900, 1000), *range(0, 200))]
    assert fw.next_start == 200


def test_rotation_resumes_after_the_last_used_node() -> None:
    cache = SchedulerCache()
    for i in range(1000):
        cache.add_node(node(f"n{i:04d}"))
    fw = new_framework(Profile(percentage_of_nodes_to_score=10), cache)
    fw.next_start = 0
    first, _ = fw.find_nodes_that_fit(CycleState(), PodInfo(pod("a")), cache.node_list())
    assert len(first) == 100 and fw.next_start == 100
    full = SchedulerCache()
    for i in range(200):  # every other node of the first 100 is full
        full.add_node(node(f"m{i:03d}", cpu="100m" if i < 100 and i % 2 else "4"))
    fw2 = new_framework(Profile(percentage_of_nodes_to_score=50), full)
    got, _ = fw2.find_nodes_that_fit(CycleState(), PodInfo(pod("b", cpu="500m")), full.node_list())
    # chunk 1 (m000-m099) gives 50, chunk 2 (64 nodes, m100-m163) 64 more: only m100-m149 are used
    assert len(got) == 100 and got[-1].name == "m149" and fw2.next_start == 150


def test_affinity_walks_only_the_nodes_holding_affinity_pods() -> None:
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    likes = {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}},
                                            "topologyKey": "kubernetes.io/hostname"}}]}}
    cache = SchedulerCache()
    for i in range(300):
        cache.add_node(node(f"n{i:03d}"))
    guard = PodInfo(pod("guard", labels={"app": "guard"}, affinity=anti))
    fan = PodInfo(pod("fan", labels={"app": "fan"}, affinity=likes))
    cache.assume(guard, "n007")
    cache.add_pod(PodInfo({**fan.obj, "spec": {**fan.obj["spec"], "nodeName": "n100"}}))
    assert cache.anti_affinity_nodes == {"n007"} and cache.affinity_nodes == {"n007", "n100"}
    fw = new_framework(Profile(), cache, rng=random.Random(5))
    for i in range(40):  # db pods: never next to the guard (its anti-affinity selects them)
        p = PodInfo(pod(f"db{i}", labels={"app": "db"}))
        chosen = fw.schedule(p, cache.node_list())
        assert chosen.name != "n007"
        cache.assume(p, chosen.name)
    web = PodInfo(pod("web", labels={"app": "web"}))  # the fan's preferred affinity pulls web pods to n100
    full = new_framework(Profile(percentage_of_nodes_to_score=100), cache, rng=random.Random(5))
    assert full.schedule(web, cache.node_list()).name == "n100"
    cache.forget("default/guard")
    assert cache.anti_affinity_nodes == set() and cache.affinity_nodes == {"n100"}
    cache.remove_pod("default/fan")
    assert cache.affinity_nodes == set()
