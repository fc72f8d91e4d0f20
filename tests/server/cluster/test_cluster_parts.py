"""The cluster's parts that need no Ray instance: the command line, worker counts, and merged metrics."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.cli import build_parser, main
from server.cluster.deployment import ClusterOptions
from server.cluster.deployment_metrics import IngressMetrics
from server.metrics import ServerMetrics


@pytest.mark.parametrize(
    ("argv", "address"), [(["serve"], None), (["serve", "--ray"], "local"), (["serve", "--ray", "auto"], "auto")]
)
def test_serve_ray_takes_an_optional_address(argv: list[str], address: str | None) -> None:
    assert build_parser().parse_args(argv).ray == address


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (["--min-workers", "3", "--max-workers", "1"], "--min-workers (3) is above --max-workers (1)"),
        (["--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_impossible_worker_counts_fail_in_one_line_before_ray_starts(
    flags: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--ray", *flags]) == 1
    assert capsys.readouterr().err.strip() == f"echolive serve: error: {complaint}"


def test_autoscaling_is_on_when_a_bound_is_given() -> None:
    assert not ClusterOptions(workers=3).autoscaling
    assert ClusterOptions(max_workers=4).autoscaling


def test_metrics_of_every_worker_merge_into_one_family_labelled_by_worker() -> None:
    first, second = ServerMetrics(), ServerMetrics()
    first.sessions_active.set(2)
    second.sessions_active.set(1)
    ingress = IngressMetrics()
    ingress.sessions_refused.inc()
    text = ingress.exposition({"a": first.exposition().decode(), "b": second.exposition().decode()}).decode()

    families = {family.name: family for family in text_string_to_metric_families(text)}
    active = {sample.labels["worker"]: sample.value for sample in families["echolive_sessions_active"].samples}
    assert active == {"a": 2.0, "b": 1.0}
    assert families["echolive_cluster_workers"].samples[0].value == 2.0
    assert families["echolive_cluster_sessions_refused"].samples[0].value == 1.0
