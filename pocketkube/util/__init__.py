"""Leaf helpers (asyncio supervision, clocks, backoff) that import nothing else of pocketkube."""
