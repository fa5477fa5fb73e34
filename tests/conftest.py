"""Shared fixtures: a shipped face photo, speech from espeak-ng, and ../shared data when present."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def face_path() -> Path:
    from ventriloquist.demo import demo_face
    return demo_face()


@pytest.fixture(scope="session")
def face_image(face_path) -> np.ndarray:
    from ventriloquist.face.detect import load_image
    return load_image(face_path)


@pytest.fixture(scope="session")
def face_landmarks(face_image) -> np.ndarray:
    from ventriloquist.face.detect import face_landmarks
    return face_landmarks(face_image)


def _espeak(text: str, path: Path, voice: str | None = None, pitch: int | None = None) -> Path:
    exe = shutil.which("espeak-ng")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("espeak-ng is not installed; run scripts/setup.sh")
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it)")
    options = [*(["-v", voice] if voice else []), *(["-p", str(pitch)] if pitch is not None else [])]
    subprocess.run([exe, "-s", "150", *options, "-w", str(path), text], check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def espeak():
    """espeak-ng as a function: ``espeak(text, path, voice=None, pitch=None)`` writes the speech as a WAV at
    ``path`` and returns it (skipped without espeak-ng; in CI a failure)."""
    return _espeak


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    """About two seconds of real synthetic speech (22.05 kHz WAV)."""
    return _espeak("Put the blue box on the table, please.", tmp_path_factory.mktemp("speech") / "speech.wav")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED


@pytest.fixture
def damage():
    """``damage(path, nbytes)``: a copy of a file, ``damaged<suffix>`` beside it, with random bytes
    over ``nbytes`` in its middle (a bad download or disk error)."""
    def make(path: Path, nbytes: int) -> Path:
        data = bytearray(path.read_bytes())
        mid = len(data) // 2
        data[mid:mid + nbytes] = np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8).tobytes()
        out = path.with_name("damaged" + path.suffix)
        out.write_bytes(bytes(data))
        return out
    return make


def _subset(src_csv: Path, dst_csv: Path, keep) -> None:
    with open(src_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    dst_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(dst_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep(rows))
    for entry in src_csv.parent.iterdir():
        if entry.is_dir():
            (dst_csv.parent / entry.name).symlink_to(entry)


@pytest.fixture(scope="session")
def mini_data(shared_data, tmp_path_factory) -> Path:
    """A miniature data root of ../shared/data: a handful of rows of each labels file, linked to the shared files."""
    root = tmp_path_factory.mktemp("mini")
    _subset(shared_data / "talking_face" / "clips.csv", root / "talking_face" / "clips.csv",
            lambda rows: [r for r in rows if r["split"] == "train"][:8] + [r for r in rows if r["split"] == "test"][:2])
    _subset(shared_data / "emotion_video" / "labels.csv", root / "emotion_video" / "labels.csv",
            lambda rows: [r for r in rows if r["corpus"] == "MEAD"][:6] + [r for r in rows if r["corpus"] != "MEAD"][:3])
    _subset(shared_data / "speech_emotion" / "labels.csv", root / "speech_emotion" / "labels.csv",
            lambda rows: rows[::40])
    return root
