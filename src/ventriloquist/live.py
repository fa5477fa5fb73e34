"""Live mode: speech in, a talking face out, as the speech arrives.

Speech comes from a microphone (``sounddevice``), from a file played at its real pace, or from raw
PCM on stdin; :class:`~ventriloquist.motion.stream.StreamingMotion` turns each piece into the frames
it completes, the pipeline's :class:`~ventriloquist.pipeline.FaceRig` renders them, and they go to
a page on 127.0.0.1 (an MJPEG stream, the sound beside it), to an MP4 (``record``) and to a latency
log (``stats``). The recording is frame-exact: frame i shows the sound of samples [i, i+1) x 640,
whatever the machine's speed, so sound and picture cannot drift apart.
"""
from __future__ import annotations

import json
import os
import queue
import resource
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from .config import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from .errors import InputError

CHUNK_S = 0.02               # speech arrives in blocks this long (a microphone's usual block)
JPEG_QUALITY = 85
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>ventriloquist live</title>
<style>body{background:#111;color:#ccc;font:14px sans-serif;text-align:center}img{max-width:95vw;max-height:85vh}</style>
</head><body><img id="face" src="/stream.mjpg" alt="live face"><p id="note">ventriloquist live</p>
<audio id="sound" src="/sound.wav" autoplay></audio></body></html>"""


# --- sources: (samples, arrival time) blocks ----------------------------------------------------------------------
def file_source(path: str | Path, realtime: bool = True) -> Iterator[np.ndarray]:
    """A speech file or URL (any format ``audio.load_audio`` reads), decoded as it is read (a long file
    starts at once), in CHUNK_S blocks at SAMPLE_RATE, at its real pace when ``realtime``."""
    import av

    from .audio import MAX_SAMPLE, iter_audio
    step = int(CHUNK_S * SAMPLE_RATE)
    start, sent, pending = time.perf_counter(), 0, np.zeros(0, np.float32)
    try:
        blocks = iter_audio(path, SAMPLE_RATE, 1)
        first = next(blocks, None)
    except av.error.FFmpegError as exc:
        raise InputError(f"could not read speech from {path} ({exc.strerror or type(exc).__name__}); "
                         "pass a speech file or a reachable URL") from None
    for block in _chain(first, blocks):
        if not np.all(np.isfinite(block)) or (block.size and float(np.abs(block).max()) > MAX_SAMPLE):
            raise InputError(f"{path} contains invalid samples (NaN, Inf or far outside -1..1); re-export the audio")
        pending = np.concatenate([pending, block[0]])
        while len(pending) >= step:
            piece, pending = pending[:step], pending[step:]
            if realtime:
                wait = start + (sent + step) / SAMPLE_RATE - time.perf_counter()    # a block arrives once spoken
                if wait > 0:
                    time.sleep(wait)
            sent += step
            yield piece
    if len(pending):
        yield pending


def pcm_source(stream: BinaryIO) -> Iterator[np.ndarray]:
    """Raw signed 16-bit little-endian mono PCM at SAMPLE_RATE (``--audio -``: stdin), as it is written."""
    step = int(CHUNK_S * SAMPLE_RATE) * 2
    rest = b""
    while True:
        data = stream.read(step)
        if not data:
            break
        data = rest + data
        cut = len(data) - len(data) % 2
        rest = data[cut:]
        yield np.frombuffer(data[:cut], "<i2").astype(np.float32) / 32768.0


def mic_source(device: str | int | None = None, stop: threading.Event | None = None) -> Iterator[np.ndarray]:
    """The default (or ``device``) microphone, mono at SAMPLE_RATE, until ``stop`` is set or Ctrl-C."""
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise InputError(f"--mic cannot be used here: it needs the sounddevice package and PortAudio ({exc}); "
                         "install them with `pip install 'ventriloquist[live]'` (and `apt-get install libportaudio2`), "
                         "or pass --audio") from None
    blocks: queue.Queue = queue.Queue()
    with sounddevice.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32", device=device,
                                 blocksize=int(CHUNK_S * SAMPLE_RATE), callback=lambda d, *_: blocks.put(d[:, 0].copy())):
        while stop is None or not stop.is_set():
            try:
                yield blocks.get(timeout=0.5)
            except queue.Empty:
                continue


class Listener:
    """Takes the source's blocks in a thread from the start, stamped with their arrival, so speech that
    comes while the face and the models load is kept (the face catches up on it) and a slow frame never
    makes the source wait; the source's errors come out of :meth:`blocks`."""

    def __init__(self, source: Iterator[np.ndarray]) -> None:
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._pump, args=(source,), daemon=True)
        self.thread.start()

    def _pump(self, source: Iterator[np.ndarray]) -> None:
        try:
            for block in source:
                self.queue.put((np.asarray(block, np.float32), time.perf_counter()))
            self.queue.put(None)
        except BaseException as exc:                      # handed to the consumer, raised there
            self.queue.put(exc)

    def batches(self) -> Iterator[list[tuple[np.ndarray, float]]]:
        """Every block that has arrived, as one list, as soon as there is one: a face that fell behind (its
        first frame, a slow moment) takes all the waiting speech in one step and catches up."""
        while True:
            batch = [self.queue.get()]
            while batch[-1] is not None and not isinstance(batch[-1], BaseException):
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            end = batch[-1]
            if end is None or isinstance(end, BaseException):
                if len(batch) > 1:
                    yield batch[:-1]
                if end is None:
                    return
                raise end
            yield batch


def _chain(first, rest: Iterator) -> Iterator:
    if first is not None:
        yield first
    yield from rest


# --- the page -------------------------------------------------------------------------------------------------------
class LiveView:
    """The page on 127.0.0.1: the newest frame as an MJPEG stream and the sound heard so far as a WAV stream."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        self.frame: bytes | None = None
        self.count = 0
        self.sound = bytearray()
        self.cond = threading.Condition()
        self.closed = False
        view = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                if self.path in ("/", "/index.html"):
                    body = PAGE.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif self.path == "/stream.mjpg":
                    view._mjpeg(self)
                elif self.path == "/sound.wav":
                    view._wav(self)
                else:
                    self.send_error(404)

        from .serve.net import check_port
        check_port(host, port)
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def show(self, jpeg: bytes) -> None:
        with self.cond:
            self.frame, self.count = jpeg, self.count + 1
            self.cond.notify_all()

    def hear(self, samples: np.ndarray) -> None:
        with self.cond:
            self.sound += (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
            self.cond.notify_all()

    def _mjpeg(self, h) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        h.end_headers()
        seen = 0
        try:
            while True:
                with self.cond:
                    self.cond.wait_for(lambda: self.count != seen or self.closed, timeout=1.0)
                    if self.closed:
                        return
                    frame, seen = self.frame, self.count
                if frame is not None:
                    h.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(frame)
                                  + frame + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return

    def _wav(self, h) -> None:
        import struct
        h.send_response(200)
        h.send_header("Content-Type", "audio/wav")
        h.end_headers()
        huge = 0x7FFFFFF0                      # a stream: the header promises more than will ever come
        header = b"RIFF" + struct.pack("<I", huge) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE,
                                                                            2 * SAMPLE_RATE, 2, 16) + b"data" + struct.pack("<I", huge - 36)
        try:
            h.wfile.write(header)
            with self.cond:
                sent = len(self.sound)          # the sound from now on, so it plays with the picture
            while True:
                with self.cond:
                    self.cond.wait_for(lambda: len(self.sound) > sent or self.closed, timeout=1.0)
                    if self.closed:
                        return
                    block, sent = bytes(self.sound[sent:]), len(self.sound)
                h.wfile.write(block)
        except (BrokenPipeError, ConnectionResetError):
            return

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()


# --- the session ----------------------------------------------------------------------------------------------------
@dataclass
class LiveStats:
    """Per-frame latency (s) from the arrival of the last sample a frame shows to the frame being ready."""

    latencies: list[float] = field(default_factory=list)
    ready: list[float] = field(default_factory=list)     # when each frame was ready (time.perf_counter)
    first_frame_s: float | None = None        # from the process's start (imports and models included)
    frames: int = 0
    samples: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def summary(self) -> dict:
        lat = np.array(self.latencies) if self.latencies else np.zeros(1)
        speech_s = self.samples / SAMPLE_RATE
        return {"frames": self.frames, "speech_s": round(speech_s, 3), "video_s": round(self.frames / FPS, 3),
                "first_frame_s": None if self.first_frame_s is None else round(self.first_frame_s, 3),
                "latency_p50_ms": round(1000 * float(np.percentile(lat, 50)), 1),
                "latency_p95_ms": round(1000 * float(np.percentile(lat, 95)), 1),
                "latency_max_ms": round(1000 * float(lat.max()), 1),
                "cpu_share_of_one_core": round(self.cpu_s / max(self.wall_s, 1e-9), 3),
                "wall_s": round(self.wall_s, 3)}


def _process_started() -> float:
    """When this process started, on the ``time.perf_counter`` clock (Linux; elsewhere: now), so the first
    frame's time counts the interpreter and the imports too."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        age = float(Path("/proc/uptime").read_text().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
        return time.perf_counter() - max(0.0, age)
    except (OSError, ValueError, IndexError):
        return time.perf_counter()


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class LiveSession:
    """One face, animated live by the pipeline's streaming motion; :meth:`run` drives it from a source."""

    def __init__(self, pipeline, face: str | Path, record: str | Path | None = None, view: LiveView | None = None,
                 started: float | None = None) -> None:
        from .video import VideoWriter, check_output
        self.started = time.perf_counter() if started is None else started
        self.rig = pipeline.rig(face)
        self.motion = pipeline.live_motion()
        from .motion.speech import mean_face
        self.rest = mean_face(self.motion.speech.generator)
        self.view = view
        self.stats = LiveStats()
        self.writer = None
        if record is not None:
            out = check_output(record, (face,))
            self.writer = VideoWriter(out, *self.rig.size, cfg=replace(pipeline.cfg.video, fps=FPS),
                                      audio=np.zeros((1, 0), np.float32))
        self._heard: list[np.ndarray] = []            # the sound the recording carries, in blocks

    def _show(self, frames, arrivals: list[tuple[int, float]]) -> None:
        """Render ``frames``: every one into the recording, only the newest onto the page (a face that
        fell behind skips ahead on the page; the recording stays complete and frame-exact)."""
        import cv2
        for i, f in enumerate(frames):
            k, gaze = self.rig.place(f.shape[None], self.rest, f.pose[None])
            img = self.rig.render(k[0], gaze[0])
            if self.writer is not None:
                self.writer.write(img)
            if self.view is not None and i == len(frames) - 1:
                ok, jpeg = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                self.view.show(jpeg.tobytes())
            now = time.perf_counter()
            if self.stats.first_frame_s is None:
                self.stats.first_frame_s = now - self.started
            last = min((f.index + 1) * SAMPLES_PER_FRAME, self.stats.samples)       # the last sample the frame shows
            arrived = next((t for end, t in arrivals if end >= last), arrivals[-1][1])
            self.stats.latencies.append(now - arrived)
            self.stats.ready.append(now)
            self.stats.frames += 1

    def run(self, source: Iterator[list[tuple[np.ndarray, float]]]) -> LiveStats:
        """Animate from batches of (block, arrival time) pairs (:meth:`Listener.batches`) until they end (a
        file: its end; a microphone: Ctrl-C); the recording is then closed."""
        from threadpoolctl import threadpool_limits
        arrivals: list[tuple[int, float]] = []          # (samples received so far, when), recent blocks
        t0, c0 = time.perf_counter(), _cpu_s()
        limits = threadpool_limits(1)                   # one frame at a time: idle BLAS threads only spin
        try:
            for batch in source:
                for block, now in batch:
                    self.stats.samples += len(block)
                    arrivals.append((self.stats.samples, now))
                    if self.writer is not None:
                        self._heard.append(block)
                    if self.view is not None:
                        self.view.hear(block)
                self._show(self.motion.push(np.concatenate([b for b, _ in batch])), arrivals)
                del arrivals[:-256]
            self._show(self.motion.push(np.zeros(0, np.float32), final=True), arrivals or [(0, time.perf_counter())])
        except KeyboardInterrupt:
            pass
        except BaseException:
            if self.writer is not None:
                self.writer.abort()
            raise
        finally:
            limits.restore_original_limits()
        self.stats.wall_s, self.stats.cpu_s = time.perf_counter() - t0, _cpu_s() - c0
        if self.writer is not None:
            self.writer.audio = np.concatenate([np.zeros(0, np.float32), *self._heard])[None]
            self.writer.close()
        return self.stats


def run_live(pipeline, face: str | Path, audio: str | None = None, mic: bool = False, realtime: bool = True,
             record: str | Path | None = None, stats: str | Path | None = None, serve: bool = True,
             port: int = 0, open_browser: bool = False, log=print) -> dict:
    """The ``live`` command: one source (``audio`` file or "-" for stdin PCM, or ``mic``), the page, the
    recording and the stats file. Returns the stats summary."""
    started = _process_started()
    if (audio is None) == (not mic):
        raise InputError("live needs one speech source: --mic, or --audio FILE (or --audio - for raw PCM on stdin)")
    if stats is not None and Path(stats).suffix.lower() != ".json":
        raise InputError(f"--stats {stats}: the latency log is JSON; name it .json")
    from .audio import _checked, is_url
    if audio not in (None, "-") and not is_url(audio):
        _checked(audio)
    view = LiveView(port) if serve else None
    try:
        listener = Listener(mic_source() if mic else pcm_source(sys.stdin.buffer) if audio == "-"
                            else file_source(audio, realtime))
        session = LiveSession(pipeline, face, record, view, started)
        if view is not None:
            log(f"live: open {view.url} (Ctrl-C stops)")
            if open_browser:
                import webbrowser
                webbrowser.open(view.url)
        result = session.run(listener.batches()).summary()
    finally:
        if view is not None:
            view.close()
    if stats is not None:
        tmp = Path(stats).with_suffix(".json.part")
        tmp.write_text(json.dumps({**result, "latencies_ms": [round(1000 * x, 2) for x in session.stats.latencies]}))
        os.replace(tmp, stats)
    return result
