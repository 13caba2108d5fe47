"""Per-resource behaviour behind the REST handlers: a generic store plus one strategy per resource.

The split follows k8s.io/apiserver/pkg/registry/generic/registry (Store) and each resource's
strategy.go in kubernetes/pkg/registry: the store owns the storage dance (keys, revisions,
preconditions, finalizers, dry run); strategies own what differs by kind (defaults, validation,
status reset, generation, graceful deletion).
"""
