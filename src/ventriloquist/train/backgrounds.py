"""Synthetic non-speech backgrounds (music, noise) mixed into training speech.

Users' recordings carry intro jingles, music beds and room noise. Trained on clean GRID speech
only, G took any harmonic sound for a vowel and opened the mouth wider for a melody than for
speech. Mixing these backgrounds into the talking-face clips (whose pauses keep their closed
mouths as targets) teaches G that only speech moves the lips. Mixing happens on the log-Mel
power, so the cached features need no audio.
"""
from __future__ import annotations

import numpy as np

from ..audio import log_mel
from ..config import LOG_EPS, N_MELS, SAMPLE_RATE

BACKGROUND_SECONDS = 4.0
SNR_DB = (0.0, 25.0)             # speech-to-background power ratio of a mix, uniform in this range (music beds sit 10-20 dB under a voice)


def _tone(f0: float, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    harmonics = int(rng.integers(1, 9))
    amps = rng.uniform(0.2, 1.0, harmonics) / np.arange(1, harmonics + 1) ** rng.uniform(0.5, 2.0)
    phase = rng.uniform(0, 2 * np.pi, harmonics)
    vibrato = 1 + rng.uniform(0, 0.01) * np.sin(2 * np.pi * rng.uniform(4, 7) * t)
    return sum(a * np.sin(2 * np.pi * f0 * (h + 1) * np.cumsum(vibrato) / SAMPLE_RATE + p)
               for h, (a, p) in enumerate(zip(amps, phase)))


def music(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Notes and chords of random timbre and tempo, with optional bass and drums."""
    n = int(seconds * SAMPLE_RATE)
    y = np.zeros(n)
    beat = 60.0 / rng.uniform(60, 180)
    root = 110.0 * 2 ** rng.uniform(0, 2)
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    t = 0.0
    while t < seconds:
        dur = beat * rng.choice([0.5, 1, 2])
        s, e = int(t * SAMPLE_RATE), min(n, int((t + dur * rng.uniform(1, 1.5)) * SAMPLE_RATE))
        env = np.exp(-np.arange(e - s) / SAMPLE_RATE * rng.uniform(0.5, 8))
        env[: min(len(env), 80)] *= np.linspace(0, 1, min(len(env), 80))
        for _ in range(int(rng.integers(1, 4))):
            step = scale[rng.integers(len(scale))] + 12 * int(rng.integers(0, 2))
            y[s:e] += _tone(root * 2 ** (step / 12), e - s, rng) * env
        t += dur
    if rng.random() < 0.5:                                   # drums: decaying noise bursts on the beat
        for k in range(int(seconds / beat) + 1):
            s = int(k * beat * SAMPLE_RATE)
            m = min(n - s, 2400)
            if m > 0:
                y[s:s + m] += rng.normal(0, 1.5, m) * np.exp(-np.arange(m) / rng.uniform(100, 800))
    return y


def noise(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """White, pink or brown noise, sometimes slowly swelling."""
    n = int(seconds * SAMPLE_RATE)
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0)
    y = np.fft.irfft(spec / f ** (rng.choice([0.0, 0.5, 1.0])), n)
    if rng.random() < 0.3:
        y *= 1 + 0.8 * np.sin(2 * np.pi * rng.uniform(0.2, 2) * np.arange(n) / SAMPLE_RATE)
    return y


def background_pool(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` log-Mel backgrounds (rows, N_MELS), two thirds music, one third noise."""
    pool = []
    for i in range(count):
        y = music(BACKGROUND_SECONDS, rng) if i % 3 else noise(BACKGROUND_SECONDS, rng)
        y = 0.1 * y / (np.sqrt(np.mean(y ** 2)) + 1e-9)
        pool.append(log_mel(y.astype(np.float32)))
    return pool


def mix(mel: np.ndarray, background: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Log-Mel of speech + background at ``snr_db`` (powers added; the background loops or is cropped)."""
    p_s = np.exp(mel) - LOG_EPS
    reps = int(np.ceil(len(mel) / len(background))) + 1
    bg = np.tile(background, (reps, 1))
    s = int(rng.integers(0, len(bg) - len(mel) + 1))
    p_b = np.exp(bg[s:s + len(mel)]) - LOG_EPS
    gain = p_s.sum(axis=1).mean() / max(p_b.sum(axis=1).mean(), 1e-12) / 10 ** (snr_db / 10)
    return np.log(np.maximum(p_s + gain * p_b, 0.0) + LOG_EPS).astype(np.float32)


def silent_mel(rows: int) -> np.ndarray:
    """Log-Mel of digital silence."""
    return np.full((rows, N_MELS), np.log(LOG_EPS), np.float32)

