"""Constants and configuration dataclasses: the one place that fixes sample rate, fps and windows.

The models work on a fixed time base (``FPS`` video frames per second, ``MEL_PER_FRAME``
feature frames per video frame) so that video frame ``t`` owns exactly the audio samples
``[t * SAMPLES_PER_FRAME, (t + 1) * SAMPLES_PER_FRAME)``. Other output frame rates are
produced by resampling landmark sequences in time, never by changing the features.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .emotion.vocabulary import EMOTION_CHOICES, emotion_weights
from .errors import shown

# --- audio -----------------------------------------------------------------------------------
SAMPLE_RATE = 16000                            # Hz, every input is resampled to this
FPS = 25                                       # model time base, video frames per second
FPS_RANGE = (1.0, 120.0)                       # frame rates a video (or a landmark file) may have
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS         # 640 samples = one video frame
MEL_PER_FRAME = 4                              # feature frames per video frame
HOP_LENGTH = SAMPLES_PER_FRAME // MEL_PER_FRAME  # 160 samples = 10 ms
WIN_LENGTH = 400                               # 25 ms analysis window
N_FFT = 512
N_MELS = 80
N_MFCC = 20
FMIN, FMAX = 55.0, 7600.0
LOG_EPS = 1e-5
SILENCE_PEAK = 1e-4                            # sound whose loudest sample is below this is silence

# --- windows -------------------------------------------------------------------------------------
WINDOW_FRAMES = FPS                            # 1-second windows, in video frames
WINDOW_STRIDE = FPS // 2                       # 50 % overlap between consecutive windows

# --- video ---------------------------------------------------------------------------------------
VIDEO_CODEC = "libx264"
AUDIO_CODEC = "aac"
PIX_FMT = "yuv420p"
AUDIO_BITRATE = 128_000                        # AAC bits per second per channel: transparent

# --- face ----------------------------------------------------------------------------------------
N_LANDMARKS = 68
MAX_EXPRESSION = 1.25                          # users may scale the voice's expression up to this (--expression)
ARTICULATION_RANGE = (0.25, 2.0)               # --articulation: how wide the mouth moves, 1 = a typical speaker
HEAD_MOTION_MAX = 2.0                          # --head-motion: 0 a still head, 1 a speaker's sway and nods


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
    mouth_interior: bool = True   # fill opening lips with a real mouth interior (else the warp alone)
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
    emotion: str = "auto"          # the emotion shown: "auto" (what the voice says) or neutral, happy, sad, ...
    emotion_intensity: float = 1.0  # how strongly it shows (0-MAX_EXPRESSION)
    emotion_timeline: str | None = None  # a .json/.csv file of time ranges -> emotion (emotion/timeline.py)
    head_motion: float = 1.0       # 0 a still head, 1 a speaker's sway and nods, up to HEAD_MOTION_MAX
    face_index: int | None = None  # which face of a group photo talks, counted from the left; None: the largest
    loop: str = "pingpong"         # dubbing a video shorter than the speech: "pingpong" (forward, back, ...) or "loop"
    video_end: str = "cut"         # dubbing a video longer than the speech: "cut" at the speech's end, or "keep" the
                                   # rest with the mouth closed


LOOPS = ("pingpong", "loop")
VIDEO_ENDS = ("cut", "keep")

# --- per-video options, as every interface takes them -----------------------------------------------
@dataclass(frozen=True)
class Option:
    """One per-video option: its type, range or choices, default (None: decided per video) and meaning."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    default: object = None
    choices: tuple = ()
    doc: str = ""


OPTION_SPECS = {                                                   # CLI flags, form fields, manifest columns
    "size": Option(int, 16, 4096, doc="longest output side in pixels (default: the photo's, at most 512)"),
    "crop": Option(str, default="full", choices=("full", "face"),
                   doc="full: the whole photo, the face pasted back; face: a square around the face"),
    "fps": Option(float, *FPS_RANGE, doc=f"output frame rate (default {FPS})"),
    "expression": Option(float, 0.0, MAX_EXPRESSION, 1.0, doc="strength of the expression heard in the voice "
                         "(0 lips only)"),
    "articulation": Option(float, *ARTICULATION_RANGE, 1.0, doc="how wide the mouth moves (1 a typical speaker)"),
    "emotion": Option(str, default="auto", choices=EMOTION_CHOICES, doc="the emotion shown; auto: the voice's"),
    "emotion_intensity": Option(float, 0.0, MAX_EXPRESSION, 1.0, doc="how strongly the emotion shows"),
    "head_motion": Option(float, 0.0, HEAD_MOTION_MAX, 1.0, doc="head sway and nods (0 a still head)"),
    "seed": Option(int, 0, 2 ** 31 - 1, 0, doc="seed of blinks and head motion"),
    "face_index": Option(int, 0, 999, doc="in a group photo, which face talks, from the left from 0 "
                         "(default: the largest)"),
    "loop": Option(str, default="pingpong", choices=LOOPS, doc="dubbing a video shorter than the speech: play it "
                   "forward and back (pingpong) or restart it (loop)"),
    "video_end": Option(str, default="cut", choices=VIDEO_ENDS, doc="dubbing a video longer than the speech: cut "
                        "it at the speech's end, or keep the rest with the mouth closed"),
}
OPTIONS = tuple(OPTION_SPECS)


def generate_config(options: dict | None = None, **base) -> GenerateConfig:
    """A GenerateConfig from per-video options given as text or numbers (a form, a CSV row, JSON).

    The CLI, the web app, the server and batch mode all build their settings here, so a value is
    accepted or refused with the same one-line message everywhere. Empty values mean the default.
    """
    from .errors import InputError
    opts = {k: v for k, v in (options or {}).items() if v is not None and str(v).strip() != ""}
    unknown = set(opts) - set(OPTIONS)
    if unknown:
        names = ", ".join(str(k) if str(k).isprintable() else repr(k) for k in sorted(unknown, key=str))
        raise InputError(f"unknown option(s) {names}; use {', '.join(OPTIONS)}")

    def num(name: str):
        if name not in opts:
            return None
        spec = OPTION_SPECS[name]
        try:
            v = float(opts[name])
            v = int(v) if spec.kind is int and math.isfinite(v) else v
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"{name} must be a number, not {shown(opts[name])}") from None
        if not spec.lo <= v <= spec.hi:
            raise InputError(f"{name} {v:g} is outside {spec.lo:g}-{spec.hi:g}")
        return v

    def choice(name: str) -> str:
        spec = OPTION_SPECS[name]
        v = str(opts.get(name, spec.default)).strip().lower()
        if v not in spec.choices:
            raise InputError(f"{name} must be {' or '.join(repr(x) for x in spec.choices)}, not {shown(opts[name])}")
        return v

    crop, loop, video_end = choice("crop"), choice("loop"), choice("video_end")
    size = num("size")
    expression = num("expression")
    articulation = num("articulation")
    seed = num("seed")
    intensity = num("emotion_intensity")
    head = num("head_motion")
    face_index = num("face_index")
    emotion = str(opts.get("emotion", "auto")).strip().lower()
    emotion_weights(emotion, " (emotion)")
    cfg = GenerateConfig(render=RenderConfig(size=size, crop=crop), video=VideoConfig(fps=num("fps")),
                         **base)
    if expression is not None:
        cfg.expression = expression
    if articulation is not None:
        cfg.articulation = articulation
    if seed is not None:
        cfg.seed = int(seed)
    if intensity is not None:
        cfg.emotion_intensity = intensity
    if head is not None:
        cfg.head_motion = head
    cfg.emotion = emotion
    cfg.face_index = None if face_index is None else int(face_index)
    cfg.loop, cfg.video_end = loop, video_end
    return cfg
