"""The leak detector of the soak on made-up series: noise and the rise and fall of live sessions are not leaks;
a resource that keeps a little of every session is."""

from __future__ import annotations

import numpy as np
import pytest

from bench.soak_trend import growth

SAMPLES = 90
SESSIONS_ENDED = 27
"""The CI soak's scale: a sample a second, three sessions at once churning about every ten seconds."""


def ended_counts() -> list[int]:
    return [SESSIONS_ENDED * number // SAMPLES for number in range(SAMPLES)]


def live_sessions_sawtooth() -> np.ndarray:
    """Descriptors of three live sessions, each holding 6 while it negotiates and 4 after, starting and ending at
    staggered times: the count swings by a dozen without any leak."""
    phase = np.arange(SAMPLES) % 10
    return 40 + 4 * 3 + np.where(phase < 2, 6, 0) + np.where(phase == 5, -4, 0)


def test_descriptors_that_swing_with_the_live_sessions_do_not_leak() -> None:
    trend = growth(ended_counts(), live_sessions_sawtooth().tolist())
    assert not trend.leaks(0.5)
    assert trend.flat(0.05)


def test_one_descriptor_kept_by_every_second_session_is_a_leak() -> None:
    kept = np.array(ended_counts()) // 2
    trend = growth(ended_counts(), (live_sessions_sawtooth() + kept).tolist())
    assert trend.per_session == pytest.approx(0.5, abs=0.2)
    assert trend.leaks(0.25)


def test_noisy_memory_with_outliers_is_flat() -> None:
    rng = np.random.default_rng(7)
    rss = 300 + rng.normal(0, 4, SAMPLES)
    rss[rng.choice(SAMPLES, 6, replace=False)] += 60  # a burst now and then
    trend = growth(ended_counts(), rss.tolist())
    assert not trend.leaks(2.0)
    assert trend.flat(0.05)


def test_memory_growing_three_mib_per_ended_session_leaks_through_the_noise() -> None:
    rng = np.random.default_rng(7)
    rss = 300 + 3.0 * np.array(ended_counts()) + rng.normal(0, 8, SAMPLES)
    trend = growth(ended_counts(), rss.tolist())
    assert trend.leaks(2.0)
    assert not trend.flat(0.05)
    assert trend.last_quarter > trend.first_quarter


def test_samples_all_taken_at_one_count_give_no_slope() -> None:
    trend = growth([3] * 8, [10.0, 11, 12, 13, 14, 15, 16, 17])
    assert np.isnan(trend.per_session) and not trend.leaks(0.5)


def test_too_few_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="at least four samples"):
        growth([0, 1, 2], [1.0, 2.0, 3.0])
