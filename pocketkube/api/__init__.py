"""Pure API types and rules: metadata, selectors, errors, resource table, defaults, validation, patches.

Nothing here does I/O; every other layer may import it.
"""
