"""Property tests: every loader of user files, fed random bytes, images, audio, text and arrays, either
returns what it documents or raises a clean error (a VentriloquistError whose message is one line naming
the file); never another exception and never a hang.

Examples are derandomized (the same inputs on every run, no example database), so CI is reproducible.
"""
from __future__ import annotations

import csv
import io
import json
import signal
import struct
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ventriloquist.audio import AAC_RATES, MAX_SAMPLE, energy, load_audio, load_audio_as_is, log_mel, mfcc, num_frames
from ventriloquist.batch import Row, read_manifest
from ventriloquist.config import (ARTICULATION_RANGE, FPS_RANGE, HEAD_MOTION_MAX, MAX_EXPRESSION, MEL_PER_FRAME, N_MELS,
                                  N_MFCC, OPTIONS, SAMPLE_RATE, GenerateConfig, generate_config)
from ventriloquist.emotion.timeline import EMOTION_CHOICES, Segment, load_timeline
from ventriloquist.emotion.vocabulary import ALIASES, EMOTIONS, N_EMOTIONS, to_index
from ventriloquist.errors import FaceNotFoundError, VentriloquistError
from ventriloquist.face.detect import face_landmarks, load_image
from ventriloquist.motion.sequence import LandmarkSequence
from ventriloquist.video import read_frames, video_info

pytestmark = pytest.mark.filterwarnings("ignore::ventriloquist.errors.InputWarning",
                                        "ignore::RuntimeWarning", "ignore::DeprecationWarning")

PROPERTY = settings(deadline=None, derandomize=True, database=None, max_examples=50,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])
HANG_S = 20            # one call on a small random input takes well under a second; this long is a hang


class Hang(BaseException):
    """A loader ran past HANG_S: a BaseException, so a loader's ``except Exception`` cannot swallow it."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def stop(signum, frame):
        raise Hang(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def outcome(load: Callable[..., Any], *args: Any, names: str | None = None,
            clean: type[VentriloquistError] = VentriloquistError) -> Any:
    """``load(*args)``, or None after a clean error; any other exception (or a hang) fails the property.

    A clean error is a ``clean`` (a VentriloquistError) with a one-line message that mentions ``names`` (the file).
    """
    try:
        with _time_limit(HANG_S):
            return load(*args)
    except clean as exc:
        message = str(exc)
        assert message and "\n" not in message and "\r" not in message, f"not one line: {message!r}"
        if names is not None:
            assert names in message, f"{message!r} does not name {names}"
        return None


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


seeds = st.integers(0, 2 ** 32 - 1)

# --- random and damaged bytes ---------------------------------------------------------------------------
MAGIC = {
    "png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff\xe0", "bmp": b"BM", "tiff_le": b"II*\x00",
    "tiff_be": b"MM\x00*", "webp": b"RIFF\x10\x00\x00\x00WEBPVP8 ", "gif": b"GIF89a",
    "wav": b"RIFF\x24\x00\x00\x00WAVEfmt ", "flac": b"fLaC", "ogg": b"OggS\x00\x02", "mp3": b"\xff\xfb\x90\x64",
    "id3": b"ID3\x03\x00\x00\x00\x00\x00\x00", "mp4": b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isom",
    "mkv": b"\x1aE\xdf\xa3", "avi": b"RIFF\x00\x01\x00\x00AVI LIST", "ts": b"G@\x00\x10",
    "h264": b"\x00\x00\x00\x01\x67", "zip": b"PK\x03\x04", "npy": b"\x93NUMPY\x01\x00",
}


def random_bytes(max_size: int = 2048) -> st.SearchStrategy[bytes]:
    """Plain random bytes, and random bytes behind a real file signature (so decoders get past probing)."""
    return st.one_of(st.binary(max_size=max_size),
                     st.builds(bytes.__add__, st.sampled_from(sorted(MAGIC.values())), st.binary(max_size=max_size)))


@st.composite
def damaged(draw: st.DrawFn, original: bytes) -> bytes:
    """A valid file cut short, overwritten in places with noise, or with flipped bits (a bad download)."""
    data = bytearray(original)
    kind = draw(st.sampled_from(["truncate", "overwrite", "flip"]))
    rng = _rng(draw(seeds))
    if kind == "truncate":
        return bytes(data[:draw(st.integers(0, len(data)))])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "overwrite":
            n = len(data[at:at + draw(st.integers(1, 256))])
            data[at:at + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        elif data:
            data[at] ^= 1 << int(rng.integers(0, 8))
    return bytes(data)


# --- images ---------------------------------------------------------------------------------------------
# Pillow mode -> bytes per pixel; Pillow writes each format in the modes listed for it
MODE_BYTES = {"1": 1, "L": 1, "LA": 2, "P": 1, "RGB": 3, "RGBA": 4, "CMYK": 4, "I;16": 2, "I": 4, "F": 4}
FORMAT_MODES = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I"],
    "JPEG": ["L", "RGB", "CMYK"],
    "BMP": ["1", "L", "P", "RGB", "RGBA"],
    "TIFF": ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"],
    "WEBP": ["L", "RGB", "RGBA"],
}


def _pixels(rng: np.random.Generator, pattern: str, h: int, w: int, channels: int, dtype: type) -> np.ndarray:
    info = np.finfo(dtype) if np.issubdtype(dtype, np.floating) else np.iinfo(dtype)
    lo, hi = (0.0, 1.0) if np.issubdtype(dtype, np.floating) else (info.min, info.max)
    if pattern == "constant":
        x = np.full((h, w, channels), rng.uniform(lo, hi))
    elif pattern == "gradient":
        x = np.broadcast_to(np.linspace(lo, hi, w)[None, :, None], (h, w, channels))
    else:
        x = rng.uniform(lo, hi, (h, w, channels))
    x = np.asarray(x).astype(dtype)
    if np.issubdtype(dtype, np.floating) and pattern == "noise":
        x.flat[rng.integers(0, x.size, max(1, x.size // 50))] = rng.choice([np.nan, np.inf, -np.inf, 1e30])
    return np.ascontiguousarray(x)


@st.composite
def encoded_images(draw: st.DrawFn) -> tuple[bytes, tuple[int, int], str]:
    """(file bytes, (height, width), description): random pictures in every format and pixel mode we accept."""
    from PIL import Image
    h, w = draw(st.integers(1, 320)), draw(st.integers(1, 320))
    rng = _rng(draw(seeds))
    pattern = draw(st.sampled_from(["noise", "constant", "gradient"]))
    fmt = draw(st.sampled_from(sorted(FORMAT_MODES) + ["PNG16", "TIFF16"]))
    if fmt in ("PNG16", "TIFF16"):        # 16 bits per channel, colour and alpha: Pillow cannot write these
        import cv2
        x = _pixels(rng, pattern, h, w, draw(st.sampled_from([3, 4])), np.uint16)
        ok, buf = cv2.imencode("." + fmt[:-2].lower(), x)
        assert ok
        return buf.tobytes(), (h, w), f"{fmt} {x.shape}"
    mode = draw(st.sampled_from(FORMAT_MODES[fmt]))
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}.get(mode, np.uint8)
    x = _pixels(rng, pattern, h, w, MODE_BYTES[mode] // np.dtype(dtype).itemsize, dtype)
    if mode == "1":
        x = np.packbits(x[..., 0] > 127, axis=1)
    img = Image.frombytes(mode, (w, h), x.tobytes())
    if mode == "P":
        img.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
    out = io.BytesIO()
    options = {"quality": draw(st.integers(1, 100))} if fmt in ("JPEG", "WEBP") else {}
    img.save(out, fmt, **options)
    return out.getvalue(), (h, w), f"{fmt} {mode} {w}x{h}"


def _small_picture(fmt: str) -> bytes:
    """A valid 24x16 noise picture, to damage."""
    from PIL import Image
    out = io.BytesIO()
    Image.frombytes("RGB", (24, 16), _rng(0).integers(0, 256, 24 * 16 * 3, dtype=np.uint8).tobytes()).save(out, fmt)
    return out.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG header for a huge picture with almost no pixel data (a decompression bomb, cheaply)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (MAGIC["png"] + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _is_rgb(image: Any, shape: tuple[int, int] | None = None) -> None:
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] >= 1 and image.shape[1] >= 1
    if shape is not None:
        assert image.shape[:2] == shape


@settings(PROPERTY, max_examples=100)
@given(data=st.one_of(random_bytes(), *[damaged(_small_picture(fmt)) for fmt in FORMAT_MODES]))
@example(data=b"")
@example(data=_png_claiming(30000, 30000))
@example(data=_png_claiming(2 ** 31 - 1, 1))
def test_load_image_of_any_bytes_is_rgb_or_a_clean_error(tmp_path: Path, data: bytes) -> None:
    path = _written(tmp_path / "photo.jpg", data)
    image = outcome(load_image, path, names=str(path))
    if image is not None:
        _is_rgb(image)


@settings(PROPERTY, max_examples=60)
@given(picture=encoded_images())
def test_load_image_decodes_every_format_and_mode_to_rgb_of_its_size(tmp_path: Path, picture) -> None:
    data, shape, what = picture
    path = _written(tmp_path / "photo.img", data)
    image = outcome(load_image, path, names=str(path))
    assert image is not None, f"a valid {what} was refused"
    _is_rgb(image, shape)


@settings(PROPERTY, max_examples=30)
@given(h=st.integers(1, 400), w=st.integers(1, 400), seed=seeds, lossless=st.sampled_from(["PNG", "BMP", "TIFF"]))
def test_load_image_keeps_rgb_pixels_of_lossless_files(tmp_path: Path, h: int, w: int, seed: int,
                                                       lossless: str) -> None:
    """The colours come back as R, G, B (not OpenCV's B, G, R) and unchanged."""
    from PIL import Image
    x = _rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(x).save(out, lossless)
    path = _written(tmp_path / f"photo.{lossless.lower()}", out.getvalue())
    np.testing.assert_array_equal(load_image(path), x)


def _landmarks_or_no_face(image: np.ndarray) -> None:
    k = outcome(face_landmarks, image, "probe.png", names="probe.png", clean=FaceNotFoundError)
    if k is not None:
        assert isinstance(k, np.ndarray) and k.shape == (68, 2) and k.dtype == np.float32 and np.isfinite(k).all()


@settings(PROPERTY, max_examples=25)
@given(h=st.integers(1, 96), w=st.integers(1, 96), gray=st.booleans(), seed=seeds,
       pattern=st.sampled_from(["noise", "constant", "gradient"]))
def test_face_landmarks_of_a_random_picture_are_68_points_or_no_face(h: int, w: int, gray: bool, seed: int,
                                                                     pattern: str) -> None:
    image = _pixels(_rng(seed), pattern, h, w, 3, np.uint8)
    _landmarks_or_no_face(image[..., 0].copy() if gray else image)


@settings(PROPERTY, max_examples=20)
@given(box=st.tuples(*[st.floats(0, 1)] * 4), scale=st.floats(0.03, 1.0), gray=st.booleans())
def test_face_landmarks_of_any_crop_of_a_face_are_68_points_or_no_face(face_image: np.ndarray, box, scale: float,
                                                                       gray: bool) -> None:
    """Crops cut through the face and shrunk until it vanishes: boxes at and past the picture's edges."""
    import cv2
    h, w = face_image.shape[:2]
    x0, x1 = sorted((int(box[0] * w), int(box[1] * w)))
    y0, y1 = sorted((int(box[2] * h), int(box[3] * h)))
    crop = face_image[y0:y1 + 1, x0:x1 + 1]
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    crop = np.ascontiguousarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], 3))
    _landmarks_or_no_face(crop[..., 1].copy() if gray else crop)


# --- audio ----------------------------------------------------------------------------------------------
SUBTYPES = [("WAV", "PCM_U8"), ("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "PCM_32"), ("WAV", "FLOAT"),
            ("WAV", "DOUBLE"), ("FLAC", "PCM_S8"), ("FLAC", "PCM_16"), ("FLAC", "PCM_24")]
FLOAT_SUBTYPES = [s for s in SUBTYPES if s[1] in ("FLOAT", "DOUBLE")]
RATES = st.one_of(st.sampled_from([8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000]), st.integers(8000, 96000))


@st.composite
def sound_files(draw: st.DrawFn, nonfinite: bool = False) -> dict:
    """A random recording: rate, channels, length (0 to 2 s), sample format and content (incl. NaN, clipping);
    ``nonfinite``: a float recording with NaN or Inf samples."""
    fmt, subtype = draw(st.sampled_from(FLOAT_SUBTYPES if nonfinite else SUBTYPES))
    rate, channels = draw(RATES), draw(st.integers(1, 6))
    if fmt == "FLAC" and rate > 65535:
        rate -= rate % 10                # FLAC frames can state such a rate only in tens of Hz
    frames = draw(st.one_of(st.integers(int(nonfinite), 2000), st.integers(int(nonfinite), 2 * rate)))
    floating = subtype in ("FLOAT", "DOUBLE")
    content = draw(st.sampled_from(["nan", "inf"] if nonfinite else ["speechlike", "silence", "clipped", "dc"]
                                   + (["nan", "inf", "loud"] if floating else [])))
    rng = _rng(draw(seeds))
    t = np.arange(frames) / rate
    y = (0.3 * np.sin(2 * np.pi * rng.uniform(80, 400) * t) * (1 + rng.normal(0, 0.1, frames)))[:, None]
    y = np.repeat(y, channels, axis=1) + rng.normal(0, 0.01, (frames, channels))
    if content == "silence":
        y[:] = 0
    elif content == "clipped":
        y = np.clip(8 * y, -1, 1)
    elif content == "dc":
        y[:] = rng.uniform(-1, 1)
    elif content == "loud":
        y *= 1e6
    elif content in ("nan", "inf") and frames:
        y.flat[rng.integers(0, y.size, max(1, y.size // 1000))] = np.nan if content == "nan" else np.inf
    return {"format": fmt, "subtype": subtype, "rate": rate, "channels": channels, "frames": frames,
            "finite": content not in ("nan", "inf"), "y": y.astype(np.float64 if subtype == "DOUBLE" else np.float32)}


def _write_sound(tmp_path: Path, s: dict) -> Path:
    path = tmp_path / f"speech.{s['format'].lower()}"
    sf.write(str(path), s["y"], s["rate"], subtype=s["subtype"], format=s["format"])
    return path


@pytest.fixture(scope="module")
def speech_flac(tmp_path_factory) -> bytes:
    """A short stereo FLAC to damage."""
    path = tmp_path_factory.mktemp("sound") / "s.flac"
    y = 0.3 * np.sin(np.arange(12000) * 0.05)
    sf.write(str(path), np.stack([y, -y], axis=1), 22050, format="FLAC")
    return path.read_bytes()


@pytest.fixture(scope="module")
def small_mp4(tmp_path_factory) -> bytes:
    """A 12-frame 64x48 H.264 + AAC video to damage."""
    from ventriloquist.config import VideoConfig
    from ventriloquist.video import VideoWriter
    path = tmp_path_factory.mktemp("video") / "v.mp4"
    audio = (0.2 * np.sin(np.arange(SAMPLE_RATE // 2) * 0.07)).astype(np.float32)
    with VideoWriter(path, 64, 48, VideoConfig(fps=25), audio=audio) as w:
        for i in range(12):
            w.write(np.full((48, 64, 3), i * 20, np.uint8))
    return path.read_bytes()


def _is_model_audio(y: Any) -> None:
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.ndim == 1
    assert len(y) >= SAMPLE_RATE // 25 and np.isfinite(y).all()


@settings(PROPERTY, max_examples=80)
@given(data=random_bytes(), suffix=st.sampled_from([".wav", ".flac", ".mp3", ".ogg", ".m4a", ".mp4"]))
@example(data=b"", suffix=".wav")
def test_load_audio_of_any_bytes_is_mono_float32_or_a_clean_error(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = _written(tmp_path / f"speech{suffix}", data)
    y = outcome(load_audio, path, names=str(path))
    if y is not None:
        _is_model_audio(y)


@settings(PROPERTY, max_examples=40)
@given(choice=st.data())
def test_load_audio_of_damaged_files_is_mono_float32_or_a_clean_error(tmp_path: Path, speech_flac: bytes,
                                                                     small_mp4: bytes, choice) -> None:
    original, suffix = choice.draw(st.sampled_from([(speech_flac, ".flac"), (small_mp4, ".mp4")]))
    path = _written(tmp_path / f"speech{suffix}", choice.draw(damaged(original)))
    y = outcome(load_audio, path, names=str(path))
    if y is not None:
        _is_model_audio(y)


@settings(PROPERTY, max_examples=50)
@given(sound=sound_files())
def test_load_audio_of_any_recording_is_16k_mono_of_its_length(tmp_path: Path, sound: dict) -> None:
    """Finite recordings of a frame or more always load, at 16 kHz and as long as they last; NaN or Inf
    samples and shorter recordings are a clean error."""
    path = _write_sound(tmp_path, sound)
    y = outcome(load_audio, path, names=str(path))
    expected = sound["frames"] * SAMPLE_RATE / sound["rate"]
    usable = sound["finite"] and expected >= SAMPLE_RATE // 25 + 2
    if usable:
        assert y is not None, f"a valid recording was refused: {sound['subtype']} {sound['rate']} Hz"
    if y is not None:
        _is_model_audio(y)
        assert abs(len(y) - expected) <= 2


@settings(PROPERTY, max_examples=50)
@given(sound=sound_files())
def test_load_audio_as_is_keeps_up_to_two_channels_at_an_aac_rate(tmp_path: Path, sound: dict) -> None:
    """(An empty FLAC is a 0-byte file, which the any-bytes test below covers; NaN and Inf have a test of their own.)"""
    assume(sound["finite"] and (sound["format"] != "FLAC" or sound["frames"] > 0))
    path = _write_sound(tmp_path, sound)
    loaded = outcome(load_audio_as_is, path, names=str(path))
    assert loaded is not None, "a recording soundfile just wrote was refused"
    y, rate = loaded
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.ndim == 2
    assert y.shape[0] == min(sound["channels"], 2) and y.flags.c_contiguous
    assert rate in AAC_RATES and rate == (sound["rate"] if sound["rate"] in AAC_RATES else 48000)
    assert abs(y.shape[1] - sound["frames"] * rate / sound["rate"]) <= 2 and np.isfinite(y).all()


@settings(PROPERTY, max_examples=20)
@given(sound=sound_files(nonfinite=True))
@example(sound={"format": "WAV", "subtype": "FLOAT", "rate": 8001, "channels": 1, "frames": 1, "finite": False,
                "y": np.full((1, 1), np.nan, np.float32)})
def test_load_audio_as_is_of_nan_or_inf_samples_is_a_clean_error(tmp_path: Path, sound: dict) -> None:
    path = _write_sound(tmp_path, sound)
    loaded = outcome(load_audio_as_is, path, names=str(path))
    assert loaded is None or np.isfinite(loaded[0]).all()


@settings(PROPERTY, max_examples=30)
@given(data=random_bytes(), suffix=st.sampled_from([".wav", ".flac", ".mp3", ".m4a"]))
@example(data=b"", suffix=".wav")
def test_load_audio_as_is_of_any_bytes_is_a_track_or_a_clean_error(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = _written(tmp_path / f"speech{suffix}", data)
    loaded = outcome(load_audio_as_is, path, names=str(path))
    if loaded is not None:
        y, rate = loaded
        assert y.dtype == np.float32 and y.ndim == 2 and len(y) <= 2 and rate in AAC_RATES


def test_load_audio_as_is_of_an_empty_flac_is_a_clean_error(tmp_path: Path) -> None:
    path = _written(tmp_path / "speech.flac", b"")
    assert outcome(load_audio_as_is, path, names=str(path)) is None


def test_load_audio_as_is_of_a_missing_file_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "no_such_speech.wav"
    assert outcome(load_audio_as_is, path, names=str(path)) is None


def _has_feature_shapes(y: np.ndarray) -> None:
    n = num_frames(len(y))
    mel = log_mel(y)
    assert mel.shape == (n * MEL_PER_FRAME, N_MELS) and mel.dtype == np.float32 and np.isfinite(mel).all()
    c = mfcc(mel=mel)
    assert c.shape == (n * MEL_PER_FRAME, N_MFCC) and c.dtype == np.float32 and np.isfinite(c).all()
    e = energy(y)
    assert e.shape == (n,) and e.dtype == np.float32 and np.isfinite(e).all() and (e >= 0).all()


@st.composite
def sample_arrays(draw: st.DrawFn, amplitude: float) -> np.ndarray:
    """Mono samples: short arrays drawn value by value, or up to 3 s of seeded noise, tones, clicks, silence."""
    if draw(st.booleans()):
        return draw(hnp.arrays(np.float32, st.integers(0, 3000),
                               elements=st.floats(-amplitude, amplitude, width=32)))
    rng = _rng(draw(seeds))
    n = draw(st.integers(0, 3 * SAMPLE_RATE))
    kind = draw(st.sampled_from(["noise", "tone", "clicks", "silence", "full_scale"]))
    y = {"noise": lambda: rng.normal(0, 0.3, n), "tone": lambda: np.sin(np.arange(n) * rng.uniform(0.01, 3)),
         "clicks": lambda: (rng.random(n) < 0.001) * 1.0, "silence": lambda: np.zeros(n),
         "full_scale": lambda: rng.choice([-1.0, 1.0], n)}[kind]()
    return (y * draw(st.floats(0, amplitude))).astype(np.float32)


@settings(PROPERTY, max_examples=40)
@given(y=sample_arrays(amplitude=32768.0))
def test_features_of_any_samples_are_finite_and_frame_aligned(y: np.ndarray) -> None:
    """Samples up to 16-bit integer scale (a recording never normalised) give finite, frame-aligned features."""
    _has_feature_shapes(y)


@settings(PROPERTY, max_examples=10)
@given(y=sample_arrays(amplitude=MAX_SAMPLE))
@example(y=np.full(640, MAX_SAMPLE, np.float32))
def test_features_of_any_samples_load_audio_accepts_are_finite(y: np.ndarray) -> None:
    """load_audio refuses samples beyond MAX_SAMPLE (damage, not sound); everything up to it has finite features."""
    _has_feature_shapes(y)


@settings(PROPERTY, max_examples=10)
@given(y=sample_arrays(amplitude=float(np.float32(3e38))))
@example(y=np.full(640, 1e19, np.float32))
def test_absurd_samples_are_refused_by_load_audio(tmp_path_factory, y: np.ndarray) -> None:
    path = tmp_path_factory.mktemp("absurd") / "loud.wav"
    sf.write(path, y, 16000, subtype="FLOAT")
    loaded = outcome(load_audio, path, names=str(path))
    if loaded is not None:
        assert float(np.abs(loaded).max()) <= MAX_SAMPLE


# --- emotion timelines ----------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
numbers = st.one_of(st.integers(-5, 100), st.floats(), st.floats(0, 10).map(str), st.text(max_size=5),
                    st.integers(-10 ** 30, 10 ** 30), st.none(), json_values)
emotion_names = st.sampled_from(sorted(set(EMOTION_CHOICES) | set(ALIASES) | {"", "AUTO", " Happy ", "joyful"}))
segment_objects = st.fixed_dictionaries({}, optional={
    "start": numbers, "end": numbers, "intensity": numbers,
    "emotion": st.one_of(emotion_names, st.dictionaries(st.one_of(emotion_names, st.text(max_size=4)), numbers,
                                                        max_size=4), json_values),
    **{e: numbers for e in EMOTIONS}})
timeline_json = st.one_of(st.lists(segment_objects, max_size=4),
                          st.fixed_dictionaries({"segments": st.lists(segment_objects, max_size=4)}), json_values)
csv_cells = st.one_of(st.floats(allow_nan=True).map(str), st.integers(-3, 60).map(str), emotion_names,
                      st.text(max_size=6))
csv_headers = st.lists(st.one_of(st.sampled_from(["start", "end", "emotion", "intensity", " Start", "END", *EMOTIONS]),
                                 st.text(max_size=5)), max_size=9)


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


csv_tables = st.builds(_csv_text, csv_headers, st.lists(st.lists(csv_cells, max_size=10), max_size=5))


def _is_timeline(segments: Any) -> None:
    assert isinstance(segments, list) and segments
    for s in segments:
        assert isinstance(s, Segment)
        assert np.isfinite([s.start, s.end, s.intensity]).all() and 0 <= s.start < s.end
        assert 0 <= s.intensity <= MAX_EXPRESSION
        if s.weights is not None:
            w = np.asarray(s.weights)
            assert w.shape == (N_EMOTIONS,) and np.isfinite(w).all() and (w >= 0).all()
            assert abs(w.sum() - 1) < 1e-6


@settings(PROPERTY, max_examples=150)
@given(text=st.one_of(st.text(), timeline_json.map(json.dumps)))
@example(text="[" * 100_000)
@example(text='[{"start": 0, "end": 1' + "0" * 400 + ', "emotion": "happy"}]')
@example(text='[{"start": 0, "end": 1' + "0" * 5000 + ', "emotion": "happy"}]')
@example(text='[{"start": 0, "end": 1, "happy": 1e308, "sad": 1e308}]')
def test_load_timeline_of_any_json_is_segments_or_a_clean_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "timeline.json"
    path.write_text(text, encoding="utf-8")
    _check_timeline(path)


@settings(PROPERTY, max_examples=150)
@given(text=st.one_of(st.text(), csv_tables))
@example(text='start,end,emotion\n0,1,"' + "a" * 200_000 + '"\n')
def test_load_timeline_of_any_csv_is_segments_or_a_clean_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "timeline.csv"
    path.write_text(text, encoding="utf-8")
    _check_timeline(path)


@settings(PROPERTY, max_examples=50)
@given(data=random_bytes(), suffix=st.sampled_from([".json", ".csv", ".txt"]))
def test_load_timeline_of_any_bytes_is_segments_or_a_clean_error(tmp_path: Path, data: bytes, suffix: str) -> None:
    _check_timeline(_written(tmp_path / f"timeline{suffix}", data))


def _check_timeline(path: Path) -> None:
    segments = outcome(load_timeline, path, names=str(path))
    if segments is not None:
        _is_timeline(segments)


# --- landmark sequences ---------------------------------------------------------------------------------
def _is_sequence(seq: Any) -> None:
    assert isinstance(seq, LandmarkSequence)
    k = seq.landmarks
    assert isinstance(k, np.ndarray) and k.dtype == np.float32 and k.ndim == 3 and k.shape[1:] == (68, 2)
    assert len(k) >= 1 and np.isfinite(k).all()
    assert isinstance(seq.fps, float) and np.isfinite(seq.fps) and seq.fps > 0
    assert isinstance(seq.width, int) and isinstance(seq.height, int) and seq.width >= 1 and seq.height >= 1


@st.composite
def landmark_arrays(draw: st.DrawFn) -> np.ndarray:
    """Arrays of the right shape (with odd dtypes, NaN, Inf, huge values) or of any small shape."""
    rng = _rng(draw(seeds))
    if draw(st.booleans()):
        shape = (draw(st.integers(0, 3)), 68, 2)
    else:
        shape = tuple(draw(st.lists(st.integers(0, 70), max_size=4)))
    x = rng.uniform(-10, 700, shape)
    spoil = draw(st.sampled_from(["none", "nan", "inf", "huge"]))
    if spoil != "none" and x.size:
        x.flat[int(rng.integers(0, x.size))] = {"nan": np.nan, "inf": np.inf, "huge": 1e300}[spoil]
    return x.astype(draw(st.sampled_from([np.float64, np.float32, np.float16, np.int16, np.uint8, np.bool_,
                                          np.complex64])))


scalars = st.one_of(st.floats(), st.integers(-10, 10 ** 6), st.sampled_from(["25", "x", "nan", ""]), st.none())


@st.composite
def sequence_json(draw: st.DrawFn) -> str:
    fields = {"landmarks": st.one_of(landmark_arrays().map(lambda a: a.real.astype(float).tolist()), json_values),
              "fps": scalars, "width": scalars, "height": scalars, "frame_count": scalars}
    return json.dumps(draw(st.fixed_dictionaries({}, optional=fields)))


@st.composite
def scalar_arrays(draw: st.DrawFn) -> np.ndarray:
    """A field such as fps as .npz stores it: 0-d, or wrapped in a 1- or 2-d array."""
    value = np.asarray(draw(scalars.filter(lambda v: v is not None)))
    return value.reshape(draw(st.sampled_from([(), (1,), (1, 1)])))


@st.composite
def sequence_npz(draw: st.DrawFn) -> bytes:
    fields = {"landmarks": landmark_arrays(), "fps": scalar_arrays(), "width": scalar_arrays(),
              "height": scalar_arrays(), "other": landmark_arrays()}
    out = io.BytesIO()
    np.savez(out, **draw(st.fixed_dictionaries({}, optional=fields)))
    return out.getvalue()


@settings(PROPERTY, max_examples=100)
@given(data=st.one_of(random_bytes(), sequence_json().map(str.encode), sequence_npz()),
       suffix=st.sampled_from([".npz", ".json"]))
@example(data=json.dumps({"landmarks": np.zeros((1, 68, 2)).tolist(), "fps": float("nan"), "width": 1,
                          "height": 1}).encode(), suffix=".json")
@example(data=json.dumps({"landmarks": np.zeros((1, 68, 2)).tolist(), "fps": 25, "width": -5,
                          "height": 0}).encode(), suffix=".json")
def test_landmark_sequence_load_of_anything_is_a_sequence_or_a_clean_error(tmp_path: Path, data: bytes,
                                                                           suffix: str) -> None:
    path = _written(tmp_path / f"motion{suffix}", data)
    seq = outcome(LandmarkSequence.load, path, names=str(path))
    if seq is not None:
        _is_sequence(seq)


@settings(PROPERTY, max_examples=30)
@given(frames=st.integers(1, 40), fps=st.floats(*FPS_RANGE), width=st.integers(1, 4096), height=st.integers(1, 4096),
       seed=seeds, suffix=st.sampled_from([".npz", ".json"]))
def test_landmark_sequence_saved_loads_back_the_same(tmp_path: Path, frames: int, fps: float, width: int,
                                                     height: int, seed: int, suffix: str) -> None:
    k = _rng(seed).uniform(-50, 4000, (frames, 68, 2)).astype(np.float32)
    path = tmp_path / f"motion{suffix}"
    LandmarkSequence(k, fps, width, height).save(path)
    seq = LandmarkSequence.load(path)
    _is_sequence(seq)
    np.testing.assert_allclose(seq.landmarks, k, atol=0.006 if suffix == ".json" else 0)
    assert (seq.fps, seq.width, seq.height) == (fps, width, height)


# --- batch manifests ------------------------------------------------------------------------------------
manifest_columns = st.sampled_from(["face", "audio", "out", "emotion_timeline", *OPTIONS, "Face", "volume"])
manifest_cells = st.one_of(st.sampled_from(["a.jpg", "b.wav", "", " ", "..", "/", "x.mp4", "sub/c.png", "1.5"]),
                           st.text(max_size=8))
manifest_tables = st.builds(_csv_text, st.one_of(st.lists(manifest_columns, max_size=6),
                                                 st.lists(manifest_columns | st.text(max_size=4), max_size=6)),
                            st.lists(st.lists(manifest_cells, max_size=8), max_size=5))


@settings(PROPERTY, max_examples=150)
@given(data=st.one_of(st.text().map(str.encode), manifest_tables.map(str.encode), random_bytes()))
@example(data=b"face,audio\na\n")
@example(data=b"face,audio\n\xff,b\n")
@example(data=b'face,audio\n"' + b"a" * 200_000 + b'",b\n')
@example(data=b'face,audio,"vol\nume"\na,b,c\n')
def test_read_manifest_of_any_csv_is_rows_or_a_clean_error(tmp_path: Path, data: bytes) -> None:
    path = _written(tmp_path / "jobs.csv", data)
    out_dir = tmp_path / "videos"
    rows = outcome(read_manifest, path, out_dir, names=str(path))
    if rows is None:
        return
    assert isinstance(rows, list) and [r.index for r in rows] == list(range(1, len(rows) + 1))
    for r in rows:
        assert isinstance(r, Row) and isinstance(r.face, Path) and isinstance(r.audio, Path)
        assert r.out.parent == out_dir and r.out.suffix == ".mp4" and r.out.stem
        assert set(r.options) <= set(OPTIONS) and all(isinstance(v, str) and v.strip() for v in r.options.values())
        assert r.timeline is None or isinstance(r.timeline, Path)


# --- per-video options ----------------------------------------------------------------------------------
option_values = st.one_of(st.text(max_size=8), st.integers(-10, 10 ** 6), st.floats(), st.booleans(), st.none(),
                          st.floats().map(str), st.integers(-10, 5000).map(str), emotion_names,
                          st.sampled_from(["full", "face", " FACE ", "1e400", "-inf", "nan"]))
option_dicts = st.dictionaries(st.one_of(st.sampled_from(OPTIONS), st.text(max_size=6)), option_values, max_size=6)


def _is_config(cfg: Any) -> None:
    assert isinstance(cfg, GenerateConfig)
    size = cfg.render.size
    assert size is None or (isinstance(size, int) and 16 <= size <= 4096)
    assert cfg.render.crop in ("full", "face")
    assert cfg.video.fps is None or (isinstance(cfg.video.fps, float) and 1 <= cfg.video.fps <= 120)
    assert 0 <= cfg.expression <= MAX_EXPRESSION and 0 <= cfg.emotion_intensity <= MAX_EXPRESSION
    assert ARTICULATION_RANGE[0] <= cfg.articulation <= ARTICULATION_RANGE[1]
    assert 0 <= cfg.head_motion <= HEAD_MOTION_MAX
    assert isinstance(cfg.seed, int) and 0 <= cfg.seed <= 2 ** 31 - 1
    assert cfg.emotion == "auto" or to_index(cfg.emotion) is not None
    assert cfg.face_index is None or (isinstance(cfg.face_index, int) and cfg.face_index >= 0)


@settings(PROPERTY, max_examples=200)
@given(options=option_dicts)
@example(options={"size": "1e400"})
@example(options={"seed": float("inf")})
@example(options={"size": 10 ** 400})
@example(options={"vol\nume": "1"})
def test_generate_config_of_any_options_is_a_valid_config_or_a_clean_error(options: dict) -> None:
    cfg = outcome(generate_config, options)
    if cfg is not None:
        _is_config(cfg)


@settings(PROPERTY, max_examples=60)
@given(size=st.integers(16, 4096), fps=st.floats(1, 120), expression=st.floats(0, MAX_EXPRESSION),
       articulation=st.floats(*ARTICULATION_RANGE), seed=st.integers(0, 2 ** 31 - 1),
       intensity=st.floats(0, MAX_EXPRESSION), head=st.floats(0, HEAD_MOTION_MAX),
       crop=st.sampled_from(["full", "face"]), emotion=st.sampled_from(EMOTION_CHOICES), as_text=st.booleans())
def test_generate_config_accepts_and_keeps_every_option_in_range(size, fps, expression, articulation, seed, intensity,
                                                                 head, crop, emotion, as_text) -> None:
    """What a form or a CSV sends (text) means the same as JSON numbers."""
    options = {"size": size, "fps": fps, "expression": expression, "articulation": articulation, "seed": seed,
              "emotion_intensity": intensity, "head_motion": head, "crop": crop, "emotion": emotion}
    cfg = generate_config({k: repr(v) if as_text and not isinstance(v, str) else v for k, v in options.items()})
    _is_config(cfg)
    assert (cfg.render.size, cfg.video.fps, cfg.expression, cfg.articulation, cfg.seed, cfg.emotion_intensity,
            cfg.head_motion, cfg.render.crop, cfg.emotion) == (size, fps, expression, articulation, seed, intensity,
                                                               head, crop, emotion)


# --- videos ---------------------------------------------------------------------------------------------
def _check_video(path: Path) -> None:
    info = outcome(video_info, path, names=str(path))
    if info is None:
        return
    assert set(info) == {"fps", "frames", "width", "height", "duration_s", "has_audio", "rotation"}
    assert isinstance(info["fps"], float) and np.isfinite(info["fps"]) and info["fps"] > 0
    assert info["rotation"] in (0, 90, 180, 270)
    assert isinstance(info["frames"], int) and info["frames"] >= 0
    assert isinstance(info["has_audio"], bool)
    frames = outcome(lambda p: list(read_frames(p)), path, names=str(path))
    if frames is not None:
        assert frames
        for f in frames:
            _is_rgb(f)


@settings(PROPERTY, max_examples=60)
@given(data=random_bytes())
@example(data=b"")
def test_video_of_any_bytes_is_info_and_rgb_frames_or_a_clean_error(tmp_path: Path, data: bytes) -> None:
    _check_video(_written(tmp_path / "driver.mp4", data))


@settings(PROPERTY, max_examples=40)
@given(choice=st.data())
def test_damaged_video_is_info_and_rgb_frames_or_a_clean_error(tmp_path: Path, small_mp4: bytes, choice) -> None:
    _check_video(_written(tmp_path / "driver.mp4", choice.draw(damaged(small_mp4))))
