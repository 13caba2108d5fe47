"""The Service proxy of a node: Services + EndpointSlices → one nftables table (kube-proxy's job).

model.py boils API objects down to Service ports with ready endpoints; nftables_render.py turns
each into its chains and map elements (pure); nftables_diff.py keeps the loaded table per Service
and writes the transaction for the Services that changed; nftables_apply.py commits a script
atomically (libnftables.py in-process, or the `nft` CLI); proxier.py is the watch → partial sync
(full sync when it must) loop.
"""
