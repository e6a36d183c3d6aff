"""Cluster mode: many ``cfm serve`` nodes over one Redis (docs/cluster.md).

The foundation, not yet wired into the hub:

    keys        every key and channel name (a room's keys share the hash tag ``{room}``)
    scripts     the server-side scripts (Lua files beside it) and the bytes they get
    batcher     the loop-turn pipeline (the cluster's group commit), down/up with back-off
    subscriber  the pub/sub connection and its watchdog
    tracker     per-room seq order: gaps held back and filled, duplicates dropped
    broker      append, history, head, subscribe: the engine the hub will talk to
    presence    who is online on which node, with expiry; heartbeats and the reaper
    lease       one holder per cluster ("AI contacts run once per cluster")
    errors      ClusterError, ClusterUnavailable
"""
