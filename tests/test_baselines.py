"""Baselines on synthetic clips whose right answer is known."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ventriloquist.config import MEL_PER_FRAME
from ventriloquist.evaluate import baselines as B
from ventriloquist.evaluate import metrics as M
from ventriloquist.face import topology

ASSET = Path(__file__).resolve().parents[1] / "src" / "ventriloquist" / "assets" / "grid_s1_demo.npz"
N_BINS = 16          # a small synthetic mel keeps the ridge fit fast


@pytest.fixture(scope="module")
def mean_face() -> np.ndarray:
    with np.load(ASSET) as z:
        return M.align_clip(z["landmarks"].astype(np.float64)).mean(0)


def _linear_clips(mean_face, n: int, seed: int, T: int = 60, noise: float = 0.002):
    """Clips whose mouth motion is a fixed linear map of the mel of frames t-1..t+1."""
    rng = np.random.default_rng(seed)
    W = np.random.default_rng(99).normal(0, 0.01 / np.sqrt(3 * MEL_PER_FRAME * N_BINS),
                                         (3 * MEL_PER_FRAME * N_BINS, 40))
    clips = []
    for _ in range(n):
        mel = rng.normal(0, 1, (T * MEL_PER_FRAME, N_BINS)).astype(np.float32)
        x = B.mel_context(mel, 1, T)
        d = (x @ W).reshape(T, 20, 2) + rng.normal(0, noise, (T, 20, 2))
        shapes = np.repeat(mean_face[None], T, 0)
        shapes[:, topology.MOUTH] += d
        clips.append({"mel": mel, "shapes": shapes, "energy": np.abs(rng.normal(size=T))})
    return clips


def test_static_face(mean_face):
    s = B.static_face(mean_face, 7)
    assert s.shape == (7, 68, 2) and np.all(s == mean_face)


def test_energy_jaw_opens_more_for_louder_frames(mean_face):
    energy = np.array([0.0, 0.01, 0.05, 0.1, 0.2, 0.1, 0.0])
    k = B.energy_jaw(mean_face, energy, gain=0.08)
    ap = topology.mouth_aperture(k)
    assert ap[4] > ap[3] > ap[2] > ap[1] > ap[0]
    assert k[4, 8, 1] > k[0, 8, 1]                                  # the chin drops too
    np.testing.assert_allclose(k[:, topology.UPPER_FACE], np.repeat(mean_face[None], 7, 0)[:, topology.UPPER_FACE])
    np.testing.assert_allclose(k.mean(0), mean_face, atol=1e-12)    # centred on the mean face


def test_fit_energy_jaw_recovers_direction_and_gain(mean_face):
    rng = np.random.default_rng(0)
    true_dir = B.anatomical_direction()
    true_dir /= np.linalg.norm(true_dir)
    clips = []
    for _ in range(10):
        e = np.abs(rng.normal(size=50))
        u = B.envelope(e)
        shapes = mean_face[None] + 0.05 * (u - u.mean())[:, None, None] * true_dir[None]
        clips.append({"shapes": shapes + rng.normal(0, 1e-4, shapes.shape), "energy": e})
    fit = B.fit_energy_jaw(clips)
    assert fit.gain == pytest.approx(0.05, rel=0.05)
    assert float((fit.direction * true_dir).sum()) > 0.98
    pred = fit.predict(clips[0]["energy"], clips[0]["shapes"].mean(0))
    assert M.lmd_relative(pred, clips[0]["shapes"]) < 0.2 * M.lmd_relative(
        B.static_face(mean_face, 50), clips[0]["shapes"])


def test_ridge_recovers_a_linear_mouth_from_mel(mean_face):
    train, test = _linear_clips(mean_face, 24, 1), _linear_clips(mean_face, 4, 2)
    model = B.RidgeMouth(context=2, alphas=(1e-1, 1e1, 1e4)).fit(train)
    assert model.alpha in model.val_scores and model.alpha < 1e4
    ys, ps = [], []
    for c in test:
        pred = model.predict(c["mel"], c["shapes"].mean(0))
        assert pred.shape == c["shapes"].shape
        assert np.all(pred[:, topology.UPPER_FACE] == c["shapes"].mean(0)[topology.UPPER_FACE])
        ys.append(c["shapes"][:, topology.MOUTH] - c["shapes"][:, topology.MOUTH].mean(0))
        ps.append(pred[:, topology.MOUTH] - pred[:, topology.MOUTH].mean(0))
    y, p = np.concatenate(ys), np.concatenate(ps)
    r2 = 1 - np.sum((y - p) ** 2) / np.sum(y ** 2)
    assert r2 > 0.9
    c = test[0]
    assert M.lmd_relative(model.predict(c["mel"], c["shapes"].mean(0)), c["shapes"]) < 0.5 * M.lmd_relative(
        B.static_face(c["shapes"].mean(0), len(c["shapes"])), c["shapes"])


def test_mel_context_window_and_edges():
    T = 6
    mel = np.arange(T * MEL_PER_FRAME, dtype=np.float32)[:, None].repeat(2, 1)
    x = B.mel_context(mel, 1, T)
    assert x.shape == (T, 3 * MEL_PER_FRAME * 2)
    frame_first_row = x[:, ::2 * MEL_PER_FRAME]                    # first mel row of frames t-1, t, t+1
    np.testing.assert_array_equal(frame_first_row[2], [4, 8, 12])
    np.testing.assert_array_equal(frame_first_row[0], [0, 0, 4])   # edge: repeats frame 0
