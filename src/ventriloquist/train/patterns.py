"""Stage ``patterns``: what each emotion does to a face, measured on the emotion videos (motion/expression.py).

Reads the prepared cache's emotion clips (MEAD, CREMA-D: each actor's emotions and their neutral
clip, landmarks already tracked and aligned) and measures, per actor, each emotion's landmarks
minus the neutral's; the actors' patterns are averaged. Deterministic (no seed, no network);
``--publish`` installs the result as the ``patterns`` weights (a few KB).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.cache import load_clip, load_index
from ..errors import InputError
from . import TrainOptions
from .common import load_config, write_json
from .expression import ensure_cache

RECIPE = "ventriloquist train patterns --config configs/patterns.toml --publish"
VERSION = "1"


@dataclass
class PatternsConfig:
    cache: str = "cache"              # the prepared cache (built from --data on first use)


def run(opts: TrainOptions) -> dict:
    from ..motion.expression import describe, measure
    from ..emotion.vocabulary import EMOTIONS
    cfg = load_config(PatternsConfig, opts.config)
    cache = ensure_cache(Path(cfg.cache), opts.data)
    rows = [r for r in load_index(cache) if r["emotion"]]
    clips = {(r["speaker"], r["emotion"]): load_clip(cache, r["key"])["shapes"] for r in rows}
    patterns, per_actor = measure(clips)
    if not patterns.actors:
        raise InputError(f"{cache} holds no actor with a neutral emotion clip; prepare the emotion videos first "
                         "(ventriloquist prepare ../shared/data --out cache)")
    out = Path(opts.out) / "patterns"
    out.mkdir(parents=True, exist_ok=True)
    metrics = {"actors": list(patterns.actors), "per_actor": per_actor,
               "patterns": {e: describe(patterns.patterns[i]) for i, e in enumerate(EMOTIONS)},
               "articulation": {e: round(float(patterns.articulation[i]), 3) for i, e in enumerate(EMOTIONS)}}
    checkpoint = {"patterns": patterns.patterns, "articulation": patterns.articulation, "actors": list(patterns.actors)}
    np.savez(out / "patterns.npz", patterns=patterns.patterns, articulation=patterns.articulation)
    if opts.publish:
        import torch

        from ..weights import publish
        ckpt = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in checkpoint.items()}
        metrics["published"] = str(publish("patterns", ckpt, VERSION, RECIPE))
    write_json(out / "metrics.json", metrics)
    return metrics
