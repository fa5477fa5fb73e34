"""Re-synthesis scores: width variation, lips closed in loud speech, and clips whose mouth does not follow their speech."""
from __future__ import annotations

import numpy as np

from ventriloquist.evaluate.resynthesis import CLOSED_APERTURE, aggregate, followable, loud_frames, scores
from ventriloquist.face import topology


def _face(opening: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """A schematic face (T, 68, 2) with IOD 1 whose inner lips part by ``opening`` and corners widen by ``spread``."""
    t = len(opening)
    k = np.zeros((t, 68, 2))
    k[:, 36], k[:, 39], k[:, 42], k[:, 45] = (-0.7, 0), (-0.3, 0), (0.3, 0), (0.7, 0)     # eyes: centres 1 apart
    k[:, 48, 0], k[:, 54, 0] = -0.4 - spread, 0.4 + spread
    for u, d in topology.INNER_LIP_PAIRS:
        k[:, u, 1], k[:, d, 1] = 1.0, 1.0 + opening
    return k


def test_width_ratio_and_loud_closure():
    t = np.arange(200)
    energy = np.abs(np.sin(t / 5.0))
    real = _face(0.2 * energy, 0.05 * np.sin(t / 7.0))
    half = _face(0.2 * energy, 0.025 * np.sin(t / 7.0))
    s = scores(half, real, loud=loud_frames(energy, len(t)))
    assert abs(s["width_ratio"] - 0.5) < 0.02 and s["follow_r"] > 0.99
    assert s["loud_closed"] == 0 and s["loud_closed_real"] == 0
    shut = _face(np.zeros(len(t)), np.zeros(len(t)))
    s = scores(shut, real, loud=loud_frames(energy, len(t)))
    assert s["loud_closed"] == 1.0 and topology.mouth_aperture(shut).max() < CLOSED_APERTURE


def test_a_mouth_that_ignores_its_speech_is_left_out_of_the_medians():
    t = np.arange(300)
    energy = np.abs(np.sin(t / 5.0))
    talking = _face(0.2 * energy, np.zeros(len(t)))
    dubbed = _face(0.2 * np.abs(np.sin(t / 3.3 + 1.0)), np.zeros(len(t)))
    assert followable(talking, energy) > 0.9 and followable(dubbed, energy) < 0.15
    row = {"identity_max": 0.3, "face_lost_share": 0.0}
    rows = [{**row, "clip": "a.mp4", "followable": True, "ours": {"follow_r": 0.6}},
            {**row, "clip": "b.mp4", "followable": True, "ours": {"follow_r": 0.4}},
            {**row, "clip": "c.mp4", "followable": False, "ours": {"follow_r": -0.9}, "identity_max": 0.45}]
    med = aggregate(rows)
    assert med["ours"]["follow_r"] == 0.5 and med["not_followable"] == ["c.mp4"]
    assert med["identity_max"] == 0.45          # extremes still cover every clip
