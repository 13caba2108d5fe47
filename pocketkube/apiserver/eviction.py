"""pods/eviction (policy/v1 Eviction): a delete that honours the pod's PodDisruptionBudget.

kube's pkg/registry/core/pod/storage/eviction.go: `kubectl drain` and other voluntary
disruptions POST an Eviction instead of deleting. A pod that is already terminal, pending or
terminating is deleted at once (it is no longer serving); otherwise the one PDB selecting it (two
or more is a 500, as in kube) must allow a disruption: its status, kept by the disruption
controller, says how many (`disruptionsAllowed`). The eviction takes one by a compare-and-swap
on the PDB's status, also recording the pod in `disruptedPods` so the controller does not count
it healthy before its deletion shows, and only then deletes the pod. With none allowed the answer
is 429 "Cannot evict pod as it would violate the pod's disruption budget.", which drain retries.
An unready pod may go while the budget is met anyway (IfHealthyBudget) or always (AlwaysAllow).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pocketkube.api import errors, meta
from pocketkube.api.disruption import (
    disruption_target,
    pod_ready,
    replace_condition,
    set_disruption_allowed_condition,
)
from pocketkube.api.selectors import parse_field_selector, parse_label_selector, selector_from_spec
from pocketkube.apiserver.registry.store import DeleteOptions, ListOptions, Store, WriteOptions

if TYPE_CHECKING:
    from pocketkube.apiserver.server import APIServer

Obj = dict[str, Any]

VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."
DISRUPTION_BUDGET_CAUSE = "DisruptionBudget"
MAX_DISRUPTED_PODS = 2000


def _can_ignore_pdb(pod: Obj) -> bool:
    """Terminal, pending or terminating pods disrupt nothing more by going."""
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or bool(pod["metadata"].get("deletionTimestamp"))


def delete_options(eviction: Obj, dry_run: bool) -> DeleteOptions:
    opts = eviction.get("deleteOptions")
    opts = {} if opts is None else opts
    if not isinstance(opts, dict):
        raise errors.BadRequest("deleteOptions: must be an object")
    grace = opts.get("gracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)):
        raise errors.BadRequest("deleteOptions.gracePeriodSeconds: must be an integer")
    pre = opts.get("preconditions")
    pre = {} if pre is None else pre
    if not isinstance(pre, dict):
        raise errors.BadRequest("deleteOptions.preconditions: must be an object")
    return DeleteOptions(grace_period_seconds=grace, precondition_uid=pre.get("uid") or None,
                         precondition_rv=pre.get("resourceVersion") or None,
                         dry_run=dry_run or bool(opts.get("dryRun")))


async def matching_budgets(server: APIServer, pod: Obj) -> list[Obj]:
    store = server.store_by_kind("policy", "v1", "poddisruptionbudgets")
    everything = ListOptions(label_selector=parse_label_selector(""), field_selector=parse_field_selector(""))
    labels = pod["metadata"].get("labels") or {}
    out = []
    for co in (await store.list(pod["metadata"]["namespace"], everything)).items:
        spec = co.obj.get("spec") or {}
        try:
            selector = selector_from_spec(spec.get("selector"))  # v1: nil selects nothing, {} everything
        except errors.BadRequest:
            continue
        if selector.matches(labels):
            out.append(co.obj)
    return out


async def evict(server: APIServer, pods: Store, namespace: str, name: str, eviction: Obj, dry_run: bool) -> None:
    """Delete the pod if its budget allows; raises the Status error kube answers otherwise."""
    md = eviction.get("metadata")
    md = {} if md is None else md
    if not isinstance(md, dict):
        raise errors.BadRequest("metadata: must be an object")
    if md.get("name") and md["name"] != name:
        raise errors.BadRequest("name in URL does not match name in Eviction object")
    opts = delete_options(eviction, dry_run)
    pod = await pods.get(namespace, name)
    if _can_ignore_pdb(pod):
        await _mark_and_delete(pods, namespace, name, opts)
        return
    budgets = await matching_budgets(server, pod)
    if len(budgets) > 1:
        raise errors.InternalError("This pod has more than one PodDisruptionBudget, which the eviction "
                                   "subresource does not support.")
    if budgets:
        pdb = budgets[0]
        status = pdb.get("status") or {}
        policy = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") or "IfHealthyBudget"
        desired = int(status.get("desiredHealthy") or 0)
        unready_may_go = not pod_ready(pod) and (policy == "AlwaysAllow" or (
            int(status.get("currentHealthy") or 0) >= desired and desired > 0))
        if unready_may_go:
            # Taking no disruption from the budget, but only if the pod is still the one judged.
            opts.precondition_rv = opts.precondition_rv or pod["metadata"].get("resourceVersion")
        else:
            await _take_disruption(server, pdb, name, opts.dry_run)
    await _mark_and_delete(pods, namespace, name, opts)


async def _mark_and_delete(pods: Store, namespace: str, name: str, opts: DeleteOptions) -> None:
    """The DisruptionTarget condition (EvictionByEvictionAPI) on the latest pod, then the delete;
    the caller's preconditions hold for the pod as it was, and move to our own write."""
    if not opts.dry_run:
        async def mark(pod: Obj) -> Obj:
            pods.check_delete_preconditions(name, pod["metadata"], opts)
            status = pod.setdefault("status", {})
            status["conditions"] = replace_condition(
                status.get("conditions"), disruption_target("EvictionByEvictionAPI", "Eviction API: evicting"))
            return pod

        updated = await pods.guaranteed_update(namespace, name, mark, WriteOptions(), subresource="status")
        if opts.precondition_rv:
            opts.precondition_rv = updated["metadata"].get("resourceVersion")
    await pods.delete(namespace, name, opts)


async def _take_disruption(server: APIServer, pdb: Obj, pod_name: str, dry_run: bool) -> None:
    store = server.store_by_kind("policy", "v1", "poddisruptionbudgets")
    md = pdb["metadata"]

    async def decrement(current: Obj) -> Obj:
        status = current.setdefault("status", {})
        if int(status.get("observedGeneration") or 0) < int(current["metadata"].get("generation") or 0):
            raise errors.TooManyRequests(VIOLATION, retry_after=10, details={"causes": [{
                "reason": DISRUPTION_BUDGET_CAUSE,
                "message": f"The disruption budget {md['name']} is still being processed by the server."}]})
        allowed = int(status.get("disruptionsAllowed") or 0)
        if allowed < 0:
            raise errors.Forbidden(f'poddisruptionbudgets.policy "{md["name"]}" is forbidden: '
                                   "pdb disruptions allowed is negative")
        if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
            raise errors.Forbidden(f'poddisruptionbudgets.policy "{md["name"]}" is forbidden: DisruptedPods map '
                                   "too big - too many evictions not confirmed by PDB controller")
        if allowed == 0:
            raise errors.TooManyRequests(VIOLATION, details={"causes": [{
                "reason": DISRUPTION_BUDGET_CAUSE,
                "message": f"The disruption budget {md['name']} needs {int(status.get('desiredHealthy') or 0)} "
                           f"healthy pods and has {int(status.get('currentHealthy') or 0)} currently"}]})
        status["disruptionsAllowed"] = allowed - 1
        if allowed - 1 == 0:
            set_disruption_allowed_condition(current, allowed=False)
        status["disruptedPods"] = {**(status.get("disruptedPods") or {}), pod_name: meta.now_rfc3339()}
        return current

    await store.guaranteed_update(md["namespace"], md["name"], decrement, WriteOptions(dry_run=dry_run),
                                  subresource="status")

