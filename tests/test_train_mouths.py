"""The `mouths` stage: real mouth interiors cut from licensed talking-face clips only."""
import csv

import numpy as np
import pytest

from ventriloquist.errors import InputError
from ventriloquist.render.mouth import S_SAMPLES, V_SAMPLES, InteriorLibrary, MouthPainter
from ventriloquist.train.mouths import MouthsConfig, build, clips


def test_only_clips_whose_licence_allows_shipping_are_read(shared_data):
    rows = clips(shared_data, MouthsConfig(s1_clips=5))
    assert rows and all("research" not in r["licence"].lower() and "CC BY 4.0" in r["licence"] for r in rows)
    with open(shared_data / "talking_face" / "wild" / "clips.csv", newline="") as f:
        wild = {r["path"] for r in csv.DictReader(f)}
    assert not any(r["path"].name in wild for r in rows)
    assert sum(r["speaker"] == "s1" for r in rows) == 5


def test_a_smoke_library_is_usable_by_the_renderer(shared_data, face_image, face_landmarks):
    lib = build(shared_data, MouthsConfig(bin_width=0.05), smoke=True)
    n = len(lib["textures"])
    assert lib["textures"].shape == (n, V_SAMPLES, S_SAMPLES, 3) and lib["textures"].dtype == np.uint8
    assert lib["gaps"].shape == (n, 3) and lib["profile"].shape == (n, S_SAMPLES)
    assert len(lib["speakers"]) == 2 and set(lib["speaker"]) == {0, 1}
    means = lib["gaps"].mean(1)
    for m in range(2):                      # one interior per bin of opening at most
        bins = np.floor(means[lib["speaker"] == m] / 0.05)
        assert len(bins) == len(set(bins))
    painter = MouthPainter(face_image, face_landmarks.astype(np.float64), 10.0, InteriorLibrary.from_checkpoint(lib))
    assert np.isfinite(painter.library.textures).all()


def test_no_licensed_clips_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="CC BY 4.0 licence"):
        clips(tmp_path, MouthsConfig())
