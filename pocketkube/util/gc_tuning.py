"""Keep Python's cyclic garbage collector off a component's object caches.

The API server's watch cache and every informer-driven component (scheduler, controllers) hold the
cluster's objects as acyclic JSON dicts that reference counting frees. Without tuning, each full
collection walks all of them (~340 ms with 10k pods, measured by bench/bench_apiserver.py; in the
scheduler its cost lands on whatever line allocates next, i.e. inside scheduling cycles).
Survivors of a full collection are frozen out of later ones, and the young generations are
collected less often.
"""

from __future__ import annotations

import gc


def _freeze_after_full_collection(phase: str, info: dict[str, int]) -> None:
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


def tune_gc() -> None:
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    if _freeze_after_full_collection not in gc.callbacks:
        gc.callbacks.append(_freeze_after_full_collection)
