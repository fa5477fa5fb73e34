"""Corpus discovery, the clip cache and `prepare` on a tiny synthetic corpus made on the fly."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from ventriloquist.audio import load_audio, num_frames
from ventriloquist.config import FPS, MEL_PER_FRAME, N_MELS, N_MFCC, SAMPLE_RATE
from ventriloquist.data import cache
from ventriloquist.data.prepare import prepare
from ventriloquist.data.video_corpora import discover, parse_video_path, scan_folder
from ventriloquist.errors import InputError

N_VIDEO_FRAMES = 8
AUDIO_S = 0.4                   # the writer trims the track to the video's length


def _write_video(path: Path, frames: list[np.ndarray], audio: np.ndarray | None) -> Path:
    from ventriloquist.config import VideoConfig
    from ventriloquist.video import VideoWriter
    h, w = frames[0].shape[:2]
    with VideoWriter(path, w, h, VideoConfig(fps=FPS, preset="ultrafast"), audio=audio) as vw:
        for f in frames:
            vw.write(f)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, face_image) -> Path:
    """A face video with speech-like audio, a faceless video and a corrupt file."""
    root = tmp_path_factory.mktemp("corpus")
    crop = face_image[20:260, 120:360]          # the astronaut's head, 240x240
    frames = [np.roll(crop, (i % 3, i % 2), axis=(0, 1)) for i in range(N_VIDEO_FRAMES)]
    t = np.arange(int(AUDIO_S * SAMPLE_RATE)) / SAMPLE_RATE
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    _write_video(root / "talker.mp4", frames, audio)
    _write_video(root / "blank.mp4", [np.full((64, 64, 3), 90, np.uint8)] * 4, audio)
    (root / "broken.mp4").write_bytes(b"this is not a video" * 50)
    (root / "notes.txt").write_text("not a video")
    return root


@pytest.mark.parametrize("workers", [1, 2])
def test_prepare_synthetic_corpus(corpus, tmp_path, workers):
    out = tmp_path / "cache"
    res = prepare([corpus], out, workers=workers, progress=False)
    assert res["found"] == 3 and res["prepared"] == 1 and res["skipped"] == 2 and res["clips"] == 1

    rows = cache.load_index(out)
    assert len(rows) == 1
    row = rows[0]
    assert set(cache.INDEX_COLUMNS) <= set(row)
    assert row["corpus"] == "custom" and row["split"] == "train" and row["emotion"] == ""
    assert row["has_audio"] is True and row["source"].endswith("talker.mp4")

    clip = cache.load_clip(out, row["key"])
    t = num_frames(len(load_audio(corpus / "talker.mp4")))       # T follows the audio
    assert row["frames"] == t
    assert clip["landmarks"].shape == (t, 68, 2) and clip["landmarks"].dtype == np.float32
    assert clip["shapes"].shape == (t, 68, 2) and clip["pose"].shape == (t, 4)
    assert clip["mel"].shape == (t * MEL_PER_FRAME, N_MELS) and clip["mfcc"].shape == (t * MEL_PER_FRAME, N_MFCC)
    assert clip["energy"].shape == (t,) and clip["energy"].max() > 0
    assert clip["fps"] == FPS and (clip["width"], clip["height"]) == (240, 240)
    assert clip["format"] == cache.FORMAT
    # landmarks in pixels inside the frame; canonical eyes one unit apart
    assert 0 < clip["landmarks"][..., 0].min() and clip["landmarks"][..., 0].max() < 240
    eyes = clip["shapes"][:, 36:42].mean(1), clip["shapes"][:, 42:48].mean(1)
    assert np.allclose(np.linalg.norm(eyes[1] - eyes[0], axis=-1), 1.0, atol=1e-3)

    with open(out / cache.SKIPPED_FILE, newline="") as f:
        skipped = {Path(r["source"]).name: r["reason"] for r in csv.DictReader(f)}
    assert set(skipped) == {"blank.mp4", "broken.mp4"}
    assert "no face" in skipped["blank.mp4"]
    assert all(r and "\n" not in r for r in skipped.values())

    # resumable: a second run extracts nothing new and keeps the index
    again = prepare([corpus], out, workers=workers, progress=False)
    assert again["prepared"] == 0 and again["cached"] == 1 and again["clips"] == 1
    assert [c["key"] for c in cache.iter_clips(out, split="train", has_audio=True)] == [row["key"]]
    assert list(cache.iter_clips(out, split="test")) == []
    assert list(cache.iter_clips(out, corpus="GRID")) == []


def test_a_clip_followed_another_way_is_made_again(corpus, tmp_path):
    """evaluate follows a user's faces with the box following the picture, the training cache as its weights
    were made: a clip cached one way is not taken for the other, and either way is kept once made."""
    out = tmp_path / "cache"
    clip = corpus / "talker.mp4"
    assert prepare([clip], out, workers=1, progress=False)["prepared"] == 1
    carried = prepare([clip], out, workers=1, progress=False, carry_box=True)
    assert carried["prepared"] == 1 and carried["cached"] == 0
    assert prepare([clip], out, workers=1, progress=False, carry_box=True)["cached"] == 1
    assert prepare([clip], out, workers=1, progress=False)["prepared"] == 1


def test_stale_cache_is_refused(corpus, tmp_path):
    out = tmp_path / "cache"
    prepare([corpus / "talker.mp4"], out, workers=1, progress=False)
    (out / cache.META_FILE).write_text('{"format": 0}')
    with pytest.raises(InputError, match="format 0"):
        cache.load_index(out)
    with pytest.raises(InputError, match="format 0"):
        prepare([corpus / "talker.mp4"], out, workers=1, progress=False)


def test_missing_cache_and_inputs_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="prepare"):
        cache.load_index(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        prepare([tmp_path / "nope"], tmp_path / "c", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no videos found"):
        prepare([tmp_path / "empty"], tmp_path / "c", progress=False)


# --- layout detection ---------------------------------------------------------------------------

def test_parse_mead():
    it = parse_video_path(Path("/d/MEAD/M030/video/front/angry/level_3/001.mp4"))
    assert (it.corpus, it.speaker, it.emotion, it.intensity, it.split) == ("MEAD", "M030", "angry", 3, "train")
    assert parse_video_path(Path("/d/W037/video/front/contempt/level_1/002.mp4")).emotion == "disgust"
    assert parse_video_path(Path("/d/W037/video/front/happy/level_2/002.mp4")).split == "test"
    assert parse_video_path(Path("/d/M030/video/left_60/angry/level_3/001.mp4")) is None


def test_parse_ravdess(tmp_path):
    it = parse_video_path(Path("/d/Actor_01/01-01-05-01-02-01-01.mp4"))
    assert (it.corpus, it.speaker, it.emotion, it.split, it.intensity) == ("RAVDESS", "01", "angry", "train", 1)
    assert parse_video_path(Path("/d/Actor_22/02-01-02-02-01-01-22.mp4")).split == "test"      # calm, video-only
    assert parse_video_path(Path("/d/Actor_22/02-01-02-02-01-01-22.mp4")).emotion == "neutral"
    assert parse_video_path(Path("/d/Actor_01/01-02-05-01-02-01-01.mp4")) is None               # song
    # the video-only copy is dropped when its audio-video twin is there
    (tmp_path / "Actor_03").mkdir()
    for name in ("01-01-03-01-01-01-03.mp4", "02-01-03-01-01-01-03.mp4"):
        (tmp_path / "Actor_03" / name).write_bytes(b"")
    assert [i.path.name for i in scan_folder(tmp_path)] == ["01-01-03-01-01-01-03.mp4"]


def test_parse_cremad_grid_voxceleb(tmp_path):
    it = parse_video_path(Path("/d/VideoFlash/1001_DFA_ANG_XX.flv"))
    assert (it.corpus, it.speaker, it.emotion, it.split) == ("CREMA-D", "1001", "angry", "train")
    assert parse_video_path(Path("/d/VideoFlash/1085_IEO_HAP_HI.flv")).split == "test"

    (tmp_path / "s1" / "align").mkdir(parents=True)
    (tmp_path / "s1" / "bbaf2n.mpg").write_bytes(b"")
    (tmp_path / "s1" / "align" / "bbaf2n.align").write_text("0 23750 sil\n23750 29500 bin\n")
    it = parse_video_path(tmp_path / "s1" / "bbaf2n.mpg")
    assert (it.corpus, it.speaker, it.split, it.emotion) == ("GRID", "s1", "train", "")
    assert it.alignment == tmp_path / "s1" / "align" / "bbaf2n.align"
    assert parse_video_path(Path("/d/s31/video/bbaf2n.mpg")).split == "test"

    it = parse_video_path(Path("/d/vox2/dev/mp4/id00012/21Uxsk56VDQ/00001.mp4"))
    assert (it.corpus, it.speaker, it.split) == ("VoxCeleb2", "id00012", "train")
    assert parse_video_path(Path("/d/vox2/test/mp4/id00017/01dfn2spqyE/00001.mp4")).split == "test"
    assert parse_video_path(Path("/d/id00012/21Uxsk56VDQ/00001.mp4")).corpus == "VoxCeleb2"


def test_plain_folder_and_keys(tmp_path):
    (tmp_path / "clips" / "sub").mkdir(parents=True)
    for name in ("a.mp4", "sub/b.mov", "sub/.hidden.mp4", "readme.md"):
        (tmp_path / "clips" / name).write_bytes(b"")
    items = discover([tmp_path / "clips"], split="test")
    assert [i.path.name for i in items] == ["a.mp4", "b.mov"]
    assert all(i.corpus == "custom" and i.split == "test" and i.emotion == "" for i in items)
    keys = [i.key for i in items]
    assert len(set(keys)) == 2 and all(k.replace("-", "").replace("_", "").replace(".", "").isalnum() for k in keys)
    assert keys == [i.key for i in discover([tmp_path / "clips"])]          # stable
    # the same video named twice is one clip
    assert len(discover([tmp_path / "clips", tmp_path / "clips" / "a.mp4"])) == 2


def test_shared_layout_discovery(shared_data):
    items = discover([shared_data])
    by = {}
    for it in items:
        by.setdefault(it.corpus, []).append(it)
    assert len(by["GRID"]) == 320 and sum(i.split == "test" for i in by["GRID"]) == 40
    assert len(by["MEAD"]) == 24 and len(by["CREMA-D"]) == 6
    assert all(i.split == "test" and i.emotion for i in by["MEAD"] + by["CREMA-D"])
    assert all(i.alignment is not None and i.transcript for i in by["GRID"])
    assert len({i.key for i in items}) == len(items)


def test_shared_grid_clip_mouth_follows_energy(shared_data, tmp_path):
    from ventriloquist.face.topology import mouth_aperture
    grid = shared_data / "talking_face" / "grid_s1" / "bbaf2n.mp4"
    res = prepare([grid], tmp_path, workers=1, progress=False)
    assert res["prepared"] == 1
    clip = next(cache.iter_clips(tmp_path, has_audio=True))
    assert clip["landmarks"].shape == (75, 68, 2) and (clip["width"], clip["height"]) == (360, 288)
    r = np.corrcoef(mouth_aperture(clip["landmarks"]), clip["energy"])[0, 1]
    assert r > 0.2


def test_one_worker_and_two_give_the_same_cache(tmp_path, face_image):
    """The cache is bit-identical whatever --workers is, so the recipe reproduces the shipped weights:
    in-process, multi-threaded BLAS once summed the Mel filterbank in another order (1e-6 apart)."""
    crop = face_image[20:260, 120:360]
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    rng = np.random.default_rng(0)
    audio = (0.2 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
             + 0.02 * rng.normal(size=t.size)).astype(np.float32)
    root = tmp_path / "videos"
    root.mkdir()
    for name in ("a", "b"):
        _write_video(root / f"{name}.mp4", [np.roll(crop, (i % 3, i % 2), axis=(0, 1)) for i in range(75)], audio)
    clips = {}
    for workers in (1, 2):
        prepare([root], tmp_path / f"w{workers}", workers=workers, progress=False)
        clips[workers] = {c["key"]: c for c in cache.iter_clips(tmp_path / f"w{workers}")}
    assert clips[1].keys() == clips[2].keys() and len(clips[1]) == 2
    for key, one in clips[1].items():
        for field in ("mel", "mfcc", "energy", "landmarks", "shapes"):
            np.testing.assert_array_equal(one[field], clips[2][key][field], err_msg=f"{key} {field}")
