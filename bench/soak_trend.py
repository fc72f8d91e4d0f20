"""Does a resource keep growing as sessions come and go? A leak grows with every session that ends; noise does not.

Each sample pairs a reading of the server process (open descriptors, threads, resident memory) with the number of
sessions ended when it was taken. `growth` fits the readings against that count with the Theil-Sen estimator,
the median of the slopes between every two samples taken at different counts, so bursts (sessions starting
together, a garbage collection, a noisy neighbour) move it little; and it compares the median of the last quarter
of the samples with that of the first. A resource leaks when it grows by more than a stated amount per ended
session; it is flat when the two quarters differ by less than a stated share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Growth:
    per_session: float
    """Theil-Sen slope: how much the reading grows per ended session (nan with fewer than two counts)."""
    first_quarter: float
    """Median of the first quarter of the samples."""
    last_quarter: float
    """Median of the last quarter."""

    @property
    def change(self) -> float:
        """Last quarter against the first, as a share of the first."""
        return (self.last_quarter - self.first_quarter) / self.first_quarter if self.first_quarter else math.nan

    def leaks(self, limit_per_session: float) -> bool:
        return self.per_session > limit_per_session

    def flat(self, share: float) -> bool:
        return abs(self.change) <= share


def growth(ended: Sequence[int], readings: Sequence[float]) -> Growth:
    """`readings[i]` taken when `ended[i]` sessions had ended; in the order they were taken."""
    if len(ended) != len(readings) or len(readings) < 4:
        raise ValueError("growth needs at least four samples, each with its count of ended sessions")
    counts = np.asarray(ended, dtype=np.float64)
    values = np.asarray(readings, dtype=np.float64)
    first, second = np.triu_indices(len(values), k=1)
    apart = counts[second] != counts[first]
    slopes = (values[second] - values[first])[apart] / (counts[second] - counts[first])[apart]
    quarter = len(values) // 4
    return Growth(
        per_session=float(np.median(slopes)) if slopes.size else math.nan,
        first_quarter=float(np.median(values[:quarter])),
        last_quarter=float(np.median(values[-quarter:])),
    )
