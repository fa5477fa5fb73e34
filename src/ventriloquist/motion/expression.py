"""Expressions shaped like real ones: what each emotion does to a face, measured on real actors.

For every actor of the emotion videos (MEAD's three, CREMA-D's one) an emotion's pattern is the
median of its clip's aligned landmarks minus the median of the same actor's neutral clip, in
inter-ocular units: brows, lids, cheeks, mouth corners and lips as that person moved them. The
clips are speech, so an emotion also opens the mouth more or less; that part is not a fixed
pose but a gain on the speech's own opening (``articulation``), and the pattern's mouth is taken
at the neutral clip's opening (each jaw and lip coordinate's slope on the opening, fitted on the
actor's frames, takes it out). The patterns of the actors are averaged, and added to G's lips
at inference; an emotion shows at full intensity as the actors showed it, on any face.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..emotion.vocabulary import EMOTIONS, N_EMOTIONS, to_index
from ..face import topology

NEUTRAL = EMOTIONS.index("neutral")
ARTICULATION_RANGE = (0.8, 2.0)      # an emotion scales the speech's opening at most this much (MEAD: neutral is level 1, the rest level 3)
ONSET_S = 0.3                        # an expression builds over about this long (real faces: 0.3-0.7 s) ...
OFFSET_S = 1.0                       # ... and fades over this long
CONFIDENT = 0.5                      # auto emotion: Sp2Emo's belief (smoothed) must pass this to show at all ...
FULL_BELIEF = 1.0                    # ... and in full at this belief (acted speech sits at 0.6-0.8, but at 0.75 the
                                     # strongest --expression (1.25) on angry speech lost the person: dlib 0.62) ...
EVIDENCE_S = 0.5                     # ... gathered over about this much voiced speech ...
VOICED_S = 0.25                      # ... of which at least this much must have been heard
DISTINCT = 0.5                       # each pattern moves this share of its difference away from its nearest other
                                     # emotion's: angry and disgust (brows lowered in both) apart
FACE_POINTS = np.arange(17, 68)      # what an expression moves: brows, nose, eyes, mouth (the jaw outline follows
                                     # the head's pitch more than the face)


@dataclass
class ExpressionPatterns:
    """Per emotion of the vocabulary: a landmark pattern (7, 68, 2; neutral is zero) and a gain on the
    speech's opening (7,; neutral is 1)."""

    patterns: np.ndarray
    articulation: np.ndarray
    actors: tuple[str, ...] = ()

    @classmethod
    def from_weights(cls, folder: Path | None = None) -> "ExpressionPatterns":
        from ..weights import read_checkpoint
        ckpt = read_checkpoint("patterns", folder)
        return cls(np.asarray(ckpt["patterns"], np.float32), np.asarray(ckpt["articulation"], np.float32),
                   tuple(ckpt.get("actors", ())))

    def offsets(self, weights: np.ndarray) -> np.ndarray:
        """Landmark offsets (T, 68, 2) for per-frame emotion weights (T, 7) (each row sums to at most 1)."""
        w = np.asarray(weights, np.float32)
        return (w @ self.patterns.reshape(N_EMOTIONS, -1)).reshape(len(w), 68, 2)

    def gain(self, weights: np.ndarray) -> np.ndarray:
        """Per-frame gain (T,) on the speech's opening for per-frame emotion weights (T, 7)."""
        w = np.asarray(weights, np.float32)
        return 1.0 + w @ (self.articulation - 1.0)


def _opening_slopes(frames: np.ndarray) -> np.ndarray:
    """Per jaw and lip coordinate, its least-squares slope on the inner-lip opening over an actor's frames
    (len(LOWER_FACE), 2): how that point moves as the mouth opens by one inter-ocular unit."""
    a = topology.mouth_aperture(frames)
    a = a - a.mean()
    x = frames[:, topology.LOWER_FACE] - frames[:, topology.LOWER_FACE].mean(axis=0)
    return np.einsum("t,tpc->pc", a, x) / max(float(a @ a), 1e-9)


def measure(clips: dict[tuple[str, str], np.ndarray]) -> tuple[ExpressionPatterns, dict]:
    """Patterns from aligned canonical landmarks of emotion clips, ``{(actor, label): (T, 68, 2)}`` (labels in
    any corpus spelling; an actor needs a neutral clip). Returns the patterns and, per actor and emotion, what
    was measured (brow-to-eye distance change, corner lift, width change, opening ratio)."""
    actors = sorted({a for a, lab in clips if to_index(lab) == NEUTRAL})
    sums = np.zeros((N_EMOTIONS, 68, 2))
    gains = [[] for _ in range(N_EMOTIONS)]
    counts = np.zeros(N_EMOTIONS)
    report: dict = {}
    for actor in actors:
        own = {to_index(lab): np.asarray(k, np.float64) for (a, lab), k in clips.items() if a == actor
               and to_index(lab) is not None}
        neutral = own[NEUTRAL]
        slopes = _opening_slopes(np.concatenate(list(own.values())))
        base, base_open = np.median(neutral, axis=0), np.median(topology.mouth_aperture(neutral))
        for e, k in own.items():
            if e == NEUTRAL:
                continue
            d = np.median(k, axis=0) - base
            opened = np.median(topology.mouth_aperture(k))
            d[topology.LOWER_FACE] -= (opened - base_open) * slopes
            sums[e] += d
            counts[e] += 1
            ratio = float(np.clip(topology.mouth_aperture(k).mean() / max(topology.mouth_aperture(neutral).mean(), 1e-6),
                                  *ARTICULATION_RANGE))
            gains[e].append(ratio)
            report.setdefault(actor, {})[EMOTIONS[e]] = describe(d) | {"opening_ratio": round(ratio, 3)}
    patterns = np.where(counts[:, None, None] > 0, sums / np.maximum(counts, 1)[:, None, None], 0.0)
    art = np.array([np.mean(g) if g else 1.0 for g in gains])
    return ExpressionPatterns(distinct(patterns).astype(np.float32), art.astype(np.float32), tuple(actors)), report


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine between two landmark displacements (68, 2) over what an expression moves (FACE_POINTS)."""
    a, b = a[FACE_POINTS].ravel(), b[FACE_POINTS].ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def distinct(patterns: np.ndarray, share: float = DISTINCT) -> np.ndarray:
    """Each emotion's pattern moved ``share`` of its difference away from the most similar other emotion's:
    what sets it apart grows. The actors' means of angry and disgust are alike (cosine 0.9: brows lowered,
    eyes narrowed), and Exp2Emo read our angry as disgust in 11 of 12 windows; apart, every emotion reads
    right, each still at cosine >= 0.86 to the actors' mean. Averaging four actors' styles had also shrunk
    the patterns (happy to 0.7 of an actor's own), which this gives back in part."""
    shown = [e for e in range(len(patterns)) if e != NEUTRAL and patterns[e].any()]
    out = patterns.astype(np.float64).copy()
    for e in shown:
        others = [f for f in shown if f != e]
        if not others:
            continue
        near = max(others, key=lambda f: cosine(patterns[e], patterns[f]))
        out[e] = patterns[e] + share * (patterns[e] - patterns[near])
    return out


def describe(d: np.ndarray) -> dict:
    """What a displacement (68, 2; canonical, y down, IOD units) does, region by region: brows towards the eyes
    (+ lowered), inner brows together (+ knitted), corners lifted relative to the lip centre (+ a smile), mouth
    wider (+), eyes more open (+), in inter-ocular units."""
    brow_to_eye = float(d[topology.BROWS, 1].mean() - d[topology.EYES, 1].mean())
    knit = float(d[21, 0] - d[22, 0])                       # inner brow ends moving towards each other
    lift = topology.corner_lift(d)
    width = float(d[54, 0] - d[48, 0])
    eyes = float(-(d[[37, 38, 43, 44], 1].mean() - d[[40, 41, 46, 47], 1].mean()))
    return {"brows_to_eyes": round(brow_to_eye, 4), "brows_knit": round(knit, 4), "corner_lift": round(lift, 4),
            "mouth_width": round(width, 4), "eyes_open": round(eyes, 4)}


class ExpressionTrack:
    """Auto emotion that holds back when unsure, frame by frame (offline and live alike).

    Sp2Emo's per-frame belief is gathered over about EVIDENCE_S of voiced speech (silence adds
    nothing); an emotion shows only where that evidence passes CONFIDENT, rising to full at
    FULL_BELIEF, and in full only once VOICED_S of voice has been heard. The shown weights then move towards
    that target as real faces do: building over ONSET_S, fading over OFFSET_S. Neutral or unsure
    speech leaves the face as the photo shows it.

    Live, evidence is gathered as the voice comes (``both_ways=False``; the state carries between calls).
    Offline the whole speech is known: evidence is also gathered backwards from each phrase's end, so an
    emotion heard through a short phrase shows from its start rather than only once half a second of it
    has passed (on 1-3-s acted clips, Exp2Emo read the heard emotion on the face of 43 % of EmoDB's
    with a causal track, 56 % with this).
    """

    def __init__(self, fps: float = 25.0, both_ways: bool = False) -> None:
        self.dt = 1.0 / fps
        self.both_ways = both_ways
        self.evidence = np.zeros(N_EMOTIONS)
        self.evidence[NEUTRAL] = 1.0
        self.voiced = 0.0
        self.shown = np.zeros(N_EMOTIONS)

    def _gathered(self, probs: np.ndarray, voiced: np.ndarray, evidence: np.ndarray, heard: float
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Per frame, the evidence (T, 7) and the share of voice heard (T,), from a starting state."""
        a = self.dt / EVIDENCE_S
        ev, vo = np.zeros((len(probs), N_EMOTIONS)), np.zeros(len(probs))
        for t in range(len(probs)):
            if voiced[t]:
                evidence = evidence + (np.asarray(probs[t], np.float64) - evidence) * a
            heard += (float(voiced[t]) - heard) * a
            ev[t], vo[t] = evidence, heard
        return ev, vo

    def __call__(self, probs: np.ndarray, voiced: np.ndarray, gate: np.ndarray | None = None) -> np.ndarray:
        """Weights (T, 7) (neutral's column zero) for per-frame Sp2Emo distributions (T, 7), voiced frames (T,)
        and an optional silence gate (T,) in [0, 1] that lets the expression relax in long pauses."""
        ev, vo = self._gathered(probs, voiced, self.evidence, self.voiced)
        if len(ev):
            self.evidence, self.voiced = ev[-1].copy(), float(vo[-1])
        if self.both_ways:
            start = np.eye(N_EMOTIONS)[NEUTRAL]
            back, heard = self._gathered(probs[::-1], voiced[::-1], start, 0.0)
            ev, vo = np.maximum(ev, back[::-1]), np.maximum(vo, heard[::-1])
        target = np.clip((ev - CONFIDENT) / (FULL_BELIEF - CONFIDENT), 0.0, 1.0)
        target[:, NEUTRAL] = 0.0
        target *= np.minimum(1.0, vo / VOICED_S)[:, None]
        if gate is not None:
            target *= np.asarray(gate, np.float64)[:, None]
        out = np.zeros((len(probs), N_EMOTIONS), np.float32)
        for t in range(len(probs)):
            rate = np.where(target[t] > self.shown, self.dt / ONSET_S, self.dt / OFFSET_S)
            self.shown += (target[t] - self.shown) * np.minimum(rate, 1.0)
            out[t] = self.shown
        return out
