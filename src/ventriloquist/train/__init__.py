"""Training recipes, one module per stage: ``emotion`` (Sp2Emo), ``expression`` (Exp2Emo), ``generator`` (G + D),
``mouths`` (the real mouth interiors the renderer paints), ``patterns`` (what each emotion does to a face).

Each stage module exposes ``run(opts: TrainOptions) -> dict`` (its final metrics). The
paper's schedule: train the emotion nets first, freeze them, then train G and D.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

STAGES = ("emotion", "expression", "generator", "mouths", "patterns")
DEFAULT_DATA = Path(os.environ.get("VENTRILOQUIST_DATA", "../shared/data"))


@dataclass
class TrainOptions:
    config: Path | None = None      # TOML file overriding the stage's defaults (configs/<stage>.toml)
    data: Path = DEFAULT_DATA       # data root (the layout of ../shared/data) or a prepared cache
    out: Path = Path("runs")        # checkpoints, logs, metrics go to out/<stage>/
    epochs: int | None = None       # overrides the config
    seed: int = 0
    resume: bool = False            # continue from out/<stage>/last.pt
    smoke: bool = False             # a few steps on a tiny subset (CI)
    publish: bool = False           # copy the best checkpoint into the package's weights/
    device: str = "cpu"


def run(stage: str, opts: TrainOptions) -> dict:
    import importlib
    from .distributed import leave
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    try:
        return importlib.import_module(f".{stage}", __name__).run(opts)
    finally:
        leave()                 # under torchrun: the process group ends with the stage
