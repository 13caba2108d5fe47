"""The state store: one interface (interface.py), backends for memory, SQLite and etcd, and a cacher.

Only the API server talks to storage; every other component goes through the API.
"""
