"""Fixtures shared by the storage conformance runs: a unique key prefix per test."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def prefix() -> str:
    return f"/conformance/{uuid.uuid4().hex[:12]}/"
