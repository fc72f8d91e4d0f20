"""`echolive serve --ray [ADDRESS] --workers N --min-workers A --max-workers B`: the same server on Ray Serve
(`server.cluster`, the `[cluster]` extra)."""

from __future__ import annotations

import argparse
import importlib.util

from server.settings import ServerSettings

INSTALL_CLUSTER = "pip install 'echomimic-live[cluster]'"
LOCAL = "local"


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL,
        default=None,
        metavar="ADDRESS",
        help="run on Ray Serve: worker replicas render, this process's ingress serves the API. Without ADDRESS a "
        "local Ray instance is started; with one (e.g. auto, or HOST:6379) an existing cluster is joined",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="with --ray: worker replicas (default: one per GPU, 1 without)"
    )
    parser.add_argument("--min-workers", type=int, default=None, help="with --ray: autoscale, never below this")
    parser.add_argument("--max-workers", type=int, default=None, help="with --ray: autoscale, never above this")


def run_cluster_command(settings: ServerSettings, args: argparse.Namespace) -> None:
    if importlib.util.find_spec("ray") is None:
        raise ValueError(f"--ray needs Ray Serve: {INSTALL_CLUSTER}")
    from server.cluster.deployment import ClusterOptions
    from server.cluster.launch import run_cluster

    options = ClusterOptions(workers=args.workers, min_workers=args.min_workers, max_workers=args.max_workers)
    run_cluster(settings, options, address=None if args.ray == LOCAL else args.ray)
