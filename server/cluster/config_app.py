"""The application for a Ray Serve config file (`import_path: server.cluster.config_app:build`), as KubeRay's
`RayService` deploys it (see `deploy/rayservice.yaml`): the same settings as `echolive serve`, from the config's
`args`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray
from ray.serve import Application

from server.cluster.deployment import ClusterOptions, build_application
from server.settings import ServerSettings


def build(args: dict[str, Any]) -> Application:
    """`args`: renderer, weights, avatar_dir, size, fps, max_sessions, workers, min_workers, max_workers, and gpus:
    the GPUs to plan for (any: each worker takes one), since GPU nodes scaled to zero are not seen yet."""
    settings = ServerSettings(
        renderer=str(args.get("renderer", "lite")),
        weights_dir=Path(args["weights"]) if "weights" in args else None,
        avatar_dir=Path(args["avatar_dir"]) if "avatar_dir" in args else ServerSettings().avatar_dir,
        size=int(args["size"]) if "size" in args else None,
        fps=float(args["fps"]) if "fps" in args else None,
        max_sessions=int(args.get("max_sessions", ServerSettings.max_sessions)),
    )
    options = ClusterOptions(
        workers=_count(args, "workers"),
        min_workers=_count(args, "min_workers"),
        max_workers=_count(args, "max_workers"),
    )
    gpus = float(args["gpus"]) if "gpus" in args else float(ray.cluster_resources().get("GPU", 0.0))
    return build_application(settings, options, gpus)


def _count(args: dict[str, Any], name: str) -> int | None:
    return int(args[name]) if name in args else None
