"""Which container a pods/log|exec request means, with kube's error wording (strategy.go)."""

from __future__ import annotations

from typing import Any

import pytest

from pocketkube.api import errors
from pocketkube.apiserver.streaming import validate_container


def _pod(*names: str, init: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": {"containers": [{"name": n} for n in names],
                                                "initContainers": [{"name": n} for n in init]}}


def test_the_only_container_is_the_default() -> None:
    assert validate_container("", _pod("app")) == "app"
    assert validate_container("setup", _pod("app", init=("setup",))) == "setup"


def test_errors_read_as_kube_writes_them() -> None:
    with pytest.raises(errors.BadRequest, match=r"^a container name must be specified for pod p, choose one of: "
                                                r"\[i a b\]$"):
        validate_container("", _pod("a", "b", init=("i",)))
    with pytest.raises(errors.BadRequest, match=r"^container c is not valid for pod p$"):
        validate_container("c", _pod("a"))
