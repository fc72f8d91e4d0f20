"""The cluster's parts that need no Ray instance: the command line, the deployments' shape, and merged metrics."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from ray.serve import Deployment

from server.cli import build_parser, main
from server.cluster.deployment import ClusterOptions, build_application
from server.cluster.deployment_metrics import IngressMetrics
from server.metrics import ServerMetrics
from server.settings import ServerSettings


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


def worker_deployment(options: ClusterOptions, gpus: float) -> Deployment:
    """The SessionWorker deployment of the application (the ingress's second argument)."""
    ingress = build_application(ServerSettings(max_sessions=3), options, gpus)._bound_deployment
    workers: Deployment = ingress.init_args[1]._bound_deployment
    assert workers.name == "SessionWorker"
    return workers


def test_a_worker_holds_its_capacity_in_ongoing_requests_and_takes_a_gpu_where_there_are_some() -> None:
    on_cpu = worker_deployment(ClusterOptions(), gpus=0.0)
    assert (on_cpu.num_replicas, on_cpu.max_ongoing_requests, on_cpu.ray_actor_options) == (1, 3, {"num_cpus": 1})
    on_gpus = worker_deployment(ClusterOptions(), gpus=4.0)
    assert (on_gpus.num_replicas, on_gpus.ray_actor_options["num_gpus"]) == (4, 1)


def test_workers_autoscale_on_ongoing_sessions_between_the_bounds() -> None:
    scaling = worker_deployment(ClusterOptions(min_workers=1, max_workers=3), gpus=0.0)._deployment_config
    config = scaling.autoscaling_config
    assert config is not None
    assert (config.min_replicas, config.max_replicas, config.target_ongoing_requests) == (1, 3, 0.75 * 3)
