"""pocketkube: a small Kubernetes-compatible container orchestrator that runs real containers."""

__version__ = "0.1.0"
KUBE_GIT_VERSION = "v1.32.0+pocketkube"
