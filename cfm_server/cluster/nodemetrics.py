"""A cluster node's metrics on ``/metrics``: its link to Redis, its pipelines, its share of
the cluster's work. Read at scrape time from plain counts the engine keeps (the batcher's
``pipelines``, ``commands`` and ``round_trips``, the broker's ``gaps_filled``, the
presence's ``reaped``, the outage tracker's state), so the hot path pays no prometheus
call: one pipeline costs two clock reads, a ``bisect`` and four additions.

Every figure is this node's; docs/server.md ("Metrics") says which to sum over nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from cfm_server.cluster.lease import Lease
    from cfm_server.cluster.node import ClusterNode


class LeaseUser(Protocol):
    """What runs under a lease (``ClusterAI``, ``ClusterRetention``)."""

    lease: Lease


class ClusterCollector(Collector):
    """``users()``: what this node runs under a lease (None: not configured here), read
    at each scrape since they are made after the node."""

    def __init__(self, node: ClusterNode,
                 users: Callable[[], Iterable[LeaseUser | None]]) -> None:
        self._node = node
        self._users = users

    def describe(self) -> list[Metric]:
        return []  # read at scrape time only

    def collect(self) -> Iterator[Metric]:
        broker = self._node.broker
        batcher, outage = broker.batcher, broker.outage
        yield GaugeMetricFamily(
            "cfm_cluster_redis_reachable",
            "1 while this node reaches Redis (commands and pub/sub), 0 during an outage",
            value=1 if outage.reachable else 0)
        yield CounterMetricFamily("cfm_cluster_redis_outages",
                                  "Times this node lost Redis", value=outage.outages)
        yield CounterMetricFamily("cfm_cluster_pipelines",
                                  "Pipelines this node sent to Redis (one per loop turn)",
                                  value=batcher.pipelines)
        yield CounterMetricFamily(
            "cfm_cluster_commands",
            "Commands in those pipelines (a loop turn's merged appends count one)",
            value=batcher.commands)
        yield GaugeMetricFamily(
            "cfm_cluster_backlog",
            "Redis calls of this node not answered yet (queued or in flight); at "
            "backlog_limit its sessions stop being read until Redis catches up",
            value=batcher.backlog)
        trips = batcher.round_trips
        yield HistogramMetricFamily(
            "cfm_cluster_pipeline_seconds",
            "Round trip of this node's pipelines to Redis (sent to every reply read)",
            buckets=trips.cumulative(), sum_value=trips.sum)
        yield CounterMetricFamily(
            "cfm_cluster_gaps_filled",
            "Gaps in a room's live messages (a lost publish, a reconnect) read from its stream",
            value=broker.gaps_filled)
        yield CounterMetricFamily(
            "cfm_cluster_nodes_reaped",
            "Other nodes this node reaped from presence (their heartbeat expired)",
            value=self._node.presence.reaped)
        search = self._node.search
        if search is not None:  # (search_index = false, or an index that never opened)
            keeper = search.keeper
            yield GaugeMetricFamily(
                "cfm_cluster_search_indexer_up",
                "1 while this node's search indexer process runs, 0 between its death and "
                "the next start (the back-off)", value=1 if keeper.running else 0)
            yield CounterMetricFamily(
                "cfm_cluster_search_indexer_deaths",
                "Times this node's search indexer died (each logged at ERROR with its exit "
                "status and last lines, or a WARNING when its file was made again)",
                value=keeper.deaths)
        held = GaugeMetricFamily("cfm_cluster_lease_held",
                                 "1 while this node holds the lease, by lease", labels=["lease"])
        for user in self._users():
            if user is not None:
                held.add_metric([user.lease.name], 1 if user.lease.held else 0)
        yield held
