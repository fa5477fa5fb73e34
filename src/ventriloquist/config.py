"""Constants and configuration dataclasses: the one place that fixes sample rate, fps and windows.

The models work on a fixed time base (``FPS`` video frames per second, ``MEL_PER_FRAME``
feature frames per video frame) so that video frame ``t`` owns exactly the audio samples
``[t * SAMPLES_PER_FRAME, (t + 1) * SAMPLES_PER_FRAME)``. Other output frame rates are
produced by resampling landmark sequences in time, never by changing the features.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# --- audio -----------------------------------------------------------------------------------
SAMPLE_RATE = 16000                            # Hz, every input is resampled to this
FPS = 25                                       # model time base, video frames per second
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS         # 640 samples = one video frame
MEL_PER_FRAME = 4                              # feature frames per video frame
HOP_LENGTH = SAMPLES_PER_FRAME // MEL_PER_FRAME  # 160 samples = 10 ms
WIN_LENGTH = 400                               # 25 ms analysis window
N_FFT = 512
N_MELS = 80
N_MFCC = 20
FMIN, FMAX = 55.0, 7600.0
LOG_EPS = 1e-5

# --- windows -------------------------------------------------------------------------------------
WINDOW_FRAMES = FPS                            # 1-second windows, in video frames
WINDOW_STRIDE = FPS // 2                       # 50 % overlap between consecutive windows

# --- video ---------------------------------------------------------------------------------------
VIDEO_CODEC = "libx264"
AUDIO_CODEC = "aac"
PIX_FMT = "yuv420p"
AUDIO_BITRATE = 128_000

# --- face ----------------------------------------------------------------------------------------
N_LANDMARKS = 68
MAX_EXPRESSION = 1.25                          # users may scale the voice's expression up to this (--expression)
ARTICULATION_RANGE = (0.25, 2.0)               # --articulation: how wide the mouth moves, 1 = a typical speaker


@dataclass
class RenderConfig:
    """How frames are produced from the photo.

    ``size`` is the longest side of the output in pixels (``None`` keeps the photo's size,
    capped at ``max_side``); ``crop`` is ``"full"`` (whole photo, face pasted back) or
    ``"face"`` (a square crop around the face).
    """

    size: int | None = None
    crop: str = "full"
    max_side: int = 512
    face_margin: float = 1.0       # crop="face": extra context around the face box, in face sizes
    mouth_interior: bool = True
    teeth: bool = True
    feather: float = 0.08          # seam softness, fraction of the face size


@dataclass
class VideoConfig:
    fps: float | None = None       # None: a driving video's or landmark file's own rate, else FPS
    crf: int = 20
    preset: str = "veryfast"
    threads: int = 0               # 0 lets libx264 choose
    audio_bitrate: int = AUDIO_BITRATE


@dataclass
class GenerateConfig:
    render: RenderConfig = field(default_factory=RenderConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    seed: int = 0
    device: str = "cpu"
    expression: float = 1.0        # strength of the expression heard in the voice: 0 = lips only, 1 = as trained
    articulation: float = 1.0      # how wide the mouth moves: 1 = a typical speaker, 0.7 restrained, 1.3 wide
