"""Hollow nodes: many simulated nodes that register, renew Leases and move their pods through
their phases without containers (in the spirit of kwok), for scale tests and benchmarks."""
