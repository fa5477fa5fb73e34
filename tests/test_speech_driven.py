"""The shipped models on real emotional speech: the face stays a face, whatever the emotion."""
from __future__ import annotations

import numpy as np
import pytest

from ventriloquist.cli import main
from ventriloquist.config import MAX_EXPRESSION
from ventriloquist.face.track import track_video

CLIPS = ["tess/YAF/angry/YAF_cause_angry.flac", "tess/OAF/fear/OAF_back_fear.flac",
         "emodb/03b01Wc.flac", "emodb/08a05Ta.flac"]


@pytest.mark.parametrize("clip,strength", [(c, 1.0) for c in CLIPS] + [(CLIPS[0], MAX_EXPRESSION)])
def test_emotional_speech_keeps_the_face(shared_data, tmp_path, face_path, face_image, clip, strength):
    """Even at the strongest expression a user may ask for, dlib still sees the photo's person."""
    audio = shared_data / "speech_emotion" / clip
    if not audio.is_file():
        pytest.skip(f"{audio} is not present")
    out = tmp_path / "o.mp4"
    assert main(["generate", "--face", str(face_path), "--audio", str(audio), "--out", str(out),
                 "--size", "256", "--crop", "face", "--expression", str(strength), "--quiet"]) == 0
    from ventriloquist.evaluate.metrics import identity_distance
    from ventriloquist.video import read_frames
    frames = list(read_frames(out))
    ident = identity_distance(face_image, frames, every=5)
    assert ident["no_face"] == 0 and ident["max"] < 0.6
    k, _, _ = track_video(out, progress=False)
    from ventriloquist.face.topology import mouth_aperture
    assert np.ptp(mouth_aperture(k)) > 0.05            # the lips move with the speech
