import numpy as np
import pytest
import soundfile as sf

from ventriloquist import audio
from ventriloquist.config import MEL_PER_FRAME, N_MELS, N_MFCC, SAMPLE_RATE, WINDOW_FRAMES
from ventriloquist.errors import InputError


def test_load_resamples_speech_to_mono(speech_wav):
    y = audio.load_audio(speech_wav)
    info = sf.info(str(speech_wav))
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) / SAMPLE_RATE - info.duration) < 0.01
    assert np.abs(y).max() > 0.05


@pytest.mark.parametrize("ext,fmt", [(".flac", "FLAC"), (".ogg", "OGG")])
def test_load_other_containers(tmp_path, speech_wav, ext, fmt):
    y, sr = sf.read(str(speech_wav))
    stereo = np.stack([y, y], axis=1)
    path = tmp_path / f"s{ext}"
    sf.write(str(path), stereo, sr, format=fmt)
    z = audio.load_audio(path)
    assert abs(len(z) - len(audio.load_audio(speech_wav))) < SAMPLE_RATE * 0.05


@pytest.mark.parametrize("ext", [".mp3", ".m4a"])
def test_load_compressed_audio(tmp_path, speech_wav, ext):
    import shutil
    import subprocess
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (scripts/setup.sh installs it)")
    path = tmp_path / f"s{ext}"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(speech_wav), str(path)], check=True)
    y = audio.load_audio(path)
    assert abs(len(y) - len(audio.load_audio(speech_wav))) < SAMPLE_RATE * 0.1


def test_features_are_frame_aligned():
    for seconds in (0.5, 1.0, 2.37, 7.0):
        y = np.random.default_rng(0).normal(size=int(seconds * SAMPLE_RATE)).astype(np.float32) * 0.1
        n = audio.num_frames(len(y))
        mel = audio.log_mel(y)
        assert mel.shape == (n * MEL_PER_FRAME, N_MELS)
        assert audio.mfcc(mel=mel).shape == (n * MEL_PER_FRAME, N_MFCC)
        assert audio.energy(y).shape == (n,)


def test_a_burst_shows_up_in_its_own_frame():
    y = np.zeros(SAMPLE_RATE * 2, np.float32)
    t = 20                                       # video frame 20 = 0.8 s
    y[t * 640:(t + 1) * 640] = np.sin(np.arange(640) * 0.3)
    e = audio.energy(y)
    assert int(np.argmax(e)) == t
    power = np.exp(audio.log_mel(y)).sum(axis=1)
    assert t * MEL_PER_FRAME <= int(np.argmax(power)) < (t + 1) * MEL_PER_FRAME
    inside = power[t * MEL_PER_FRAME:(t + 1) * MEL_PER_FRAME].min()
    assert inside > 10 * power[(t + 2) * MEL_PER_FRAME:].max()


def test_windows_cover_any_length_and_stitch_without_seams():
    for n in (3, 25, 26, 80, 1001):
        starts = audio.window_starts(n)
        covered = np.zeros(n, bool)
        for s in starts:
            covered[s:s + WINDOW_FRAMES] = True
        assert covered.all()
    # a smooth signal cut into windows and stitched back is reproduced exactly
    n = 137
    x = np.sin(np.linspace(0, 9, n))[:, None]
    starts = audio.window_starts(n)
    chunks = [np.pad(x[s:s + WINDOW_FRAMES], ((0, max(0, s + WINDOW_FRAMES - n)), (0, 0))) for s in starts]
    np.testing.assert_allclose(audio.overlap_add(chunks, starts, n), x, atol=1e-5)


def test_frame_window_is_centred_and_padded():
    feats = np.arange(40 * MEL_PER_FRAME, dtype=np.float32)[:, None]
    w = audio.frame_window(feats, 0)
    assert w.shape == (WINDOW_FRAMES * MEL_PER_FRAME, 1)
    centre = (WINDOW_FRAMES // 2) * MEL_PER_FRAME
    assert w[centre, 0] == 0 and w[0, 0] == feats.min()
    assert audio.frame_window(feats, 20)[centre, 0] == 20 * MEL_PER_FRAME


def test_bad_audio_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        audio.load_audio(tmp_path / "nope.wav")
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 10)
    with pytest.raises(InputError, match="corrupt.wav"):
        audio.load_audio(bad)


def test_damaged_audio_track_keeps_its_length_with_a_warning(tmp_path, damage):
    """Damaged AAC packets become silence, so the speech after them stays in time with the video."""
    from ventriloquist.errors import InputWarning
    from ventriloquist.video import VideoWriter
    rng = np.random.default_rng(0)
    y = (0.3 * rng.standard_normal(SAMPLE_RATE * 4)).astype(np.float32)
    good = tmp_path / "good.mp4"
    with VideoWriter(good, 64, 48, audio=y) as w:
        for _ in range(100):
            w.write(np.zeros((48, 64, 3), np.uint8))
    bad = damage(good, 2000)
    with pytest.warns(InputWarning, match="damaged.mp4.*silence"):
        z = audio.load_audio(bad)
    assert len(z) == len(audio.load_audio(good))


def test_long_speech_is_analysed_in_pieces_with_the_same_rows(monkeypatch, speech_wav):
    """log_mel of speech past MEL_CHUNK_FRAMES works piece by piece (flat memory) and gives the rows of
    one whole analysis; short clips are analysed whole exactly as before."""
    import ventriloquist.audio as A
    y = np.tile(A.load_audio(speech_wav), 3)[: 5 * 16000 + 777]
    whole = A.log_mel(y)
    monkeypatch.setattr(A, "MEL_CHUNK_FRAMES", 17)                 # pieces of 17 frames, odd edges included
    pieces = A.log_mel(y)
    assert pieces.shape == whole.shape and pieces.dtype == np.float32
    assert np.abs(pieces - whole).max() < 1e-5


def test_audio_is_read_in_blocks_as_librosa_reads_it_whole(monkeypatch, tmp_path, speech_wav):
    """Block-wise mixing and streaming resampling give exactly librosa's whole-file samples."""
    import librosa

    import ventriloquist.audio as A
    y, sr = sf.read(str(speech_wav), dtype="float32")
    stereo = np.stack([y, 0.5 * np.roll(y, 300)], axis=1)
    path = tmp_path / "s.wav"
    sf.write(path, stereo, 44100)
    monkeypatch.setattr(A, "READ_BLOCK", 1000)
    got = A.load_audio(path)
    written, _ = sf.read(str(path), dtype="float32", always_2d=True)
    want = librosa.resample(written.mean(axis=1), orig_sr=44100, target_sr=16000, res_type="soxr_hq")
    assert got.shape == want.shape and np.array_equal(got, want)


def test_log_mel_is_librosas_without_importing_it(speech_wav):
    """The inference path computes librosa's log-Mel to the bit from the shipped filterbank and window, and
    never imports librosa (its import and JIT were seconds of every start)."""
    import subprocess
    import sys

    import librosa
    mel, window = audio.mel_constants_librosa()
    shipped = audio._mel_constants()
    assert np.array_equal(shipped[0], mel) and np.array_equal(shipped[1], window)
    y = audio.load_audio(speech_wav)
    n = audio.num_frames(len(y))
    shifted = audio._pad_to_frames(y, n)[audio.HOP_LENGTH // 2:]
    spec = np.abs(librosa.stft(shifted, n_fft=audio.N_FFT, hop_length=audio.HOP_LENGTH,
                               win_length=audio.WIN_LENGTH, center=True, pad_mode="constant")) ** 2
    want = np.log((mel @ spec)[:, : n * MEL_PER_FRAME].T + audio.LOG_EPS).astype(np.float32)
    assert np.array_equal(audio.log_mel(y), want)
    code = ("import sys; from ventriloquist.audio import load_audio, log_mel; "
            f"log_mel(load_audio({str(speech_wav)!r})); print('librosa' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
