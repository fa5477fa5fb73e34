"""``ventriloquist bench``: render + encode cost as seconds of compute per second of video.

Compute is process CPU time (all threads, user + system), so the ratio reads as "cores
busy per second of video": at ``--threads 1`` it is the single-core cost.
"""
from __future__ import annotations

import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from .config import FPS, RenderConfig, VideoConfig

MEMORY_EVERY = 0.05          # a fresh run's memory (with its children's) is sampled this often, in seconds


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    VmHWM belongs to the process's own address space; ru_maxrss would also count the parent a
    subprocess was forked from.
    """
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _looped(x: np.ndarray, n: int) -> np.ndarray:
    """Ping-pong a sequence until it has ``n`` frames (no jump at the loop point)."""
    pp = np.concatenate([x, x[::-1]])
    return pp[np.arange(n) % len(pp)]


def bench_size(size: int, seconds: float, threads: int) -> dict:
    """Render and encode ``seconds`` of the demo motion at ``size`` px; return cost ratios."""
    import cv2
    from .demo import DEMO_MOTION, demo_face
    from .face.align import Retargeter
    from .face.detect import face_landmarks, load_image
    from .motion.sequence import LandmarkSequence, Motion
    from .render import Renderer
    from .render.framing import make_canvas
    from .video import VideoWriter

    cv2.setNumThreads(threads)
    photo = load_image(demo_face())
    k0 = face_landmarks(photo)
    canvas = make_canvas(photo, k0, RenderConfig(size=size, crop="face"))   # face fills the frame: the costly case
    n = int(round(seconds * FPS))
    motion = Motion.from_sequence(LandmarkSequence.load(DEMO_MOTION))
    target = Retargeter(canvas.map(k0))(_looped(motion.shapes, n), motion.rest, _looped(motion.pose, n))
    renderer = Renderer(canvas.image, canvas.map(k0))
    audio = np.zeros(int(seconds * 16000), np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        t_render = 0.0
        cpu0, wall0 = _cpu(), time.perf_counter()
        with VideoWriter(Path(tmp) / "bench.mp4", *canvas.size, VideoConfig(threads=threads), audio=audio) as w:
            for k in target:
                c = _cpu()
                frame = renderer.render(k)
                t_render += _cpu() - c
                w.write(frame)
        cpu, wall = _cpu() - cpu0, time.perf_counter() - wall0
    video_s = n / FPS
    return {"size": f"{canvas.size[0]}x{canvas.size[1]}", "frames": n, "threads": threads,
            "compute_s_per_video_s": round(cpu / video_s, 4),
            "render_s_per_video_s": round(t_render / video_s, 4),
            "frames_per_cpu_s": round(n / cpu, 1), "wall_fps": round(n / wall, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def bench_features(seconds: float = 30.0) -> dict:
    """What hearing speech costs on one core, per second of speech: log-Mel, phones, the speech encoder
    (loaded before timing), on the demo sentence repeated to ``seconds``."""
    from threadpoolctl import threadpool_limits

    from . import phonetics, speech_encoder
    from .audio import load_audio, log_mel, num_frames
    from .demo import DEMO_SPEECH
    y = load_audio(DEMO_SPEECH)
    y = np.tile(y, int(np.ceil(seconds * 16000 / len(y))))[: int(seconds * 16000)]
    n = num_frames(len(y))
    speech_encoder.load_encoder()
    out = {"seconds": seconds}
    with threadpool_limits(1):
        for name, fn in (("log_mel", lambda: log_mel(y)), ("phones", lambda: phonetics.articulation(y, n)),
                         ("encoder", lambda: speech_encoder.encode(y, n))):
            c = _cpu()
            fn()
            out[f"{name}_s_per_s"] = round((_cpu() - c) / seconds, 4)
    out["total_s_per_s"] = round(sum(v for k, v in out.items() if k.endswith("_s_per_s")), 4)
    return out


GENERATE_CODE = """
import resource, sys, time
t0 = time.perf_counter()
from ventriloquist.cli import main
from ventriloquist.bench import peak_rss_mb
rc = main(['generate', '--face', sys.argv[1], '--audio', sys.argv[2], '--out', sys.argv[3], '--size', sys.argv[4], '--quiet'])
r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
# a dub hears its speech in a child process (motion.apart): its CPU counts too
print(time.perf_counter() - t0, r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime, peak_rss_mb())
sys.exit(rc)
"""


def bench_generate(seconds: float, size: int = 512) -> dict:
    """``ventriloquist generate`` from a fresh process on ``seconds`` of 44.1-kHz stereo speech (the demo
    sentence repeated), as a user runs it: wall and CPU seconds per second of video (start-up included)
    and the peak resident memory."""

    import soundfile as sf

    from .audio import load_audio
    from .demo import DEMO_SPEECH, demo_face
    y = load_audio(DEMO_SPEECH, sr=44100)
    n = int(round(seconds * 44100))
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        with sf.SoundFile(wav, "w", 44100, 2, "PCM_16") as f:      # written in pieces: a 10-min file is 100 MB
            for i in range(0, n, len(y)):
                piece = y[: min(len(y), n - i)]
                f.write(np.stack([piece, 0.9 * piece], axis=1))
        return _fresh_run(GENERATE_CODE, [str(demo_face()), str(wav), str(Path(tmp) / "out.mp4"), str(size)],
                          "generate", seconds, size)


def _tree_rss_mb(pid: int) -> float | None:
    """Resident memory of a process and all its descendants now, in MiB (None without Linux's /proc)."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
            with open(f"/proc/{p}/task/{p}/children") as f:
                stack += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            if p == pid:
                return None
    return total / 1024


def _fresh_run(code: str, args: list[str], what: str, seconds: float, size: int) -> dict:
    """Run ``code`` (which prints its wall time, CPU time and peak memory) in a new interpreter: cost per
    second of video. The peak memory is the largest the process and its children (a dub hears its speech in
    one, :mod:`.motion.apart`) held together, sampled every MEMORY_EVERY seconds, where /proc allows."""
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    tree = 0.0
    while proc.poll() is None:
        tree = max(tree, _tree_rss_mb(proc.pid) or 0.0)
        time.sleep(MEMORY_EVERY)
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"{what} failed: {err.strip().splitlines()[-1:]}")
    wall, cpu, rss = map(float, out.split()[-3:])
    rss = max(rss, tree)
    return {"seconds": seconds, "size": size, "wall_s": round(wall, 1), "wall_s_per_video_s": round(wall / seconds, 3),
            "compute_s_per_video_s": round(cpu / seconds, 3), "peak_rss_mb": round(rss, 1)}


def run_lengths(lengths: list[float], size: int = 512, json_path: str | None = None) -> list[dict]:
    """Cost of whole generate runs of several lengths: time should grow linearly, memory stay flat."""
    rows = [bench_generate(s, size) for s in lengths]
    cols = ["seconds", "wall_s", "wall_s_per_video_s", "compute_s_per_video_s", "peak_rss_mb"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(f"marginal wall s per video s ({a['seconds']:g} -> {b['seconds']:g} s): "
              f"{(b['wall_s'] - a['wall_s']) / (b['seconds'] - a['seconds']):.3f}; "
              f"peak memory {b['peak_rss_mb'] / a['peak_rss_mb'] - 1:+.1%}")
    print(json.dumps(rows))
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=2))
    return rows


def bench_dub(seconds: float, size: int = 512) -> dict:
    """``ventriloquist generate`` dubbing a ``seconds``-long talking video of the demo face (``size`` px, made
    first, not timed) with the demo sentence repeated as long, in a fresh process: wall and CPU seconds per
    second of video (start-up included) and the peak resident memory."""

    import soundfile as sf

    from .audio import load_audio
    from .config import GenerateConfig
    from .demo import DEMO_SPEECH, demo_face
    from .pipeline import Ventriloquist
    y = load_audio(DEMO_SPEECH)
    n = int(round(seconds * 16000))
    with tempfile.TemporaryDirectory() as tmp:
        wav, src, out = Path(tmp) / "speech.wav", Path(tmp) / "talking.mp4", Path(tmp) / "dubbed.mp4"
        sf.write(wav, np.tile(y, int(np.ceil(n / len(y))))[:n], 16000)
        Ventriloquist(GenerateConfig(render=RenderConfig(size=size, crop="face"))).generate(
            demo_face(), src, audio=wav, progress=False)
        return _fresh_run(GENERATE_CODE, [str(src), str(wav), str(out), str(size)], "dub", seconds, size)


def run_dub(lengths: list[float], size: int = 512, json_path: str | None = None) -> list[dict]:
    """Dubbing talking videos of several lengths: wall time per second of video, memory flat in the length."""
    rows = [bench_dub(s, size) for s in lengths]
    cols = ["seconds", "size", "wall_s", "wall_s_per_video_s", "compute_s_per_video_s", "peak_rss_mb"]
    print("dub | " + " | ".join(cols))
    for r in rows:
        print("dub | " + " | ".join(str(r[c]) for c in cols))
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(f"peak memory {a['seconds']:g} s -> {b['seconds']:g} s: {b['peak_rss_mb'] - a['peak_rss_mb']:+.1f} MB")
    print(json.dumps(rows))
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=2))
    return rows


STARTUP_CODE = """
import sys, time
marks, t = [], time.perf_counter()
def mark(name):
    global t
    now = time.perf_counter(); marks.append((name, now - t)); t = now
import numpy
mark("numpy")
from ventriloquist.pipeline import Ventriloquist
mark("the package (pipeline, renderer, video)")
from ventriloquist.face.detect import face_landmarks, load_image, _models
_models()
mark("dlib face detector + 68-point predictor")
photo = load_image(sys.argv[1]); k = face_landmarks(photo, sys.argv[1], None)
mark("face detection and landmarks")
from ventriloquist.audio import load_audio
y = load_audio(sys.argv[2])
mark("speech decoded (16 kHz)")
v = Ventriloquist(); sm = v.speech_motion
mark("Sp2Emo + G weights (checked, read without torch)")
v.motion_from_audio(y)
mark("motion: log-Mel, phones, speech encoder (loaded), Sp2Emo, G, life")
v.generate(sys.argv[1], sys.argv[3], audio=sys.argv[2], progress=False)
mark("a whole generate, models loaded (render + encode included)")
print("torch imported:", "torch" in sys.modules)
for name, s in marks: print(f"{s:.3f} {name}")
"""


def run_startup(json_path: str | None = None) -> list[dict]:
    """Where a fresh process's time goes before and during a first ``generate`` of the bundled demo
    (the start-up budget): one line per stage, in a new interpreter, one after another (a fresh ``generate``
    hears the speech in a second process beside the face's stages: ``--lengths`` times that)."""
    import subprocess
    import sys

    from .demo import DEMO_SPEECH, demo_face
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", STARTUP_CODE, str(demo_face()), str(DEMO_SPEECH),
                              str(Path(tmp) / "out.mp4")], capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if res.returncode:
        raise RuntimeError(f"start-up bench failed: {res.stderr.strip().splitlines()[-1:]}")
    lines = res.stdout.strip().splitlines()
    rows = [{"stage": line.split(" ", 1)[1], "seconds": float(line.split(" ", 1)[0])} for line in lines[1:]]
    print(lines[0])
    for r in rows:
        print(f"{r['seconds']:7.3f} s  {r['stage']}")
    print(f"{wall:7.3f} s  in all, interpreter start included (stages one after another)")
    if json_path:
        Path(json_path).write_text(json.dumps({"stages": rows, "wall_s": round(wall, 3)}, indent=2))
    return rows


def run_bench(sizes: list[int], seconds: float = 10.0, threads: int = 1, json_path: str | None = None) -> list[dict]:
    rows = [bench_size(s, seconds, threads) for s in sizes]
    cols = ["size", "frames", "compute_s_per_video_s", "render_s_per_video_s", "frames_per_cpu_s", "wall_fps", "peak_rss_mb"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    feats = bench_features()
    print(f"hearing speech, s per s of speech on one core: log-Mel {feats['log_mel_s_per_s']}, phones "
          f"{feats['phones_s_per_s']}, speech encoder {feats['encoder_s_per_s']}; in all {feats['total_s_per_s']}")
    print(json.dumps(rows))
    if json_path:
        Path(json_path).write_text(json.dumps({"render": rows, "speech_features": feats}, indent=2))
    return rows
