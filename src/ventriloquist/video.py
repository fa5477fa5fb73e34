"""Video I/O with PyAV: streaming H.264 + AAC writer with atomic output, and a frame reader.

Frames go to the encoder as they are rendered, so memory does not grow with the length of
the video. The output appears under its final name only once it is complete.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .audio import decoded_packets, iter_audio, sound_format
from .config import AUDIO_CODEC, FPS, PIX_FMT, SAMPLE_RATE, VIDEO_CODEC, VideoConfig
from .errors import InputError, InputWarning, OutputError, existing_file


AUDIO_BLOCK = 1024 * 16     # samples per block handed to the AAC encoder
AHEAD_FRAMES = 8            # frames decoded ahead of, or waiting to be encoded behind, the frame being worked on


VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".flv", ".mpg", ".mpeg", ".m4v", ".3gp", ".ts")


def is_video(path: str | Path) -> bool:
    """Whether ``path`` names a video (by its extension): a face given as a video is dubbed, not animated."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def _write_failed(path: Path, exc: OSError) -> OutputError:
    import errno
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return OutputError(f"could not write {path}: the disk is full or the file is too large; free some space "
                           "or choose another --out")
    reason = exc.strerror or type(exc).__name__
    return OutputError(f"could not write {path} ({reason}); choose a folder you can write to with --out")


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def check_output(path: str | Path, inputs: tuple = (), what: str = "--out", suffixes: tuple[str, ...] = (".mp4",)) -> Path:
    """Refuse an output that cannot be written, before any work: a folder, a wrong suffix, a missing or
    read-only folder, or one of the ``inputs`` (the atomic rename would replace it)."""
    path = Path(path)
    limit = _name_max(path.parent if path.parent.is_dir() else Path("."))
    if len(path.name.encode()) > limit:
        raise OutputError(f"{what} {path.name[:40]}... is {len(path.name.encode())} bytes long, more than the "
                          f"{limit} a file name may have here; choose a shorter name")
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; pass a file name such as {path / ('video' + suffixes[0])}")
    if path.suffix.lower() not in suffixes:
        raise OutputError(f"{what} {path} must end in {' or '.join(suffixes)}")
    folder = path.parent
    if not folder.exists():
        raise OutputError(f"output folder {folder} does not exist; create it or choose another {what}")
    if not folder.is_dir():
        raise OutputError(f"{what} {path}: {folder} is a file, not a folder; choose another {what}")
    for given in inputs:
        if given is not None and Path(given).exists() and path.exists() and os.path.samefile(given, path):
            raise OutputError(f"{what} {path} is also an input; writing it would destroy {given}: choose another name")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise _write_failed(path, exc) from None
    return path


def temp_prefix(path: Path) -> str:
    """The prefix of the hidden temporary files an output is written as before it is moved into place:
    short whatever the name (a 250-byte name still fits), and the same for the same output, so a rerun
    can find what an interrupted one left (:func:`remove_stale`)."""
    import hashlib
    return "." + hashlib.sha1(Path(path).name.encode()).hexdigest()[:10] + "."


def _readable(path) -> None:
    """mkstemp makes 0600; an output should read like any file the user makes (the umask decides)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def remove_stale(path: Path) -> None:
    """Delete the temporary files an interrupted write of ``path`` left beside it."""
    path = Path(path)
    for stale in path.parent.glob(temp_prefix(path) + "*"):
        stale.unlink(missing_ok=True)


def write_beside(path: str | Path, write) -> tuple[Path, Path]:
    """``write(tmp)`` to a temporary file beside ``path`` (same suffix); (tmp, path) for the caller to move
    into place once everything it writes is done. A failure is an OutputError, and no temporary file stays."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(suffix=path.suffix, prefix=temp_prefix(path), dir=path.parent or ".")
        os.close(fd)
    except OSError as exc:
        raise _write_failed(path, exc) from None
    tmp = Path(tmp)
    try:
        write(tmp)
        _readable(tmp)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _write_failed(path, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, path


class VideoWriter:
    """Write RGB frames and a sound track to an MP4, atomically.

    The sound is ``audio`` (mono or (channels, samples) at ``sample_rate``) or the audio track of
    the file ``sound``, read block by block when the video is closed: copied as it is when it is AAC,
    otherwise AAC-encoded at its own rate and up to two channels (:func:`~ventriloquist.audio.sound_format`);
    either way trimmed or padded to the picture. Use as a context manager: on an exception the partial
    file is deleted and nothing appears at ``path``.
    """

    def __init__(self, path: str | Path, width: int, height: int, cfg: VideoConfig | None = None,
                 audio: np.ndarray | None = None, sample_rate: int = SAMPLE_RATE, sound: str | Path | None = None) -> None:
        self.cfg = cfg or VideoConfig()
        self.fps = float(self.cfg.fps or FPS)
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            raise OutputError(f"output folder {self.path.parent} does not exist; create it or choose another --out")
        if width % 2 or height % 2:
            raise ValueError("H.264 with yuv420p needs even frame sizes")
        if audio is not None and sound is not None:
            raise ValueError("pass audio samples or a sound file, not both")
        codec = channels = None
        if sound is not None:
            codec, sample_rate, channels = sound_format(sound)
        try:
            fd, self._tmp = tempfile.mkstemp(suffix=".mp4", prefix=temp_prefix(self.path), dir=self.path.parent or ".")
        except OSError as exc:
            raise _write_failed(self.path, exc) from None
        os.close(fd)
        self.frames = 0
        self._encoder = None
        self._failed: BaseException | None = None
        self._aborted = False
        self.container = self._source = None
        try:
            self._open(width, height, audio, sample_rate, sound, codec, channels)
        except BaseException:              # a bad sound file, or a stop signal, before the caller holds the writer
            self.abort()
            raise

    def _open(self, width: int, height: int, audio: np.ndarray | None, sample_rate: int, sound: str | Path | None,
              codec: str | None, channels: int | None) -> None:
        import av
        self.container = av.open(self._tmp, mode="w", format="mp4")
        self.vstream = self.container.add_stream(VIDEO_CODEC, rate=_fps_fraction(self.fps))
        self.vstream.width, self.vstream.height = width, height
        self.vstream.pix_fmt = PIX_FMT
        self.vstream.options = {"crf": str(self.cfg.crf), "preset": self.cfg.preset}
        if self.cfg.threads:
            self.vstream.thread_count = self.cfg.threads
        self.audio = None if audio is None else np.atleast_2d(np.asarray(audio, dtype=np.float32))
        self.sound = None if sound is None else Path(sound)
        self.sample_rate = sample_rate
        self.astream = self._source = None
        if self.audio is not None:
            channels = len(self.audio)
        if codec == AUDIO_CODEC:                     # AAC already: its packets go in unchanged
            self._source = av.open(str(self.sound))
            self.astream = self.container.add_stream_from_template(self._source.streams.audio[0])
        elif channels:
            self.layout = "mono" if channels == 1 else "stereo"
            self.astream = self.container.add_stream(AUDIO_CODEC, rate=sample_rate)
            self.astream.bit_rate = self.cfg.audio_bitrate * channels
            self.astream.layout = self.layout

    def __enter__(self) -> "VideoWriter":
        return self

    def write(self, frame: np.ndarray) -> None:
        """Encode one (H, W, 3) uint8 RGB frame: copied now, encoded in a background thread (x264 leaves
        Python's lock while it works) so that the next frame is made meanwhile."""
        import av
        if self._failed is not None:
            raise self._failed
        if self._encoder is None:
            import queue
            import threading
            self._queue = queue.Queue(AHEAD_FRAMES)
            self._encoder = threading.Thread(target=self._encode_frames, name="ventriloquist-encode", daemon=True)
            self._encoder.start()
        self._queue.put(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"))
        self.frames += 1

    def _encode_frames(self) -> None:
        while (vf := self._queue.get()) is not None:
            if self._failed is not None or self._aborted:
                continue                         # drained: the writer is failing or given up
            try:
                for packet in self.vstream.encode(vf):
                    self.container.mux(packet)
            except OSError as exc:
                self._failed = _write_failed(self.path, exc)
            except BaseException as exc:
                self._failed = exc

    def _join_encoder(self) -> None:
        """Wait until every written frame is encoded; raise the encoder's error, if any."""
        if self._encoder is not None:
            self._queue.put(None)
            self._encoder.join()
            self._encoder = None
        if self._failed is not None:
            raise self._failed

    def _encode(self, block: np.ndarray, pts: int) -> None:
        import av
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(np.clip(block, -1, 1)), format="fltp", layout=self.layout)
        af.sample_rate, af.pts = self.sample_rate, pts
        for packet in self.astream.encode(af):
            self.container.mux(packet)

    def _blocks(self) -> Iterator[np.ndarray]:
        if self.audio is not None:
            for i in range(0, self.audio.shape[1], AUDIO_BLOCK):
                yield self.audio[:, i:i + AUDIO_BLOCK]
        else:
            yield from iter_audio(self.sound, self.sample_rate, 1 if self.layout == "mono" else 2, warn=False)

    def _write_audio(self) -> None:
        """The sound, as long as the picture: encoded block by block, padded with silence."""
        n = int(round(self.frames / self.fps * self.sample_rate))
        done = 0
        for block in self._blocks():
            block = block[:, : n - done]
            if block.shape[1] == 0:
                break
            self._encode(block, done)
            done += block.shape[1]
        for i in range(done, n, AUDIO_BLOCK):
            self._encode(np.zeros((1 if self.layout == "mono" else 2, min(AUDIO_BLOCK, n - i)), np.float32), i)
        for packet in self.astream.encode(None):
            self.container.mux(packet)

    def _copy_audio(self) -> None:
        """The source's AAC packets up to the end of the picture (a shorter sound simply ends)."""
        end = self.frames / self.fps
        ins = self._source.streams.audio[0]
        for packet in self._source.demux(ins):
            if packet.size == 0 or packet.pts is None:
                continue
            if float(packet.pts * packet.time_base) >= end:
                break
            packet.stream = self.astream
            self.container.mux(packet)

    def close(self) -> None:
        """Flush encoders and move the finished file into place."""
        try:
            self._join_encoder()
            for packet in self.vstream.encode(None):
                self.container.mux(packet)
            if self._source is not None:
                self._copy_audio()
                self._source.close()
            elif self.astream is not None:
                self._write_audio()
            self.container.close()
        except OSError as exc:
            self.abort()
            raise _write_failed(self.path, exc) from None
        except BaseException:              # the encoder's error, or a stop signal while the file is finished
            self.abort()
            raise
        _readable(self._tmp)
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._aborted = True
        # the file goes first (an open file can be removed): a second signal while the encoder thread is
        # stopped (a batch worker told to stop twice) must not leave half a video behind
        self._remove_tmp()
        try:
            self._join_encoder()
        except BaseException:
            pass
        for c in (self.container, self._source):
            try:
                if c is not None:
                    c.close()
            except Exception:
                pass
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        try:
            os.remove(self._tmp)
        except OSError:
            pass

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def video_info(path: str | Path) -> dict:
    """fps, frame count, size as shown (a phone's portrait video is taller than wide), the quarter turns shown
    frames get (``rotation``, degrees counter-clockwise) and whether it has audio; a clear error for
    unreadable files."""
    import av
    path = existing_file(path, "video", "pass an existing video file")
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise InputError(f"{path} has no video stream; pass a video of a talking face")
            s = c.streams.video[0]
            fps = float(s.average_rate or s.guessed_rate or 25)
            dur = float(c.duration / 1_000_000) if c.duration else None
            w, h = s.codec_context.width, s.codec_context.height
            turns = _quarter_turns(next(_numbered(c, s), (0.0, None))[1])
            if turns % 2:
                w, h = h, w
            return {"fps": fps, "frames": s.frames, "width": w, "height": h, "duration_s": dur,
                    "has_audio": bool(c.streams.audio), "rotation": 90 * turns}
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"could not open video {path} ({type(exc).__name__}); pass an MP4, MOV, MKV or AVI file") from None


def ahead(items: Iterable, depth: int = AHEAD_FRAMES) -> Iterator:
    """``items`` produced in a background thread, up to ``depth`` ahead of the consumer: decoding (PyAV
    leaves Python's lock while it works) overlaps what is done with the frames. The producer's error is
    raised at the consumer's next step; a consumer that stops early stops the producer."""
    import queue
    import threading
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    done = object()

    def put(item: tuple) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        it = iter(items)
        try:
            for x in it:
                if not put((True, x)):
                    return
            put((True, done))
        except BaseException as exc:        # handed to the consumer
            put((False, exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()                     # a generator's file is closed in the thread that read it

    worker = threading.Thread(target=produce, name="ventriloquist-ahead", daemon=True)
    worker.start()
    try:
        while True:
            ok, x = q.get()
            if not ok:
                raise x
            if x is done:
                return
            yield x
    finally:
        stop.set()
        worker.join()


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield the RGB frames of a video one at a time (no whole-video buffering).

    Damaged packets are skipped, as players do, so a truncated download still gives its
    readable frames (with a warning, :func:`timed_frames`); a file with no decodable frame is an error.
    """
    video_info(path)
    n = 0
    for _, frame in timed_frames(path):
        n += 1
        yield frame
    if n == 0:
        raise InputError(f"no frame of {path} could be decoded; the file is damaged, re-export or re-download it")


def frame_strip(path: str | Path, out_png: str | Path, count: int = 6, height: int = 192) -> Path:
    """A PNG of ``count`` evenly spaced frames side by side: a quick look at a video."""
    import cv2
    n = video_info(path)["frames"] or 0
    picks = set(np.linspace(0, max(n - 1, 0), count).round().astype(int).tolist())
    tiles = []
    for i, frame in enumerate(read_frames(path)):
        if i in picks:
            s = height / frame.shape[0]
            tiles.append(cv2.resize(frame, (int(round(frame.shape[1] * s)), height), interpolation=cv2.INTER_AREA))
    if not tiles:
        raise InputError(f"{path} has no frames to show")
    out_png = Path(out_png)
    cv2.imwrite(str(out_png), cv2.cvtColor(np.concatenate(tiles, axis=1), cv2.COLOR_RGB2BGR))
    return out_png


def upright(frame) -> np.ndarray:
    """A decoded PyAV frame as RGB, turned as players show it: phones record portrait video as landscape
    pixels plus a rotation in the file's display matrix."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = _quarter_turns(frame)
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def _quarter_turns(frame) -> int:
    """Counter-clockwise quarter turns the display matrix asks of a frame (0 when it has none)."""
    return int(round((getattr(frame, "rotation", 0) or 0) / 90)) % 4


def _decoded(c, times: np.ndarray, start: int, path: str | Path) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB frame) from frame ``start`` on, ``times`` being each frame's time (s) as decoded in order:
    seeks to the keyframe before it, then decodes forward, numbering frames by their times. A file that
    cannot seek (an FLV without an index) is opened afresh and decoded from its first frame."""
    import av
    stream = c.streams.video[0]
    try:
        c.seek(int(times[start] / stream.time_base) if start else 0, stream=stream, backward=True)
    except (av.error.FFmpegError, OSError):
        with av.open(str(path)) as fresh:
            for i, (_, frame) in enumerate(_numbered(fresh, fresh.streams.video[0])):
                if i >= start:
                    yield i, upright(frame)
        return
    i = None
    for t, f in _numbered(c, stream):
        if i is None:
            i = 0 if start == 0 else int(np.argmin(np.abs(times - (t or 0.0))))
        else:
            i += 1
        if i >= start:
            yield i, upright(f)


def _numbered(c, stream, skipped: list[int] | None = None) -> Iterator[tuple[float | None, object]]:
    """(time in s, or None where the file gives none; frame) for each decodable frame from the container's
    current position; damaged packets are skipped, and counted in ``skipped[0]`` when it is given."""
    for _, frames in decoded_packets(c, stream):
        if frames is None and skipped is not None:
            skipped[0] += 1
        for f in frames or ():
            yield (float(f.time) if f.time is not None else None), f


def timed_frames(path: str | Path) -> Iterator[tuple[float | None, np.ndarray]]:
    """(time in s or None, upright RGB frame) for each decodable frame of a video. Damaged packets are skipped,
    as players do, with a warning once the readable frames are out (none readable: nothing, no warning)."""
    import av
    skipped, n = [0], 0
    with av.open(str(path)) as c:
        for t, f in _numbered(c, c.streams.video[0], skipped):
            n += 1
            yield t, upright(f)
    if skipped[0] and n:
        warnings.warn(f"{path}: {skipped[0]} damaged packet(s) skipped; used the {n} readable frames", InputWarning,
                      stacklevel=3)


def frames_in_order(path: str | Path, order: Iterable[int], times: np.ndarray,
                    chunk: int = 32) -> Iterator[np.ndarray]:
    """The RGB frames of a video at the given frame indices, in that order (a loop restarts, a ping-pong runs
    back), never holding more than ``chunk`` frames: forward steps decode straight on, a backward run is read
    in chunks (seek to the keyframe before a chunk, decode it forward, hand it out reversed). ``times``: each
    frame's time as decoded in order (:class:`~ventriloquist.face.track.FaceTrack`)."""
    import av
    times = np.asarray(times, np.float64)
    order = list(order)
    with av.open(str(path)) as c:
        fwd, cur, last = None, -1, None
        k = 0
        while k < len(order):
            i = order[k]
            back = k + 1 < len(order) and order[k + 1] == i - 1
            if not back:
                if fwd is None or i <= cur or i - cur > 4 * chunk:
                    fwd, cur = _decoded(c, times, i, path), i - 1
                while cur < i:
                    cur, last = next(fwd)
                yield last
                k += 1
                continue
            run = [i]                                   # a backward run: i, i-1, ...
            while k + len(run) < len(order) and order[k + len(run)] == run[-1] - 1:
                run.append(run[-1] - 1)
            hi = run[0]
            while hi >= run[-1]:
                lo = max(run[-1], hi - chunk + 1)
                held = {}
                for j, frame in _decoded(c, times, lo, path):
                    held[j] = frame
                    if j >= hi:
                        break
                for j in range(hi, lo - 1, -1):
                    yield held.get(j, held[max(held)] if held else None)
                hi = lo - 1
            fwd, cur = None, -1
            k += len(run)
