"""Summary statistics of repeated measurements, one rule for every timed quantity."""
from __future__ import annotations

import math
import statistics
from typing import Sequence

from mmedge.errors import BenchError


def percentile_nearest_rank(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile: the smallest value with at least p% of the values <= it,
    i.e. sorted(values)[ceil(p/100 * n) - 1]. No interpolation, so it is always a measured value;
    with few reps (5: the p90 is the maximum) it is honest about how little it knows."""
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)), 1) - 1]


def summarize(values: Sequence[float]) -> dict:
    """{median, p90, mean, sd, min, max, n, values}; sd is the sample standard deviation (n - 1),
    0 for a single value."""
    values = [float(v) for v in values]
    if not values:
        raise BenchError("no measurements to summarize; --reps must be at least 1")
    return {
        "median": statistics.median(values),
        "p90": percentile_nearest_rank(values, 90),
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": values,
    }
