"""The API client every component uses: REST calls, watches, informers and work queues.

Controllers, the scheduler, kubelet, proxy and friends reach cluster state only through this
package, exactly like client-go users do, so each can run in its own process or on another host.
"""
