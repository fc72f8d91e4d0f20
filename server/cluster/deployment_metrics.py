"""`/metrics` for the whole deployment: every worker's Prometheus exposition, each sample labelled with the worker
that reported it, and the ingress's own counters, as one exposition."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


class IngressMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.workers = Gauge(
            "echolive_cluster_workers", "Worker replicas that answered the last scrape.", registry=self.registry
        )
        self.sessions_refused = Counter(
            "echolive_cluster_sessions_refused",
            "Sessions refused because every worker was full (Ray Serve's back-pressure).",
            registry=self.registry,
        )

    def exposition(self, worker_expositions: dict[str, str]) -> bytes:
        self.workers.set(len(worker_expositions))
        merged = CollectorRegistry()
        merged.register(_LabelledFamilies(worker_expositions))
        return generate_latest(self.registry) + generate_latest(merged)


class _LabelledFamilies:
    """A collector yielding the workers' families, merged by name, with a `worker` label on every sample."""

    def __init__(self, worker_expositions: dict[str, str]) -> None:
        self._expositions = worker_expositions

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for worker, text in self._expositions.items():
            for family in text_string_to_metric_families(text):
                merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                merged.samples.extend(_labelled(family.samples, worker))
        return families.values()


def _labelled(samples: list[Sample], worker: str) -> Iterator[Sample]:
    for sample in samples:
        yield sample._replace(labels={**sample.labels, "worker": worker})
