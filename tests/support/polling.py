"""Polling for end-to-end tests: wait until something observable through kubectl, nft or a socket
becomes true, failing with what was awaited rather than hanging."""

from __future__ import annotations

import time
from typing import Any


def wait_until(predicate: Any, what: str, timeout: float = 60.0, interval: float = 0.2) -> Any:
    """Call `predicate` until it returns something truthy, and return that; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
