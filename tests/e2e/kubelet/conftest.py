"""Fixtures of the kubelet end-to-end tests: a real local registry (tests/support/registry.py)."""

from tests.support.registry import local_registry

__all__ = ["local_registry"]
