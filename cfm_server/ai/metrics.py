"""Prometheus metrics of the AI contacts, on a registry the caller chooses.

The server passes its own ``CollectorRegistry`` so these appear on its ``/metrics``;
without one, a private registry is used (creating the metrics twice on the global
registry would fail, and tests start many contact sets in one process).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class AIMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.backend_calls = Counter(
            "cfm_ai_backend_calls",
            "Calls to the AI backend, by persona, backend and outcome (ok/error/timeout).",
            ["persona", "backend", "outcome"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "cfm_ai_refusals",
            "Messages answered with an in-character refusal instead of the backend's reply.",
            ["persona", "reason"],
            registry=self.registry,
        )
        self.offline_replies = Counter(
            "cfm_ai_offline_replies",
            "Replies written by the offline engine (free, not counted against quotas).",
            ["persona"],
            registry=self.registry,
        )
        self.nudges = Counter(
            "cfm_ai_nudges_received",
            "Nudges the AI contacts received.",
            ["persona"],
            registry=self.registry,
        )
        self.breaker_open = Gauge(
            "cfm_ai_breaker_open",
            "1 while the AI backend's circuit breaker is open or probing, else 0.",
            registry=self.registry,
        )
