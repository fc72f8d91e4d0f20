"""`echolive serve --ray [ADDRESS]`: start a local Ray instance (no address) or join a cluster, deploy the
application and serve until interrupted."""

from __future__ import annotations

import logging
import signal
import sys
import time

from server.cluster.deployment import ClusterOptions, build_application
from server.settings import ServerSettings

APP_NAME = "echolive"
logger = logging.getLogger(__name__)


def run_cluster(settings: ServerSettings, options: ClusterOptions, address: str | None) -> None:
    """Serve until Ctrl-C or TERM; then take the application down (and the local Ray instance, when it started one)."""
    import ray
    from ray import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # A TERM (systemd, a container stopping) takes the application and the local Ray instance down like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(0))
    ray.init(address=address, include_dashboard=False)
    try:
        gpus = float(ray.cluster_resources().get("GPU", 0.0))
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(build_application(settings, options, gpus), name=APP_NAME, route_prefix="/")
        logger.info("serving on http://%s:%d (Ray sees %g GPUs)", settings.host, settings.port, gpus)
        while True:
            time.sleep(3600)
    finally:
        serve.delete(APP_NAME)
        ray.shutdown()
