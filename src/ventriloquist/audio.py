"""Audio loading and frame-aligned features.

Video frame ``t`` (at the model rate ``FPS``) owns feature rows
``[t * MEL_PER_FRAME, (t + 1) * MEL_PER_FRAME)``; every feature array of a clip with
``n`` video frames has exactly ``n * MEL_PER_FRAME`` rows, so slicing by frame is exact.
"""
from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .config import (FMAX, FMIN, FPS, HOP_LENGTH, LOG_EPS, MEL_PER_FRAME, N_FFT, N_MELS, N_MFCC,
                     SAMPLE_RATE, SAMPLES_PER_FRAME, WIN_LENGTH, WINDOW_FRAMES, WINDOW_STRIDE)
from .errors import InputError, InputWarning, existing_file

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus", ".mp4", ".mov",
                    ".mkv", ".webm", ".avi", ".flv", ".mpg")


MEL_CHUNK_FRAMES = 60 * FPS   # log_mel analyses longer speech in pieces of this many video frames
READ_BLOCK = 1 << 16    # samples per block read from a file (memory does not grow with its length)
MAX_SAMPLE = 1e6       # float samples beyond this are damage, not sound (and would overflow the float32 spectra)
AAC_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)


def decoded_packets(container, stream) -> Iterator[tuple]:
    """(packet, its decoded frames) for one stream of a PyAV container (sound or pictures); frames are None for a damaged packet, which the
    caller skips or fills, as players do."""
    import av
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            frames = None
        yield packet, frames


def _checked(path: str | Path) -> Path:
    path = existing_file(path, "audio file", "pass an existing speech recording")
    if path.stat().st_size == 0:
        raise InputError(f"audio file {path} is empty (0 bytes); pass a speech recording")
    return path


def _has_sound(container, path) -> None:
    """An InputError unless the opened container has an audio track: a file with no readable stream at all
    (an MP4 whose index is damaged) is called damaged, one with only pictures has no audio track."""
    if not container.streams.audio:
        if not container.streams:
            raise InputError(f"could not read any track from {path} (damaged or not a media file); "
                             "convert it to WAV, FLAC, MP3 or M4A")
        raise InputError(f"{path} has no audio track; pass a file that contains speech")


def sound_format(path: str | Path) -> tuple[str, int, int]:
    """(codec, rate, channels) the video's sound track gets from this file: its own rate (one AAC lacks
    becomes 48 kHz) and one or two channels (more are mixed down to stereo)."""
    import av
    path = _checked(path)
    try:
        with av.open(str(path)) as c:
            _has_sound(c, path)
            s = c.streams.audio[0]
            codec, rate, channels = s.codec_context.name, int(s.rate or 0), int(s.channels or 0)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"could not decode audio from {path} (damaged, truncated or not audio: "
                         f"{type(exc).__name__}); convert it to WAV, FLAC, MP3 or M4A") from None
    if rate <= 0 or channels <= 0:
        raise InputError(f"{path} has an audio track without samples; pass a speech recording")
    return codec, (rate if rate in AAC_RATES else 48000), min(channels, 2)


def is_url(path: str | Path) -> bool:
    """Whether ``path`` names a network stream (http, https, rtmp, ...) rather than a file."""
    return "://" in str(path) and str(path).split("://", 1)[0].isalpha()


def iter_audio(path: str | Path, rate: int, channels: int, warn: bool = True) -> Iterator[np.ndarray]:
    """The first audio track as float32 (channels, n) blocks at ``rate``, decoded as it is read (memory
    does not grow with the length); a file or a URL. Damaged packets become silence, so later sound
    stays in time."""
    import av

    path = str(path) if is_url(path) else _checked(path)
    bad = 0
    with av.open(str(path)) as container:
        _has_sound(container, path)
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout="mono" if channels == 1 else "stereo", rate=rate)
        for packet, frames in decoded_packets(container, stream):
            if frames is None:
                bad += 1
                if packet.duration and packet.time_base:
                    yield np.zeros((channels, int(round(float(packet.duration * packet.time_base) * rate))), np.float32)
                continue
            for frame in frames:
                for out in resampler.resample(frame):
                    yield out.to_ndarray().astype(np.float32, copy=False)
        for out in resampler.resample(None):
            yield out.to_ndarray().astype(np.float32, copy=False)
    if bad and warn:
        warnings.warn(f"{path}: {bad} damaged audio packet(s) replaced by silence", InputWarning, stacklevel=3)


def _load_pyav(path: str, sr: int | None = None, mono: bool = True, warn: bool = True) -> tuple[np.ndarray, int]:
    """(channels, samples) float32 and the rate: mono at ``sr``, or (``mono=False``) one or two channels
    at ``sr`` or the sound track's rate (:func:`sound_format`)."""
    _, rate, channels = sound_format(path)
    rate, channels = sr or rate, 1 if mono else channels
    chunks = list(iter_audio(path, rate, channels, warn=warn))
    y = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    return y, int(rate)


def load_audio_as_is(path: str | Path) -> tuple[np.ndarray, int]:
    """The recording as the video carries it: float32 (channels, samples) at its own rate (see
    :func:`sound_format`). The models listen to :func:`load_audio`'s 16-kHz mono copy; the viewer hears
    this one (the writer streams it from the file, :class:`~ventriloquist.video.VideoWriter`)."""
    y, rate = _load_pyav(str(path), mono=False, warn=False)
    if not np.all(np.isfinite(y)):
        raise InputError(f"{path} contains invalid samples (NaN or Inf); re-export the audio")
    return np.ascontiguousarray(y), rate


def _read_mono(path: Path, sr: int) -> np.ndarray:
    """A file soundfile reads, block by block: mixed to mono, resampled to ``sr`` as it streams (soxr, the
    same samples as librosa's ``soxr_hq`` on the whole file), so a long recording is never held at its own
    rate and channel count."""
    import soundfile as sf
    with sf.SoundFile(str(path)) as f:
        file_sr, total = f.samplerate, f.frames
        stream = None
        if file_sr != sr:
            import soxr
            stream = soxr.ResampleStream(file_sr, sr, 1, dtype="float32", quality="HQ")
        parts = []
        for block in f.blocks(blocksize=READ_BLOCK, dtype="float32", always_2d=True):
            mono = block.mean(axis=1)
            parts.append(mono if stream is None else stream.resample_chunk(mono))
        if stream is not None:
            parts.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    y = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if stream is not None:                        # librosa's length: ceil(n * ratio), padded or cut
        n = int(np.ceil(total * sr / file_sr))
        y = np.pad(y, (0, max(0, n - len(y))))[:n]
    return y


def load_audio(path: str | Path, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples at ``sr`` from any common audio file or the audio track of a video."""
    path = _checked(path)
    y = None
    try:
        y = _read_mono(path, sr)
    except InputError:
        raise
    except Exception:
        try:
            y = _load_pyav(str(path), sr)[0][0]
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"could not decode audio from {path} (damaged, truncated or not audio: "
                             f"{type(exc).__name__}); convert it to WAV, FLAC, MP3 or M4A") from None
    if y is None or len(y) < SAMPLES_PER_FRAME:
        raise InputError(f"{path} holds no usable audio (shorter than one frame); pass a longer speech recording")
    if not np.all(np.isfinite(y)):
        raise InputError(f"{path} contains invalid samples (NaN or Inf); re-export the audio")
    peak = float(np.abs(y).max())
    if peak > MAX_SAMPLE:
        raise InputError(f"{path} has samples far outside -1..1 (peak {peak:.3g}); re-export it as 16-bit PCM")
    return np.ascontiguousarray(y, dtype=np.float32)


def num_frames(n_samples: int, fps: float = FPS, sr: int = SAMPLE_RATE) -> int:
    """Video frames that cover ``n_samples`` of audio (the video lasts as long as the audio, ±1 frame)."""
    return max(1, int(round(n_samples / sr * fps)))


def _pad_to_frames(y: np.ndarray, n: int) -> np.ndarray:
    want = n * SAMPLES_PER_FRAME
    return np.pad(y, (0, want - len(y))) if len(y) < want else y[:want]


MEL_FILTERS = Path(__file__).parent / "assets" / "mel_filters.npz"   # filterbank + window (tools/make_mel_filters.py)


def _analysis() -> np.ndarray:
    return np.array([SAMPLE_RATE, N_FFT, WIN_LENGTH, N_MELS, FMIN, FMAX], np.float64)


def mel_constants_librosa() -> tuple[np.ndarray, np.ndarray]:
    """The Mel filterbank (N_MELS, N_FFT // 2 + 1) and the centred Hann window (N_FFT,) as librosa makes them."""
    import librosa
    mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX).astype(np.float32)
    window = librosa.util.pad_center(librosa.filters.get_window("hann", WIN_LENGTH, fftbins=True), size=N_FFT)
    return mel, window


@lru_cache(maxsize=1)
def _mel_constants() -> tuple[np.ndarray, np.ndarray]:
    """The shipped filterbank and window: no librosa import (and its JIT, seconds) on the inference path.
    Made by librosa for these settings; other settings (or a missing file) are computed by it again."""
    try:
        with np.load(MEL_FILTERS) as z:
            if np.array_equal(z["analysis"], _analysis()):
                return z["mel"], z["window"]
    except (OSError, KeyError, ValueError):
        pass
    return mel_constants_librosa()


def _mel_power(y: np.ndarray, center: bool) -> np.ndarray:
    """Mel power (N_MELS, frames): librosa's STFT (constant padding) step for step, so the same numbers."""
    mel, window = _mel_constants()
    y = np.ascontiguousarray(y, dtype=np.float32)
    if center:
        y = np.pad(y, (N_FFT // 2, N_FFT // 2))
    n = 1 + (len(y) - N_FFT) // HOP_LENGTH
    frames = np.lib.stride_tricks.as_strided(y, (max(n, 0), N_FFT), (y.strides[0] * HOP_LENGTH, y.strides[0]),
                                             writeable=False)
    spec = np.fft.rfft(window * frames, axis=-1).astype(np.complex64).T
    return mel @ (np.abs(spec) ** 2)


def log_mel(y: np.ndarray) -> np.ndarray:
    """Log-Mel spectrogram (n_frames * MEL_PER_FRAME, N_MELS) aligned to ``FPS`` video frames.

    Speech longer than MEL_CHUNK_FRAMES is analysed in pieces of that many frames, each with the
    samples its edge windows reach, so a 10-minute input never holds its whole complex spectrogram
    (the rows agree with a one-piece analysis within 1e-6; shorter clips, all training clips, are
    analysed in one piece as before).
    """
    n = num_frames(len(y))
    rows = n * MEL_PER_FRAME
    # shift by half a hop so the rows of frame t are centred inside it, symmetrically
    y = _pad_to_frames(y, n)[HOP_LENGTH // 2:]
    if n <= MEL_CHUNK_FRAMES:
        return np.log(_mel_power(y, center=True)[:, :rows].T + LOG_EPS).astype(np.float32)
    half, step = N_FFT // 2, MEL_CHUNK_FRAMES * MEL_PER_FRAME
    out = np.empty((rows, N_MELS), np.float32)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        a, b = r0 * HOP_LENGTH - half, (r1 - 1) * HOP_LENGTH + half         # row r spans y[r*hop -+ half]
        piece = np.pad(y[max(0, a): min(len(y), b)], (max(0, -a), max(0, b - len(y))))
        out[r0:r1] = np.log(_mel_power(piece, center=False).T + LOG_EPS)
    return out


def mfcc(y: np.ndarray | None = None, mel: np.ndarray | None = None) -> np.ndarray:
    """MFCC (n_frames * MEL_PER_FRAME, N_MFCC) from the log-Mel, so both share one framing."""
    import scipy.fft
    mel = log_mel(y) if mel is None else mel
    return scipy.fft.dct(mel, type=2, norm="ortho", axis=1)[:, :N_MFCC].astype(np.float32)


def energy(y: np.ndarray, fps: float = FPS, sr: int = SAMPLE_RATE) -> np.ndarray:
    """RMS energy of the samples each video frame covers: the envelope mouths are judged against."""
    n = num_frames(len(y), fps, sr)
    edges = (np.arange(n + 1) * sr / fps).astype(int)
    out = np.zeros(n, np.float32)
    for i in range(n):
        seg = y[edges[i]:edges[i + 1]]
        out[i] = float(np.sqrt(np.mean(seg.astype(np.float64) ** 2))) if len(seg) else 0.0
    return out


def frame_window(features: np.ndarray, t: int, frames: int = WINDOW_FRAMES) -> np.ndarray:
    """The ``frames``-long window of feature rows centred on video frame ``t``, zero-padded at the ends.

    Padding uses the feature minimum (silence in log space) so edges look like quiet, not a cliff.
    """
    rows = frames * MEL_PER_FRAME
    start = (t - frames // 2) * MEL_PER_FRAME
    out = np.full((rows, features.shape[1]), features.min(), dtype=features.dtype)
    lo, hi = max(0, start), min(len(features), start + rows)
    if hi > lo:
        out[lo - start: hi - start] = features[lo:hi]
    return out


def window_starts(n_frames: int, size: int = WINDOW_FRAMES, stride: int = WINDOW_STRIDE) -> list[int]:
    """Start frames of overlapping windows that cover ``n_frames`` (the last one ends at the end)."""
    if n_frames <= size:
        return [0]
    starts = list(range(0, n_frames - size + 1, stride))
    if starts[-1] + size < n_frames:
        starts.append(n_frames - size)
    return starts


def overlap_add(chunks: Iterable[np.ndarray], starts: list[int], n_frames: int) -> np.ndarray:
    """Stitch per-window outputs (size, ...) into one sequence with raised-cosine cross-fades.

    Each window's weight falls to near zero at its borders, so no seam shows where windows meet.
    ``chunks`` may be a generator: each is added as it comes, so they are never all held.
    """
    acc = norm = w = None
    for c, s in zip(chunks, starts):
        if acc is None:
            size = c.shape[0]
            w = np.sin(np.pi * (np.arange(size) + 0.5) / size) ** 2 + 1e-3
            acc = np.zeros((n_frames,) + c.shape[1:], np.float64)
            norm = np.zeros(n_frames, np.float64)
        n = min(size, n_frames - s)
        acc[s:s + n] += c[:n] * w[:n].reshape((-1,) + (1,) * (c.ndim - 1))
        norm[s:s + n] += w[:n]
    return (acc / norm.reshape((-1,) + (1,) * (acc.ndim - 1))).astype(np.float32)
