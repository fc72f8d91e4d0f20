"""`WorkerDirectory`: a one-replica Ray Serve deployment where worker replicas announce their own HTTP address.

The ingress lists, ends and watches sessions wherever they live by asking every worker it finds here. Workers
announce themselves every `ANNOUNCE_INTERVAL`; an address not heard from for `ADDRESS_TTL` is forgotten, so a
dead replica drops out and its replacement appears on its own, and a restarted directory refills within a beat.
"""

from __future__ import annotations

import time

from server.cluster.messages import WorkerAddress

ANNOUNCE_INTERVAL = 1.0
ADDRESS_TTL = 3.5


class WorkerDirectory:
    def __init__(self) -> None:
        self._heard: dict[str, tuple[WorkerAddress, float]] = {}

    def announce(self, address: WorkerAddress) -> None:
        self._heard[address.worker_id] = (address, time.monotonic())

    def forget(self, worker_id: str) -> None:
        self._heard.pop(worker_id, None)

    def workers(self) -> list[WorkerAddress]:
        """The workers heard from lately, oldest first."""
        now = time.monotonic()
        self._heard = {key: entry for key, entry in self._heard.items() if now - entry[1] < ADDRESS_TTL}
        return [address for address, _ in self._heard.values()]
