"""Percentiles and the small numeric helpers every scenario shares."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Latency:
    """Latency percentiles in seconds (nearest-rank; exact for the samples we have)."""

    count: int
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    def as_ms(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            "mean": ms(self.mean),
            "p50": ms(self.p50),
            "p90": ms(self.p90),
            "p95": ms(self.p95),
            "p99": ms(self.p99),
            "max": ms(self.max),
        }


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (NaN when empty)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(samples: Sequence[float]) -> Latency:
    ordered = sorted(samples)
    mean = sum(ordered) / len(ordered) if ordered else math.nan
    return Latency(
        count=len(ordered),
        mean=mean,
        p50=percentile(ordered, 0.50),
        p90=percentile(ordered, 0.90),
        p95=percentile(ordered, 0.95),
        p99=percentile(ordered, 0.99),
        max=ordered[-1] if ordered else math.nan,
    )


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2) if math.isfinite(seconds) else math.nan


def ratio(value: float, baseline: float) -> float:
    if baseline <= 0 or not math.isfinite(baseline) or not math.isfinite(value):
        return math.nan
    return value / baseline


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2
