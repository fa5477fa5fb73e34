"""Audio loading and frame-aligned features.

Video frame ``t`` (at the model rate ``FPS``) owns feature rows
``[t * MEL_PER_FRAME, (t + 1) * MEL_PER_FRAME)``; every feature array of a clip with
``n`` video frames has exactly ``n * MEL_PER_FRAME`` rows, so slicing by frame is exact.
"""
from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

from .config import (FMAX, FMIN, FPS, HOP_LENGTH, LOG_EPS, MEL_PER_FRAME, N_FFT, N_MELS, N_MFCC,
                     SAMPLE_RATE, SAMPLES_PER_FRAME, WIN_LENGTH, WINDOW_FRAMES, WINDOW_STRIDE)
from .errors import InputError, InputWarning

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus", ".mp4", ".mov",
                    ".mkv", ".webm", ".avi", ".flv", ".mpg")


def _load_pyav(path: str, sr: int | None = None, mono: bool = True, warn: bool = True) -> tuple[np.ndarray, int]:
    """(channels, samples) float32 and the rate: mono at ``sr``, or (``mono=False``) one or two channels
    at ``sr`` or the file's own rate. Damaged packets become silence, so later sound stays in time."""
    import av

    from .video import decoded_packets
    chunks = []
    with av.open(path) as container:
        if not container.streams.audio:
            raise InputError(f"{path} has no audio track; pass a file that contains speech")
        stream = container.streams.audio[0]
        rate = sr or stream.rate
        layout = "mono" if mono or stream.channels == 1 else "stereo"
        channels = 1 if layout == "mono" else 2
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        bad = 0
        for packet, frames in decoded_packets(container, stream):
            if frames is None:
                bad += 1
                if packet.duration and packet.time_base:
                    n = int(round(float(packet.duration * packet.time_base) * rate))
                    chunks.append(np.zeros((channels, n), np.float32))
                continue
            for frame in frames:
                chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray() for out in resampler.resample(None))
    if bad and chunks and warn:
        warnings.warn(f"{path}: {bad} damaged audio packet(s) replaced by silence", InputWarning, stacklevel=3)
    y = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    return y.astype(np.float32), int(rate)


AAC_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)


def _as_stereo_at_most(y: np.ndarray) -> np.ndarray:
    """(channels, samples) with more than two channels folded to stereo (odd channels left, even right)."""
    if len(y) <= 2:
        return y
    return np.stack([y[0::2].mean(axis=0), y[1::2].mean(axis=0)])


def load_audio_as_is(path: str | Path) -> tuple[np.ndarray, int]:
    """The recording as it was, for the video's sound track: float32 (channels, samples) at its own
    rate (more than two channels folded to stereo; a rate AAC lacks becomes 48 kHz).

    The models listen to :func:`load_audio`'s 16-kHz mono copy; the viewer hears this one.
    """
    path = Path(path)
    try:
        import soundfile as sf
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        y = data.T
    except Exception:
        y, rate = _load_pyav(str(path), mono=False, warn=False)      # the models' copy warned already
    y = _as_stereo_at_most(np.asarray(y, np.float32))
    if rate not in AAC_RATES:
        import librosa
        y, rate = librosa.resample(y, orig_sr=rate, target_sr=48000, res_type="soxr_hq", axis=-1), 48000
    return np.ascontiguousarray(y, dtype=np.float32), int(rate)


def load_audio(path: str | Path, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples at ``sr`` from any common audio file or the audio track of a video."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"audio file {path} does not exist; pass an existing speech recording")
    y = None
    try:
        import soundfile as sf
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
        y = data.mean(axis=1)
        if file_sr != sr:
            import librosa
            y = librosa.resample(y, orig_sr=file_sr, target_sr=sr, res_type="soxr_hq")
    except InputError:
        raise
    except Exception:
        try:
            y = _load_pyav(str(path), sr)[0][0]
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"could not decode audio from {path} ({type(exc).__name__}); "
                             "convert it to WAV, FLAC, MP3 or M4A") from None
    if y is None or len(y) < SAMPLES_PER_FRAME:
        raise InputError(f"{path} holds no usable audio (shorter than one frame); pass a longer speech recording")
    if not np.all(np.isfinite(y)):
        raise InputError(f"{path} contains invalid samples (NaN or Inf); re-export the audio")
    return np.ascontiguousarray(y, dtype=np.float32)


def num_frames(n_samples: int, fps: float = FPS, sr: int = SAMPLE_RATE) -> int:
    """Video frames that cover ``n_samples`` of audio (the video lasts as long as the audio, ±1 frame)."""
    return max(1, int(round(n_samples / sr * fps)))


def _pad_to_frames(y: np.ndarray, n: int) -> np.ndarray:
    want = n * SAMPLES_PER_FRAME
    return np.pad(y, (0, want - len(y))) if len(y) < want else y[:want]


@lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    import librosa
    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX).astype(np.float32)


def log_mel(y: np.ndarray) -> np.ndarray:
    """Log-Mel spectrogram (n_frames * MEL_PER_FRAME, N_MELS) aligned to ``FPS`` video frames."""
    import librosa
    n = num_frames(len(y))
    # shift by half a hop so the rows of frame t are centred inside it, symmetrically
    y = _pad_to_frames(y, n)[HOP_LENGTH // 2:]
    spec = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=WIN_LENGTH,
                               center=True, pad_mode="constant")) ** 2
    mel = _mel_basis() @ spec
    return np.log(mel[:, : n * MEL_PER_FRAME].T + LOG_EPS).astype(np.float32)


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


def overlap_add(chunks: list[np.ndarray], starts: list[int], n_frames: int) -> np.ndarray:
    """Stitch per-window outputs (size, ...) into one sequence with raised-cosine cross-fades.

    Each window's weight falls to near zero at its borders, so no seam shows where windows meet.
    """
    size = chunks[0].shape[0]
    w = np.sin(np.pi * (np.arange(size) + 0.5) / size) ** 2 + 1e-3
    shape = (n_frames,) + chunks[0].shape[1:]
    acc = np.zeros(shape, np.float64)
    norm = np.zeros(n_frames, np.float64)
    for c, s in zip(chunks, starts):
        n = min(size, n_frames - s)
        acc[s:s + n] += c[:n] * w[:n].reshape((-1,) + (1,) * (c.ndim - 1))
        norm[s:s + n] += w[:n]
    return (acc / norm.reshape((-1,) + (1,) * (acc.ndim - 1))).astype(np.float32)
