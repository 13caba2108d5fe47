"""In-tree scheduler plugins, one per module, each with NAME, events_to_register(), a pure helper
and new(handle). `framework/registry.py` maps the names to the factories."""
