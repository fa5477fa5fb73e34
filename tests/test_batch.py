"""Batch mode: a manifest of rows rendered by worker processes, a bad row reported, reruns resume."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import av
import cv2
import pytest

from ventriloquist.cli import main


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, face_image, face_landmarks, speech_wav) -> Path:
    """A folder with two small faces, two speech files and a text file that pretends to be a photo."""
    root = tmp_path_factory.mktemp("batch_in")
    x0, y0 = face_landmarks.min(0).astype(int) - 40
    x1, y1 = face_landmarks.max(0).astype(int) + 40
    crop = face_image[max(0, y0):y1, max(0, x0):x1]
    for name, flip in (("anna", False), ("ben", True)):
        img = cv2.resize(crop[:, ::-1] if flip else crop, (128, 128), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(root / f"{name}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        shutil.copy(speech_wav, root / f"{name}.wav")
    (root / "broken.jpg").write_text("this is not a photo")
    return root


def _summary(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_manifest_with_a_bad_row(inputs, tmp_path, capsys):
    manifest = inputs / "jobs.csv"
    (inputs / "calm_then_angry.csv").write_text("start,end,emotion\n0,0.8,neutral\n0.8,5,angry\n")
    manifest.write_text("face,audio,out,size,articulation,emotion,emotion_timeline\n"
                        "anna.jpg,anna.wav,,,,,\n"
                        "ben.jpg,ben.wav,ben_wide.mp4,,1.4,happy,\n"
                        "broken.jpg,anna.wav,,,,,\n"
                        "anna.jpg,ben.wav,anna_small.mp4,96,,,\n"
                        "ben.jpg,anna.wav,,,0.8,,calm_then_angry.csv\n"
                        "anna.jpg,anna.wav,lost.mp4,,,,no_such_timeline.json\n")
    out = tmp_path / "videos"
    assert main(["batch", str(manifest), "--out", str(out), "--workers", "2", "--quiet"]) == 2
    assert "2 of 6 rows failed" in capsys.readouterr().err
    rows = _summary(out)
    assert [r["status"] for r in rows] == ["done", "done", "failed", "done", "done", "failed"]
    assert "broken.jpg" in rows[2]["error"] and "not a readable image" in rows[2]["error"]
    assert "no_such_timeline.json does not exist" in rows[5]["error"]
    made = sorted(p.name for p in out.glob("*.mp4"))
    assert made == ["anna__anna.mp4", "anna_small.mp4", "ben__anna.mp4", "ben_wide.mp4"]
    with av.open(str(out / "anna_small.mp4")) as f:
        assert f.streams.video[0].width == 96 and f.duration > 1e6
    assert not list(out.glob(".*"))                          # no temporary files left
    # a rerun skips what is done and tries the bad row again
    stamp = (out / "ben_wide.mp4").stat().st_mtime_ns
    assert main(["batch", str(manifest), "--out", str(out), "--workers", "1", "--quiet"]) == 2
    assert [r["status"] for r in _summary(out)] == ["skipped", "skipped", "failed", "skipped", "skipped", "failed"]
    assert (out / "ben_wide.mp4").stat().st_mtime_ns == stamp


def test_folders_pair_by_name_or_all_with_all(inputs, tmp_path):
    out = tmp_path / "paired"
    assert main(["batch", "--faces", str(inputs), "--audio", str(inputs), "--out", str(out), "--workers", "1",
                 "--quiet"]) == 0
    assert sorted(p.name for p in out.glob("*.mp4")) == ["anna.mp4", "ben.mp4"]


def test_bad_manifests_are_one_clear_line(inputs, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("photo,speech\na.jpg,a.wav\n")
    assert main(["batch", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "needs the columns face and audio" in capsys.readouterr().err
    bad.write_text("face,audio,volume\na.jpg,a.wav,11\n")
    assert main(["batch", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "unknown column(s) volume" in capsys.readouterr().err
    assert main(["batch", "--out", str(tmp_path / "o")]) == 2
    assert "nothing to do" in capsys.readouterr().err


def test_a_folder_of_faces_may_hold_videos_to_dub(tmp_path):
    from ventriloquist.batch import pair_folders
    faces, speech = tmp_path / "faces", tmp_path / "speech"
    faces.mkdir()
    speech.mkdir()
    for name in ("anna.jpg", "ben.mp4", "notes.txt"):
        (faces / name).write_bytes(b"x")
    for name in ("anna.wav", "ben.wav"):
        (speech / name).write_bytes(b"x")
    rows = pair_folders(faces, speech, tmp_path / "out")
    assert sorted(r.face.name for r in rows) == ["anna.jpg", "ben.mp4"]
