"""How G's lips cope with music and noise (needs ../shared/data and a prepared cache).

    python tools/background_robustness.py [--weights DIR] [--music FILE ...]

Prints (1) the mean inner-lip opening G makes for digital silence, speech and backgrounds with
no voice, and (2) mouth LMD per frame and aperture r on the GRID s1 test clips with each
background mixed into the speech waveform at 10 dB (and saw notes at 0 dB). The built-in
backgrounds (saw-wave notes; pink noise with mains hum) are made differently from the training
synthesiser (``train/backgrounds.py``); ``--music`` adds real recordings, looped or cropped.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ventriloquist.audio import load_audio
from ventriloquist.config import SAMPLE_RATE as SR
from ventriloquist.data.cache import load_clip, load_index
from ventriloquist.evaluate.metrics import aperture_corr, lmd_relative
from ventriloquist.face import topology
from ventriloquist.motion.speech import SpeechMotion


def saw_notes(seconds: float, rng: np.random.Generator) -> np.ndarray:
    y, t = np.zeros(int(seconds * SR)), 0.0
    while t < seconds:
        f, d = 196 * 2 ** (rng.integers(0, 15) / 12), rng.choice([0.2, 0.4, 0.8])
        tt = np.arange(int(d * SR)) / SR
        wave = sum(np.sin(2 * np.pi * f * h * tt) / h for h in range(1, 12, 1 if rng.random() < 0.5 else 2))
        env = np.minimum(1, tt / 0.02) * np.minimum(1, (d - tt) / 0.05)
        s = int(t * SR)
        e = min(len(y), s + len(tt))
        y[s:e] += (wave * env)[: e - s]
        t += d
    return y


def hum_noise(seconds: float, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * SR)
    f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20)
    pink = np.fft.irfft(np.fft.rfft(rng.normal(size=n)) / np.sqrt(f), n)
    t = np.arange(n) / SR
    return pink / pink.std() + 0.5 * np.sin(2 * np.pi * 50 * t) + 0.2 * np.sin(2 * np.pi * 150 * t)


def from_file(path: Path):
    y = load_audio(path)

    def make(seconds: float, rng: np.random.Generator) -> np.ndarray:
        n = int(seconds * SR)
        z = np.tile(y, n // len(y) + 2)
        s = int(rng.integers(0, len(y)))
        return z[s:s + n]
    return make


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    ap.add_argument("--music", type=Path, nargs="*", default=[], help="real music or noise recordings to add")
    ap.add_argument("--cache", type=Path, default=Path("cache"), help="prepared cache holding the GRID test clips")
    args = ap.parse_args()
    sm = SpeechMotion.from_weights(folder=args.weights)
    kinds = {"saw notes": saw_notes, "pink noise + hum": hum_noise} | {p.stem: from_file(p) for p in args.music}
    rng = np.random.default_rng(1234)

    def opening(y: np.ndarray) -> np.ndarray:
        return topology.mouth_aperture(sm.shapes(*sm.features(y.astype(np.float32)))[0])

    rows = [r for r in load_index(args.cache) if r["corpus"] == "GRID" and r["split"] == "test"]
    if not rows:
        raise SystemExit(f"{args.cache} holds no GRID test clips; run: ventriloquist prepare ../shared/data --out cache")
    speech = np.concatenate([opening(load_audio(r["source"])) for r in rows[:5]])
    print("mean inner-lip opening (IOD), no voice vs speech:")
    print(f"  speech (5 GRID clips): {speech.mean():.4f}")
    print(f"  digital silence: {opening(np.zeros(2 * SR)).mean():.4f}")
    for name, make in kinds.items():
        y = np.concatenate([make(6.0, rng) for _ in range(3)])
        print(f"  {name}: {opening(0.1 * y / (y.std() + 1e-9)).mean():.4f}")
    conds = [("clean", None, 0.0)] + [(f"{k}, 10 dB", k, 10.0) for k in kinds] + [("saw notes, 0 dB", "saw notes", 0.0)]
    scores: dict[str, list[tuple[float, float]]] = {c[0]: [] for c in conds}
    for r in rows:
        clip, y = load_clip(args.cache, r["key"]), load_audio(r["source"])
        for name, kind, snr in conds:
            z = y
            if kind is not None:
                b = kinds[kind](len(y) / SR + 0.1, rng)[: len(y)]
                z = y + b * np.sqrt(np.mean(y ** 2) / np.mean(b ** 2) / 10 ** (snr / 10))
            pred = sm.shapes(*sm.features(z.astype(np.float32)))[0]
            n = min(len(pred), len(clip["shapes"]))
            scores[name].append((lmd_relative(pred[:n], clip["shapes"][:n]), aperture_corr(pred[:n], clip["shapes"][:n])))
    print(f"GRID s1 test ({len(rows)} clips), mouth LMD per frame / aperture r:")
    for name, v in scores.items():
        print(f"  {name}: {np.mean([a for a, _ in v]):.4f} / {np.nanmean([b for _, b in v]):.3f}")


if __name__ == "__main__":
    main()
