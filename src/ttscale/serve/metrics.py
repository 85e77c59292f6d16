"""The server's Prometheus metrics (``GET /metrics``): requests by endpoint and status, the
tokens and FLOPs its searches spent, searches running and waiting, and latency."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from ttscale.compute import Ledger

# seconds; a search on a CPU takes from a second to minutes
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, float("inf"))


class ServerMetrics:
    """One registry per app, so that several apps in one process keep apart."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ttscale_requests", "Requests answered, by endpoint and HTTP "
                                "status", ["endpoint", "status"], registry=r)
        self.tokens = Counter("ttscale_tokens", "Tokens the searches spent, by model (policy, "
                              "scorer) and kind (prompt, cached_prompt, generated)",
                              ["model", "kind"], registry=r)
        self.flops = Counter("ttscale_flops", "FLOPs the searches spent (2 x parameters x "
                             "tokens computed), by model", ["model"], registry=r)
        self.searches = Counter("ttscale_searches", "Searches ended, by outcome (done, failed, "
                                "timeout, cancelled)", ["outcome"], registry=r)
        self.running = Gauge("ttscale_searches_running", "Searches running now", registry=r)
        self.queue_depth = Gauge("ttscale_queue_depth", "Searches admitted and waiting for a "
                                 "slot", registry=r)
        self.latency = Histogram("ttscale_request_latency_seconds", "Time from a request's "
                                 "arrival to its answer, by endpoint", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)

    def count_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def count_spend(self, ledger: Ledger) -> None:
        """Add one search's ledger."""
        for model, tokens, flops in (("policy", ledger.policy, ledger.policy_flops),
                                     ("scorer", ledger.scorer, ledger.scorer_flops)):
            for kind, count in tokens.to_dict().items():
                self.tokens.labels(model, kind).inc(count)
            if flops:  # None: the model's size is unknown; never a guess
                self.flops.labels(model).inc(flops)

    def render(self) -> bytes:
        return generate_latest(self.registry)
