"""One speaker made to sound like many: voice and channel augmentation of the talking-face audio.

The lips are learnt from a single GRID speaker recorded on one studio microphone. Each clip's
audio is re-synthesised (WORLD vocoder, ``pyworld``) with another pitch and vocal-tract length
(formants shifted with it, as from a man's voice to a woman's or a child's), then put through
a room (reverberation), a channel (band limits, telephone rate, 8-bit mu-law) and noise. The
landmarks stay the clip's own, so the pairing is exact. Or (``source = "espeak"``) the clip's
sentence is spoken again by an espeak-ng voice, word by word, each word stretched onto the span
the clip's ``.align`` gives it: other accents and phone realisations over s1's lips, exact to the
word. Every variant's log-Mel and phonetic rows are computed once per recipe (seeded) and kept in
the cache folder.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from ..audio import load_audio, log_mel, num_frames
from ..config import SAMPLE_RATE
from ..errors import InputError

PITCH_SEMITONES = (-4.0, 10.0)    # GRID s1 is a man (about 120 Hz): mostly up, towards women's and children's voices
FORMANT_PER_SEMITONE = 0.015      # vocal-tract scale follows pitch on average (women's formants ~15 % higher) ...
FORMANT_JITTER = 0.06             # ... with this much spread of its own
REVERB = 0.5                      # share of variants in a room: RT60 uniform in REVERB_RT60
REVERB_RT60 = (0.15, 0.8)
BANDLIMIT = 0.4                   # share with a band-limited channel (telephone, cheap microphone)
MULAW = 0.15                      # share through 8-bit mu-law at 8 kHz (a phone line)
NOISE_SNR_DB = (8.0, 35.0)        # additive coloured noise on every variant, SNR uniform in this range
SOURCES = ("world", "espeak")

# espeak-ng voices that speak the GRID sentences: accents x voice variants, pitch and rate drawn per variant.
# Training draws from the first sets; the held-out ones are for evaluation only (evaluate's "other voices").
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
ESPEAK_VARIANTS = ("m1", "m2", "m4", "m6", "m7", "f1", "f3", "f5", "klatt", "klatt3", "Andy", "Annie", "linda", "belinda", "steph")
ESPEAK_HELD_OUT = (("en-gb-scotland", "f2"), ("en-us-nyc", "m3"), ("en-gb-scotland", "m5"), ("en-us-nyc", "f4"))
ESPEAK_PITCH = (15, 85)           # espeak-ng -p (0-99; 50 is the voice's own)
ESPEAK_RATE = (130, 190)          # words per minute before each word is stretched onto its span


@lru_cache(maxsize=1)
def _pyworld():
    """The WORLD extension module, loaded without the package ``__init__`` (which needs the absent pkg_resources)."""
    import importlib.util
    spec = importlib.util.find_spec("pyworld")
    found = list(Path(spec.submodule_search_locations[0]).glob("pyworld*.so")) if spec else []
    if not found:
        raise InputError("voice augmentation needs the WORLD vocoder; install it with `pip install pyworld`")
    ext = importlib.util.spec_from_file_location("pyworld", found[0])
    module = importlib.util.module_from_spec(ext)
    ext.loader.exec_module(module)
    return module


def _world(y: np.ndarray, semitones: float, formant: float) -> np.ndarray:
    """Re-synthesise with f0 scaled by 2^(semitones/12) and the spectral envelope stretched by ``formant``."""
    pyworld = _pyworld()
    x = y.astype(np.float64)
    f0, t = pyworld.dio(x, SAMPLE_RATE, frame_period=5.0)
    f0 = pyworld.stonemask(x, f0, t, SAMPLE_RATE)
    sp = pyworld.cheaptrick(x, f0, t, SAMPLE_RATE)
    ap = pyworld.d4c(x, f0, t, SAMPLE_RATE)
    bins = np.arange(sp.shape[1], dtype=np.float64)
    src = np.clip(bins / formant, 0, sp.shape[1] - 1)       # formants move up by ``formant``
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, sp.shape[1] - 1)
    w = src - lo
    sp = sp[:, lo] * (1 - w) + sp[:, hi] * w
    out = pyworld.synthesize(f0 * 2 ** (semitones / 12), np.ascontiguousarray(sp), ap, SAMPLE_RATE, 5.0)
    return out[: len(y)] if len(out) >= len(y) else np.pad(out, (0, len(y) - len(out)))


def _room(y: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room: direct sound plus exponentially decaying noise (a diffuse tail)."""
    from scipy.signal import fftconvolve
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    ir = rng.normal(size=n) * np.exp(-6.9 * t / rt60) * rng.uniform(0.1, 0.4)
    ir[: int(0.002 * SAMPLE_RATE)] = 0.0
    ir[0] = 1.0
    return fftconvolve(y, ir)[: len(y)]


def _band(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import butter, sosfilt
    lo, hi = rng.uniform(80, 400), rng.uniform(3000, 7000)
    return sosfilt(butter(4, [lo, hi], btype="band", fs=SAMPLE_RATE, output="sos"), y)


def _mulaw8k(y: np.ndarray) -> np.ndarray:
    import librosa
    z = librosa.resample(y, orig_sr=SAMPLE_RATE, target_sr=8000, res_type="soxr_hq")
    mu = 255.0
    q = np.round((np.sign(z) * np.log1p(mu * np.abs(np.clip(z, -1, 1))) / np.log1p(mu) + 1) / 2 * mu)
    z = np.sign(q / mu * 2 - 1) * np.expm1(np.abs(q / mu * 2 - 1) * np.log1p(mu)) / mu
    return librosa.resample(z, orig_sr=8000, target_sr=SAMPLE_RATE, res_type="soxr_hq")[: len(y)]


def _noise(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0)
    return np.fft.irfft(spec / f ** rng.uniform(0, 1), n)


def variant(y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """One new voice in one new channel for speech ``y``; returns the samples and what was done."""
    semis = float(rng.uniform(*PITCH_SEMITONES))
    formant = float(np.clip(1 + FORMANT_PER_SEMITONE * semis + rng.normal(0, FORMANT_JITTER), 0.85, 1.3))
    info = {"semitones": round(semis, 2), "formant": round(formant, 3)}
    return channel(_world(y, semis, formant), rng, info)


def _espeak(word: str, voice: str, pitch: int, rate: int) -> np.ndarray:
    """One word from espeak-ng at SAMPLE_RATE, its leading and trailing silence cut."""
    import librosa
    import soundfile as sf
    if shutil.which("espeak-ng") is None:
        raise InputError("espeak-ng voices need the espeak-ng program; install it (apt-get install espeak-ng)")
    text = word.upper() if len(word) == 1 else word          # GRID's letters are said as letters
    wav = subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(rate), "--stdout", text],
                         capture_output=True, check=True).stdout
    y, sr = sf.read(io.BytesIO(wav), dtype="float32")
    y = librosa.resample(y, orig_sr=sr, target_sr=SAMPLE_RATE)
    return librosa.effects.trim(y, top_db=35)[0]


def spoken_by(words: Sequence[str], times: np.ndarray, samples: int, voice: str, pitch: int = 50,
              rate: int = 160) -> np.ndarray:
    """The sentence ``words`` said by espeak-ng ``voice``, each word stretched onto its (start, end) span in
    seconds, silence elsewhere: speech time-aligned, word by word, to the recording the spans come from."""
    import librosa
    out = np.zeros(samples, np.float32)
    for word, (a, b) in zip(words, np.asarray(times, dtype=float)):
        span = int((b - a) * SAMPLE_RATE)
        y = _espeak(str(word), voice, pitch, rate) if span >= 400 else np.zeros(0, np.float32)
        if len(y) < 400:
            continue
        y = librosa.effects.time_stretch(y, rate=len(y) / span)[:span]
        s = int(a * SAMPLE_RATE)
        e = min(samples, s + len(y))
        out[s:e] += y[: e - s]
    peak = np.abs(out).max()
    return out / peak * 0.7 if peak > 0 else out


def espeak_variant(words: Sequence[str], times: np.ndarray, samples: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The sentence in a training espeak-ng voice (accent, variant, pitch, rate drawn) and a new channel."""
    voice = f"{ESPEAK_ACCENTS[rng.integers(len(ESPEAK_ACCENTS))]}+{ESPEAK_VARIANTS[rng.integers(len(ESPEAK_VARIANTS))]}"
    pitch, rate = int(rng.integers(*ESPEAK_PITCH)), int(rng.integers(*ESPEAK_RATE))
    return channel(spoken_by(words, times, samples, voice, pitch, rate), rng,
                   {"voice": voice, "pitch": pitch, "rate": rate})


def channel(out: np.ndarray, rng: np.random.Generator, info: dict) -> tuple[np.ndarray, dict]:
    """Speech ``out`` in a drawn room, band and line, with noise and a random level; ``info`` gains what was done."""
    if rng.random() < REVERB:
        info["rt60"] = round(float(rng.uniform(*REVERB_RT60)), 2)
        out = _room(out, info["rt60"], rng)
    if rng.random() < BANDLIMIT:
        out, info["band"] = _band(out, rng), True
    if rng.random() < MULAW:
        out, info["mulaw"] = _mulaw8k(out), True
    snr = float(rng.uniform(*NOISE_SNR_DB))
    nz = _noise(len(out), rng)
    out = out + nz * np.sqrt(np.mean(out ** 2) / max(np.mean(nz ** 2), 1e-12) / 10 ** (snr / 10))
    info["snr_db"] = round(snr, 1)
    peak = np.abs(out).max()
    return (out / peak * rng.uniform(0.3, 0.95) if peak > 0 else out).astype(np.float32), info


def voice_variants(clips: Sequence[dict], per_clip: int, cache: Path, seed: int, progress: bool = True,
                   source: str = "world") -> dict[str, "VoiceFile"]:
    """``per_clip`` augmented voices of every clip ({key: [{"mel", "artic"}]}, read on demand), made once and kept under
    ``cache/voices-<settings>/`` (a rerun with the same clips, count and seed reads them back). A clip is a dict
    with ``key`` and ``source`` (its recording); ``source = "espeak"`` needs its ``words`` and ``word_times``."""
    from ..phonetics import articulation
    from .common import progress as bar
    if source not in SOURCES:
        raise InputError(f"voice source must be one of {', '.join(SOURCES)}, not {source!r}")
    settings = {"per_clip": per_clip, "seed": seed, "pitch": PITCH_SEMITONES, "formant": FORMANT_PER_SEMITONE,
                "jitter": FORMANT_JITTER, "reverb": [REVERB, REVERB_RT60], "band": BANDLIMIT, "mulaw": MULAW,
                "snr": NOISE_SNR_DB}
    if source == "espeak":
        settings.update(source=source, accents=ESPEAK_ACCENTS, variants=ESPEAK_VARIANTS, espeak_pitch=ESPEAK_PITCH,
                        rate=ESPEAK_RATE)
    folder = Path(cache) / ("voices-" + hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:10])
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, VoiceFile] = {}
    for c in bar(clips, "voice variants", enabled=progress):
        path = folder / f"{c['key']}.npz"
        if not path.is_file():
            y = load_audio(c["source"])
            # one stream per clip, so a clip's variants do not depend on which other clips exist
            rng = np.random.default_rng([seed, int(hashlib.sha256(c["key"].encode()).hexdigest()[:8], 16)])
            fields = {}
            for i in range(per_clip):
                v, _ = (variant(y, rng) if source == "world"
                        else espeak_variant(c["words"], c["word_times"], len(y), rng))
                n = num_frames(len(v))
                fields[f"mel{i}"], fields[f"artic{i}"] = log_mel(v), articulation(v, n)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")      # processes making the same clip never share a file
            np.savez_compressed(tmp, **fields)
            tmp.replace(path)
        out[c["key"]] = VoiceFile(path, per_clip)
    return out


class VoiceFile(Sequence):
    """One clip's augmented voices, each read from its file when a segment asks for it: a training
    process holds no clip's voices for long (train/store.py holds the rest of the set the same way)."""

    def __init__(self, path: Path, count: int) -> None:
        self.path, self.count = path, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.count:
            raise IndexError(i)
        with np.load(self.path) as z:
            return {"mel": z[f"mel{i}"], "artic": z[f"artic{i}"]}
