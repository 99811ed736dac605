"""A run's main metric at a glance: ``loss ▇▆▅▃▂▁ 2.31 → 0.412 (min 0.401, max 2.31)``.

Pure and stdlib only; ``alerts.from_run`` picks the points, render shows them.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

BLOCKS = "▁▂▃▄▅▆▇█"
DEFAULT_POINTS = 20
MAX_POINTS = 48  # spool.HISTORY_POINTS: what a run keeps


def sparkline(values: Sequence[float]) -> str:
    """One block per value, scaled from the lowest (▁) to the highest (█)."""
    points = [v for v in values if math.isfinite(v)]
    if not points:
        return ""
    low, high = min(points), max(points)
    if high == low:
        return BLOCKS[len(BLOCKS) // 2] * len(points)
    top = len(BLOCKS) - 1
    return "".join(BLOCKS[round((v - low) / (high - low) * top)] for v in points)


def describe(values: Sequence[float]) -> str:
    """The sparkline with first → last and min / max, for one line of an alert."""
    points = [v for v in values if math.isfinite(v)]
    if len(points) < 2:
        return ""
    return (f"{sparkline(points)} {points[0]:.4g} → {points[-1]:.4g} "
            f"(min {min(points):.4g}, max {max(points):.4g})")


def pick_series(
    history: Mapping[str, Sequence[float]], latest: Mapping[str, float],
    metric: Optional[str] = None, points: int = DEFAULT_POINTS,
) -> tuple[Optional[str], list[float]]:
    """The metric to draw (``metric``, else the first one logged) and its last
    ``points`` values, the latest report included."""
    names = [metric] if metric else list(history) or list(latest)
    if not names or (names[0] not in history and names[0] not in latest):
        return None, []
    name = names[0]
    series = [float(v) for v in history.get(name, [])]
    value = latest.get(name)
    if value is not None and (not series or series[-1] != value):
        series.append(float(value))
    return name, series[-max(2, min(points, MAX_POINTS)):]
