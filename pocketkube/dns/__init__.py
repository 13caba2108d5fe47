"""Cluster DNS: Services and Pods as names under the cluster domain (dnslib + a wire cache)."""
