"""Training-time sequence sampling for G: speed augmentation keeps speech and landmarks paired."""
import numpy as np
import pytest

from ventriloquist.config import MEL_PER_FRAME, N_MELS
from ventriloquist.train.generator import GeneratorConfig, _segment


def _ramp_clip(t: int = 120) -> dict:
    """A clip whose every Mel row and landmark carry their own time stamp (in frames)."""
    rows = np.arange(t * MEL_PER_FRAME, dtype=np.float32) / MEL_PER_FRAME
    return {"mel_n": np.repeat(rows[:, None], N_MELS, axis=1),
            "dk": np.repeat(np.arange(t, dtype=np.float32)[:, None, None], 68, axis=1).repeat(2, axis=2),
            "q_emo": np.arange(t, dtype=np.float32)[:, None].repeat(4, axis=1), "l_emo": np.ones(7, np.float32) / 7}


@pytest.mark.parametrize("speed", [0.0, 0.3])
def test_segment_keeps_speech_and_landmarks_in_step(speed):
    cfg = GeneratorConfig(speed=speed, mel_gain=0.0, mel_noise=0.0)
    rng = np.random.default_rng(0)
    clip = _ramp_clip()
    rates = []
    for _ in range(20):
        s = _segment(clip, 50, rng, cfg)
        assert s["mel"].shape == (50 * MEL_PER_FRAME, N_MELS) and s["dk"].shape == (50, 68, 2)
        frame_time = s["dk"][:, 0, 0]
        # the first Mel row of frame j was recorded at frame j's time (columns not hit by the band mask)
        mel_time = np.median(s["mel"][::MEL_PER_FRAME], axis=1)
        np.testing.assert_allclose(mel_time, frame_time, atol=1e-4)
        np.testing.assert_allclose(s["q"][:, 0], frame_time, atol=1e-4)
        rates.append(np.diff(frame_time).mean())
    if speed:
        assert min(rates) < 0.9 and max(rates) > 1.1 and max(rates) <= 1.3 + 1e-6
    else:
        np.testing.assert_allclose(rates, 1.0)


def test_segment_of_a_short_clip_holds_its_last_frame():
    cfg = GeneratorConfig(speed=0.2, mel_gain=0.0, mel_noise=0.0)
    s = _segment(_ramp_clip(30), 50, np.random.default_rng(1), cfg)
    assert s["dk"][-1, 0, 0] == 29 and s["dk"].shape[0] == 50
