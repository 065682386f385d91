"""The tools' statistics (pure, unit-tested in tests/test_bench_stats.py): percentiles of the
samples the chaos suite, the hoarding check and the bench collect, and the bench's open-loop
timeline. Only the standard library."""

from __future__ import annotations


def percentile(samples: list[float], p: float) -> float:
    """The p-th percentile (0..100) by linear interpolation between closest ranks."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median_and_max(samples: list[float], unit: str = "s") -> str:
    """``p50 1.2 s, max 3.4 s``: how the chaos suite and the hoarding check report a wait."""
    return f"p50 {percentile(samples, 50):.1f} {unit}, max {max(samples, default=0):.1f} {unit}"


def schedule(rate: float, seconds: float, start: float = 0.0) -> list[float]:
    """Send times of an open-loop load: one request every 1/rate s for ``seconds``."""
    count = int(rate * seconds)
    return [start + i / rate for i in range(count)]
