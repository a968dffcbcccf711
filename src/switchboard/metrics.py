"""Prometheus metrics: one registry per process, filled by the worker, the sink and on scrape."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queue_depth = Gauge(
            "switchboard_queue_depth",
            "Messages waiting (QUEUED) or leased (SENDING), per lane",
            ["lane", "status"],
            registry=self.registry,
        )
        self.submits = Counter(
            "switchboard_submits_total",
            "Send attempts per connector and result (submitted, transient, permanent, ambiguous)",
            ["connector", "result"],
            registry=self.registry,
        )
        self.receipts = Counter(
            "switchboard_receipts_total",
            "Delivery reports received per connector and state",
            ["connector", "state"],
            registry=self.registry,
        )
        self.connector_up = Gauge(
            "switchboard_connector_up",
            "1 while the connector can send",
            ["connector"],
            registry=self.registry,
        )
        self.binds = Gauge(
            "switchboard_smpp_binds",
            "SMPP binds per connector and state",
            ["connector", "state"],
            registry=self.registry,
        )
        self.receipt_latency = Histogram(
            "switchboard_submit_to_receipt_seconds",
            "Time from a carrier accepting a message to its final receipt",
            ["connector"],
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
            registry=self.registry,
        )

    def set_queue_depth(self, depth: Mapping[str, int]) -> None:
        self.queue_depth.clear()
        for key, count in depth.items():
            lane, _, status = key.partition("_")
            self.queue_depth.labels(lane=lane, status=status).set(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
