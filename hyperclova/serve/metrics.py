"""Prometheus metrics of one server (its own registry: no process-wide state)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, engines=()):
        """`engines`: the server's engines (the base model's, and those of adapters with their
        own); the engine gauges and counters are their totals."""
        r = self.registry = CollectorRegistry()
        self.requests = Counter("hyperclova_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("hyperclova_prompt_tokens", "Prompt tokens processed", registry=r)
        self.generation_tokens = Counter("hyperclova_generation_tokens", "Tokens generated", registry=r)
        self.sequences = Counter("hyperclova_sequences_finished", "Generated sequences by finish reason",
                                 ["finish_reason"], registry=r)
        self.ttft = Histogram("hyperclova_time_to_first_token_seconds", "Arrival to first token",
                              buckets=LATENCY_BUCKETS, registry=r)
        self.itl = Histogram("hyperclova_inter_token_latency_seconds", "Time between tokens of a sequence",
                             buckets=LATENCY_BUCKETS, registry=r)
        self.latency = Histogram("hyperclova_request_duration_seconds", "Arrival to last token",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.queue = Gauge("hyperclova_queue_length", "Sequences waiting for a slot", registry=r)
        self.running = Gauge("hyperclova_running_sequences", "Sequences in the decode batch", registry=r)
        if engines:
            engines = list(engines)
            self.queue.set_function(lambda: sum(e.queue_length for e in engines))
            self.running.set_function(lambda: sum(e.batch_size for e in engines))
            r.register(_EngineCollector(engines))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _EngineCollector:
    """Counts the engine keeps itself (read at scrape time)."""

    def __init__(self, engines):
        self.engines = engines

    def collect(self):
        es = self.engines
        yield CounterMetricFamily("hyperclova_engine_iterations", "Scheduler iterations",
                                  value=sum(e.iterations for e in es))
        yield CounterMetricFamily("hyperclova_sequences_cancelled", "Sequences dropped because their "
                                  "client went away", value=sum(e.cancelled for e in es))
        yield GaugeMetricFamily("hyperclova_peak_batch_size", "Largest decode batch so far (of any engine)",
                                value=max(e.peak_batch for e in es))
