"""The scheduler: binds each unscheduled pod to a node, modelled on kube-scheduler.

Flow: informers (nodes, pods, namespaces) feed `cache.py` (per-node aggregates, assumed pods) and
`queue.py` (activeQ / backoffQ / unschedulable pods); `scheduler.py` pops a pod, runs the profile's
plugins from `framework/` (one per module in `plugins/`), assumes the chosen node in the cache and
binds through `pods/binding` asynchronously. `run.py` is the entry point the CLI and server call.
"""
