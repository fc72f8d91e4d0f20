"""Prepared avatars kept for the next session that asks, bounded by count and by the memory they hold.

The least recently used avatar goes first when either bound is passed. Avatars named by `keep` (the server's
default and those live sessions show) are never dropped, nor is the one just added: a session is about to use it.
Dropping only forgets the cache's reference; a session holds its own, so nothing is taken from under it. While
only kept avatars remain the cache may stay over its bounds: their memory is in use either way.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Generic, TypeVar

from server.metrics import ServerMetrics
from streaming.array_bytes import array_bytes
from streaming.renderer import AvatarMemory, MeasuresAvatars

AvatarT = TypeVar("AvatarT")


def avatar_measure(renderer: object) -> Callable[[object], AvatarMemory]:
    """The renderer's own `avatar_memory`, or, for a renderer without one, the NumPy arrays its avatars hold."""
    if isinstance(renderer, MeasuresAvatars):
        return renderer.avatar_memory
    return lambda avatar: AvatarMemory(host_bytes=array_bytes(avatar))


class AvatarCache(Generic[AvatarT]):
    def __init__(
        self,
        max_avatars: int,
        max_bytes: int,
        measure: Callable[[AvatarT], AvatarMemory],
        keep: Callable[[], Collection[str]],
        metrics: ServerMetrics | None = None,
    ) -> None:
        self._max_avatars = max_avatars
        self._max_bytes = max_bytes
        self._measure = measure
        self._keep = keep
        self._metrics = metrics
        self._entries: OrderedDict[str, tuple[AvatarT, AvatarMemory]] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    @property
    def memory(self) -> AvatarMemory:
        """What the kept avatars hold together."""
        memories = [memory for _, memory in self._entries.values()]
        return AvatarMemory(
            sum(memory.host_bytes for memory in memories), sum(memory.device_bytes for memory in memories)
        )

    def get(self, name: str) -> AvatarT | None:
        """The named avatar, now the most recently used; None when it is not kept."""
        entry = self._entries.get(name)
        if entry is None:
            return None
        self._entries.move_to_end(name)
        return entry[0]

    def put(self, name: str, avatar: AvatarT) -> None:
        """Keep `avatar` as the most recently used, then drop the least recently used ones past the bounds."""
        self._entries[name] = (avatar, self._measure(avatar))
        self._entries.move_to_end(name)
        kept = {*self._keep(), name}
        for candidate in list(self._entries):
            if not self._over_bounds():
                break
            if candidate not in kept:
                del self._entries[candidate]
                self.evictions += 1
                if self._metrics is not None:
                    self._metrics.avatar_cache_evictions.inc()
        self._report()

    def _over_bounds(self) -> bool:
        return len(self._entries) > self._max_avatars or self.memory.total_bytes > self._max_bytes

    def _report(self) -> None:
        if self._metrics is None:
            return
        memory = self.memory
        self._metrics.avatar_cache_avatars.set(len(self._entries))
        self._metrics.avatar_cache_bytes.labels(memory="host").set(memory.host_bytes)
        self._metrics.avatar_cache_bytes.labels(memory="device").set(memory.device_bytes)
