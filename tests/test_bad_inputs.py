"""Hostile and extreme inputs, as a table: each ends in a valid video or in one clear line with its exit
status, and never leaves an output or a temp file behind."""
from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ventriloquist.cli import main

SIZE = ["--size", "96", "--quiet"]


def _encode(y: np.ndarray, sr: int, path: Path, codec: str) -> Path:
    """Mono float samples as an MP3 or M4A file, written by PyAV (no ffmpeg binary needed)."""
    import av
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=sr)
        s.layout = "mono"
        frame_size = 1152 if codec == "libmp3lame" else 1024
        for i in range(0, len(y), frame_size):
            f = av.AudioFrame.from_ndarray(y[None, i:i + frame_size].astype(np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = sr, i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def _photo(img: np.ndarray, path: Path, **kw) -> Path:
    from PIL import Image
    Image.fromarray(img).save(path, **kw)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, face_path, speech_wav) -> dict[str, Path]:
    """Every hostile input, made once: photos from the shipped face, audio from espeak-ng speech."""
    import cv2
    from PIL import Image

    from ventriloquist.video import VideoWriter
    d = tmp_path_factory.mktemp("bad")
    rgb = np.asarray(Image.open(face_path).convert("RGB"))
    y, sr = sf.read(str(speech_wav), dtype="float32")
    p: dict[str, Path] = {"face": face_path, "speech": speech_wav}

    (d / "empty.jpg").write_bytes(b"")
    jpeg = _photo(rgb, d / "face.jpg", quality=90).read_bytes()
    (d / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (d / "text.jpg").write_text("not a photo\n")
    (d / "png_named.jpg").write_bytes(face_path.read_bytes() if face_path.suffix == ".png"
                                      else _photo(rgb, d / "tmp.png").read_bytes())
    _photo(rgb.mean(axis=2).astype(np.uint8), d / "gray.png")
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:, :40, 3] = 0
    _photo(rgba, d / "rgba.png")
    cv2.imwrite(str(d / "16bit.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg")
    tall = rgb[:, 56:-56]                                          # 400 wide, 512 high: orientation shows in the size
    exif = Image.Exif()
    exif[0x0112] = 6                                               # "rotate 90 degrees clockwise to view"
    Image.fromarray(tall).rotate(90, expand=True).save(d / "exif_rotated.jpg", exif=exif)
    _photo(cv2.resize(rgb, (8400, 8400), interpolation=cv2.INTER_LINEAR), d / "huge.jpg", quality=70)
    bg = np.full((400, 400, 3), 128, np.uint8)
    small = cv2.resize(rgb, None, fx=0.55, fy=0.55, interpolation=cv2.INTER_AREA)    # a ~50-px face
    bg[60:60 + small.shape[0], 60:60 + small.shape[1]] = small
    _photo(bg, d / "small_face.png")
    bg = np.full((400, 400, 3), 128, np.uint8)
    tiny = cv2.resize(rgb, None, fx=0.12, fy=0.12, interpolation=cv2.INTER_AREA)     # a ~11-px face
    bg[100:100 + tiny.shape[0], 100:100 + tiny.shape[1]] = tiny
    _photo(bg, d / "tiny_face.png")
    left = cv2.resize(rgb, None, fx=0.45, fy=0.45, interpolation=cv2.INTER_AREA)
    right = cv2.resize(rgb, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)[:, ::-1]
    group = np.full((right.shape[0], 2 * right.shape[1], 3), 120, np.uint8)
    group[: left.shape[0], : left.shape[1]] = left
    group[:, right.shape[1]:] = right
    _photo(group, d / "two_faces.png")
    _photo(np.random.default_rng(0).integers(0, 255, (300, 300, 3)).astype(np.uint8), d / "noise.png")
    _photo(cv2.resize(rgb, (rgb.shape[1] // 4, rgb.shape[0]), interpolation=cv2.INTER_AREA), d / "profile.png")

    (d / "empty.wav").write_bytes(b"")
    wav = speech_wav.read_bytes()
    (d / "truncated.wav").write_bytes(wav[: len(wav) // 2])
    m4a = _encode(y, sr, d / "speech.m4a", "aac").read_bytes()
    (d / "truncated.m4a").write_bytes(m4a[: len(m4a) // 2])
    _encode(y, sr, d / "mp3_named.wav", "libmp3lame")
    sf.write(d / "silent.wav", np.zeros(2 * sr, np.float32), sr)
    sf.write(d / "short.wav", y[: int(0.2 * sr)], sr)
    import librosa
    sf.write(d / "phone.wav", librosa.resample(y, orig_sr=sr, target_sr=8000), 8000)
    sf.write(d / "96k.wav", librosa.resample(y, orig_sr=sr, target_sr=96000), 96000)
    sf.write(d / "6ch.wav", np.stack([y * g for g in (1, .8, .6, .5, .4, .3)], axis=1), sr)
    t = np.arange(3 * sr) / sr
    chords = sum(0.1 * np.sin(2 * np.pi * f * t) * (np.sin(2 * np.pi * 0.5 * k * t) > 0)
                 for k, f in enumerate((262, 330, 392, 523), 1))
    sf.write(d / "music.wav", chords.astype(np.float32), sr)
    sf.write(d / "noise.wav", np.random.default_rng(1).normal(0, 0.2, 2 * sr).astype(np.float32), sr)
    bad = y.copy()
    bad[1000] = np.nan
    sf.write(d / "nan.wav", bad, sr, subtype="FLOAT")
    frame = cv2.resize(rgb, (128, 128))
    with VideoWriter(d / "talk.mp4", 128, 128, audio=librosa.resample(y, orig_sr=sr, target_sr=16000)) as w:
        for _ in range(int(len(y) / sr * 25)):
            w.write(frame)
    with VideoWriter(d / "silent_video.mp4", 128, 128) as w:
        for _ in range(25):
            w.write(frame)
    for name in ("empty.jpg", "truncated.jpg", "text.jpg", "png_named.jpg", "gray.png", "rgba.png", "16bit.png",
                 "cmyk.jpg", "exif_rotated.jpg", "huge.jpg", "small_face.png", "tiny_face.png", "two_faces.png",
                 "noise.png", "profile.png", "empty.wav", "truncated.wav", "truncated.m4a", "mp3_named.wav",
                 "silent.wav", "short.wav", "phone.wav", "96k.wav", "6ch.wav", "music.wav", "noise.wav", "nan.wav",
                 "talk.mp4", "silent_video.mp4"):
        p[name] = d / name
    p["missing.jpg"], p["missing.wav"] = d / "missing.jpg", d / "missing.wav"
    os.mkfifo(d / "fifo.wav")
    (d / "loop_a.jpg").symlink_to(d / "loop_b.jpg")
    (d / "loop_b.jpg").symlink_to(d / "loop_a.jpg")
    talk = bytearray((d / "talk.mp4").read_bytes())
    at = talk.find(b"moov")
    talk[at + 4:at + 36] = b"\xff" * 32                          # the index's first boxes, scrambled
    (d / "bad_moov.mp4").write_bytes(bytes(talk))
    import json
    (d / "endless.json").write_text(json.dumps([{"start": 0, "end": 1e308, "emotion": "happy"}]))
    (d / "crowded.csv").write_text("start,end,emotion\n" + "".join(f"{i / 25},{(i + 1) / 25},happy\n" for i in range(100_001)))
    k = np.load(str(_demo_motion()))["landmarks"][:50]
    for name, fps in (("fps_tiny.npz", 1e-9), ("fps_huge.npz", 1e9)):
        np.savez(d / name, landmarks=k, fps=fps, width=360, height=288)
    for name in ("fifo.wav", "loop_a.jpg", "bad_moov.mp4", "endless.json", "crowded.csv", "fps_tiny.npz", "fps_huge.npz"):
        p[name] = d / name
    p["dev_zero"] = Path("/dev/zero")
    return p


def _demo_motion() -> Path:
    from ventriloquist.demo import DEMO_MOTION
    return DEMO_MOTION


@dataclass
class Case:
    id: str
    face: str = "face"
    audio: str = "speech"
    extra: tuple = ()        # more arguments; "@name" is the path of an input (or of a missing file)
    code: int = 0
    message: str = ""        # in stderr: a word that names the problem (the file name is checked too)
    names: str = ""          # the input the message must name ("" = the one the case is about)


CASES = [
    # photos
    Case("missing photo", face="missing.jpg", code=2, message="does not exist"),
    Case("0-byte photo", face="empty.jpg", code=2, message="empty"),
    Case("truncated JPEG", face="truncated.jpg", code=2, message="not a readable image"),
    Case("text file as photo", face="text.jpg", code=2, message="not a readable image"),
    Case("speech file as photo", face="speech", code=2, message="not a readable image"),
    Case("PNG named .jpg", face="png_named.jpg"),
    Case("grayscale photo", face="gray.png"),
    Case("RGBA photo", face="rgba.png"),
    Case("16-bit photo", face="16bit.png"),
    Case("CMYK JPEG", face="cmyk.jpg"),
    Case("EXIF-rotated photo", face="exif_rotated.jpg"),
    Case("8400-px photo", face="huge.jpg"),
    Case("face under 64 px", face="small_face.png", message="will look soft"),
    Case("face too small to find", face="tiny_face.png", code=2, message="no face found"),
    Case("two faces: the largest talks", face="two_faces.png"),
    Case("two faces: --face-index 0", face="two_faces.png", extra=("--face-index", "0")),
    Case("--face-index past the faces", face="two_faces.png", extra=("--face-index", "2"), code=2,
         message="shows 2 face"),
    Case("no face", face="noise.png", code=2, message="no face found"),
    Case("face in profile", face="profile.png", code=2, message="roughly frontal"),
    # speech
    Case("missing audio", audio="missing.wav", code=2, message="does not exist"),
    Case("0-byte audio", audio="empty.wav", code=2, message="empty"),
    Case("truncated WAV", audio="truncated.wav"),
    Case("truncated M4A", audio="truncated.m4a", code=2, message="could not decode"),
    Case("MP3 named .wav", audio="mp3_named.wav"),
    Case("text file as audio", audio="text.jpg", code=2, message="no audio track"),
    Case("photo as audio", audio="gray.png", code=2, message="no audio track"),
    Case("silence", audio="silent.wav", message="is silent"),
    Case("0.2 s of speech", audio="short.wav"),
    Case("8-kHz telephone speech", audio="phone.wav"),
    Case("96-kHz speech", audio="96k.wav"),
    Case("6-channel speech", audio="6ch.wav"),
    Case("a video as audio", audio="talk.mp4"),
    Case("a video without sound as audio", audio="silent_video.mp4", code=2, message="no audio track"),
    Case("music", audio="music.wav"),
    Case("noise", audio="noise.wav"),
    Case("NaN samples", audio="nan.wav", code=2, message="invalid samples"),
    Case("missing emotion timeline", extra=("--emotion-timeline", "@missing.json"), code=2, message="does not exist",
         names="missing.json"),
    # not files, damaged indexes, values past any sense
    Case("a named pipe as audio", audio="fifo.wav", code=2, message="not a regular file"),
    Case("/dev/zero as audio", audio="dev_zero", code=2, message="not a regular file", names="/dev/zero"),
    Case("a symlink loop as photo", face="loop_a.jpg", code=2, message="cannot be opened"),
    Case("an MP4 with a damaged index as audio", audio="bad_moov.mp4", code=2, message="damaged"),
    Case("a timeline ending at 1e308", extra=("--emotion-timeline", "@endless.json")),
    Case("a timeline of 100,001 entries", extra=("--emotion-timeline", "@crowded.csv"), code=2,
         message="100001 entries", names="crowded.csv"),
    Case("a landmark file at 1e-9 fps", extra=("--landmarks", "@fps_tiny.npz"), code=2, message="fps",
         names="fps_tiny.npz"),
    Case("a landmark file at 1e9 fps", extra=("--landmarks", "@fps_huge.npz"), code=2, message="fps",
         names="fps_huge.npz"),
]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _video(path: Path) -> dict:
    import av
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0] if c.streams.audio else None
        return {"width": v.codec_context.width, "height": v.codec_context.height, "frames": v.frames,
                "rate": a.rate if a else None, "channels": a.channels if a else 0}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, inputs, tmp_path, capsys) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "v.mp4"
    extra = [str(inputs.get(x[1:], tmp_path / x[1:])) if x.startswith("@") else x for x in case.extra]
    argv = ["generate", "--face", str(inputs[case.face]), "--audio", str(inputs[case.audio]), "--out", str(out),
            *extra, *SIZE]
    assert main(argv) == case.code
    err = capsys.readouterr().err
    assert case.message in err
    if case.code:
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1, err
        named = case.names or Path(inputs[case.face if case.face != "face" else case.audio]).name
        assert named in lines[0], lines[0]
        assert _leftovers(out_dir) == []
    else:
        assert _leftovers(out_dir) == ["v.mp4"]
        assert _video(out)["frames"] >= 1


def _landmarks(inputs, tmp_path, face: str, *extra: str) -> np.ndarray:
    out = tmp_path / f"{face}.mp4"
    assert main(["generate", "--face", str(inputs[face]), "--audio", str(inputs["short.wav"]), "--out", str(out),
                 "--export-landmarks", str(tmp_path / f"{face}.npz"), "--quiet", *extra]) == 0
    return np.load(tmp_path / f"{face}.npz")["landmarks"]


def test_photo_orientation_and_size_are_respected(inputs, tmp_path) -> None:
    from ventriloquist.face.detect import MAX_PHOTO_SIDE, load_image
    upright = load_image(inputs["exif_rotated.jpg"])
    assert upright.shape == (512, 400, 3)                   # EXIF orientation applied: portrait, as taken
    assert max(load_image(inputs["huge.jpg"]).shape) == MAX_PHOTO_SIDE
    out = tmp_path / "v.mp4"
    assert main(["generate", "--face", str(inputs["exif_rotated.jpg"]), "--audio", str(inputs["short.wav"]),
                 "--out", str(out), "--quiet"]) == 0
    assert (_video(out)["width"], _video(out)["height"]) == (400, 512)


def test_group_photo_largest_face_talks_unless_told(inputs, tmp_path) -> None:
    default = _landmarks(inputs, tmp_path, "two_faces.png")
    first = _landmarks(inputs, tmp_path, "two_faces.png", "--face-index", "0")
    width = _video(tmp_path / "two_faces.png.mp4")["width"]
    assert default[0, :, 0].mean() > width / 2               # the right-hand face is the larger one
    assert first[0, :, 0].mean() < width / 2


def test_sound_keeps_its_rate_and_channels(inputs, tmp_path) -> None:
    for name, rate, channels in (("96k.wav", 96000, 1), ("6ch.wav", 22050, 2), ("phone.wav", 8000, 1)):
        out = tmp_path / f"{name}.mp4"
        assert main(["generate", "--face", str(inputs["face"]), "--audio", str(inputs[name]), "--out", str(out),
                     *SIZE]) == 0
        v = _video(out)
        assert (v["rate"], v["channels"]) == (rate, channels), name


def _unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        ro = tmp_path / "read_only"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    try:                                   # root writes through permissions; sysfs refuses even root
        (Path("/sys") / "ventriloquist-probe").write_bytes(b"")
    except OSError:
        return Path("/sys")
    pytest.skip("no folder here is read-only for this user")


def test_outputs_that_cannot_be_written(inputs, tmp_path, capsys) -> None:
    face, speech = str(inputs["face"]), str(inputs["speech"])
    talk = tmp_path / "talk.mp4"
    talk.write_bytes(inputs["talk.mp4"].read_bytes())
    digest = hashlib.sha256(talk.read_bytes()).hexdigest()
    (tmp_path / "a_file").write_text("x")
    cases = [
        (["--audio", speech, "--out", str(tmp_path / "no" / "v.mp4")], "does not exist"),
        (["--audio", speech, "--out", str(tmp_path / "a_file" / "v.mp4")], "is a file"),
        (["--audio", speech, "--out", str(_unwritable_folder(tmp_path) / "v.mp4")], "choose a folder"),
        (["--audio", str(talk), "--out", str(talk)], "is also an input"),
        (["--audio", speech, "--out", str(tmp_path)], "is a folder"),
        (["--audio", speech, "--out", str(tmp_path / "v.avi")], "must end in .mp4"),
        (["--audio", speech, "--out", str(tmp_path / "v.mp4"), "--export-emotions", str(tmp_path / "e.txt")],
         "must end in .csv or .json"),
    ]
    before = set(os.listdir(tmp_path))
    for args, message in cases:
        assert main(["generate", "--face", face, *args, *SIZE]) == 3, args
        err = capsys.readouterr().err
        assert message in err and err.count("error:") == 1, err
    assert set(os.listdir(tmp_path)) == before
    assert hashlib.sha256(talk.read_bytes()).hexdigest() == digest     # the input was not replaced


def _cli(args: list[str], tmp_path: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "ventriloquist.cli", "generate", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_full_disk_leaves_nothing(inputs, tmp_path) -> None:
    """A file-size limit stands in for a full disk: the write fails the same way (EFBIG, like ENOSPC)."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _cli(["--face", str(inputs["face"]), "--audio", str(inputs["speech"]), "--out", str(out_dir / "v.mp4"),
                 "--quiet"], tmp_path, preexec_fn=limit)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 3 and "disk is full" in err, err
    assert _leftovers(out_dir) == [] and _leftovers(tmp_path / "tmp") == []


def test_ctrl_c_mid_render_leaves_nothing(inputs, tmp_path) -> None:
    """Ctrl-C as a terminal sends it: the CLI starts with SIGINT's default action, whatever this test run
    inherited (a run started in the background by a script ignores SIGINT, and so would its children)."""
    y, sr = sf.read(str(inputs["speech"]), dtype="float32")
    sf.write(tmp_path / "long.wav", np.tile(y, 30), sr)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _cli(["--face", str(inputs["face"]), "--audio", str(tmp_path / "long.wav"), "--out",
                 str(out_dir / "v.mp4"), "--quiet"], tmp_path,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while not _leftovers(out_dir) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)                                  # the writer's temp file: rendering has begun
    assert proc.poll() is None, "the render finished before it could be interrupted"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err, err
    assert _leftovers(out_dir) == [] and _leftovers(tmp_path / "tmp") == []


def test_exports_are_written_whole_or_not_at_all(inputs, tmp_path) -> None:
    """An export that cannot be written (the disk fills while it is written) fails the run as the video
    would: exit 3, no video, no partial export, no temporary file; two exports may not share a file; a
    250-byte output name works (its temporary names are short)."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))        # the video fits, its export does not
    proc = _cli(["--face", str(inputs["face"]), "--audio", str(inputs["speech"]), "--out", str(out_dir / "v.mp4"),
                 "--size", "96", "--export-landmarks", str(out_dir / "v.json"), "--quiet"], tmp_path, preexec_fn=limit)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 3 and "v.json" in err and "disk is full" in err, err
    assert _leftovers(out_dir) == []
    same = out_dir / "both.json"
    assert main(["generate", "--face", str(inputs["face"]), "--audio", str(inputs["speech"]), "--out",
                 str(out_dir / "v.mp4"), "--export-landmarks", str(same), "--export-emotions", str(same), *SIZE]) == 3
    assert _leftovers(out_dir) == []
    long = out_dir / ("n" * 250 + ".mp4")
    assert main(["generate", "--face", str(inputs["face"]), "--audio", str(inputs["speech"]), "--out", str(long),
                 *SIZE]) == 0
    assert _leftovers(out_dir) == [long.name]
    assert main(["generate", "--face", str(inputs["face"]), "--audio", str(inputs["speech"]), "--out",
                 str(out_dir / ("n" * 260 + ".mp4")), *SIZE]) == 3


def test_sigterm_to_batch_leaves_nothing_and_a_rerun_finishes(inputs, tmp_path) -> None:
    y, sr = sf.read(str(inputs["speech"]), dtype="float32")
    faces, audio, out = tmp_path / "faces", tmp_path / "audio", tmp_path / "out"
    for d in (faces, audio):
        d.mkdir()
    for i in range(2):
        (faces / f"p{i}.png").write_bytes(Path(inputs["face"]).read_bytes())
        sf.write(audio / f"p{i}.wav", np.tile(y, 6), sr)
    (out).mkdir()
    (out / (".stale" + "x.mp4")).write_bytes(b"")                  # not ours: a rerun leaves other files alone
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    args = [sys.executable, "-m", "ventriloquist.cli", "batch", "--faces", str(faces), "--audio", str(audio),
            "--out", str(out), "--workers", "2", "--quiet"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while len(_leftovers(out)) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)                                          # a worker's temp file: rendering has begun
    assert proc.poll() is None, "the batch finished before it could be terminated"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "terminated" in err, err
    assert [n for n in _leftovers(out) if n.endswith(".mp4")] == [".stalex.mp4"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert sorted(n for n in _leftovers(out) if n.endswith(".mp4")) == [".stalex.mp4", "p0.mp4", "p1.mp4"]
