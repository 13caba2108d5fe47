"""The Service proxy of a node: Services + EndpointSlices → one nftables table (kube-proxy's job).

model.py boils API objects down to Service ports with ready endpoints; nftables_render.py turns
them into a table (pure); nftables_diff.py into the change from the last table; nftables_apply.py
loads a script atomically; proxier.py is the watch → debounce → render → apply loop.
"""
