"""Evaluation: metrics, baselines, plots and the report that ``ventriloquist evaluate`` writes."""
from __future__ import annotations

from pathlib import Path


def evaluate(data: Path, out: Path, quick: bool = False, progress: bool = True, cache: Path = Path("cache")) -> dict:
    from .report import evaluate as run
    return run(data, out, quick=quick, progress=progress, cache=cache)
