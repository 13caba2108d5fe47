"""Kubelet unit-test options: `--update-golden` rewrites golden files instead of comparing.

Run as `pytest tests/unit/kubelet --update-golden` (pytest reads this conftest's option only when
the path is given), or set PK_UPDATE_GOLDEN=1. Review the diff of `golden/` before committing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest

GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/unit/kubelet/golden/* from the current output")


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, Any], None]:
    """golden(name, value): compare `value` (as indented JSON) with golden/<name>, or rewrite it."""
    update = bool(request.config.getoption("--update-golden", default=False)) or os.environ.get("PK_UPDATE_GOLDEN") == "1"

    def check(name: str, value: Any) -> None:
        path = os.path.join(GOLDEN_DIR, name)
        text = json.dumps(value, indent=2, sort_keys=False) + "\n"
        if update:
            os.makedirs(GOLDEN_DIR, exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
            return
        if not os.path.exists(path):
            pytest.fail(f"golden file {path} missing; run pytest tests/unit/kubelet --update-golden")
        with open(path) as f:
            expected = f.read()
        assert json.loads(text) == json.loads(expected), f"{name} differs from the golden file (pytest tests/unit/kubelet --update-golden)"

    return check
