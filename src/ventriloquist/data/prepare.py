"""``ventriloquist prepare``: extract landmarks and audio features of every clip once, into a cache.

Face tracking costs far more than training reads, so each clip is processed once, in parallel
worker processes (or Ray tasks, here or on a cluster), and written atomically; a second run skips clips already in the cache (an
interrupted run resumes where it stopped). A video that cannot be used (no face, corrupt
file, unreadable audio) is listed in ``skipped.csv`` with its reason; it never stops the run.
"""
from __future__ import annotations

import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..audio import energy, load_audio, log_mel, mfcc, num_frames
from ..config import FPS, SAMPLE_RATE
from ..errors import InputError
from ..face.align import normalise, relative_pose
from ..face.track import track_video
from ..phonetics import articulation
from ..motion.sequence import resample
from ..video import video_info
from . import cache
from .video_corpora import VideoItem, discover, read_alignment

MAX_AV_EXCESS_S = 1.0          # audio this much longer than the video is trimmed: held landmarks would be fake
MP_START = "spawn"             # fork would copy a parent's threads and open decoders


def clip_stamp(item: VideoItem, carry_box: bool) -> str:
    """What a cached clip was made from: its files (:func:`cache.stamp`) and, when the face box followed the
    picture between detections, that (the training cache's clips, made as the shipped weights' were, say
    nothing)."""
    return cache.stamp(item.path, item.audio) + (";box=follows-picture" if carry_box else "")


def extract(item: VideoItem, carry_box: bool = False) -> dict:
    """All cache fields of one clip; InputError (or any decode error) when it cannot be used. ``carry_box``:
    between detections the face box follows the picture (:func:`~..face.track.track_video`); off, it is
    re-made from the last landmarks, as the training cache (format 3) of the shipped weights was made."""
    info = video_info(item.path)
    y = None
    audio_src = item.path if info["has_audio"] else item.audio     # the video's own track is in sync by construction
    if audio_src is not None:
        y = load_audio(audio_src)
    k, fps, (w, h) = track_video(item.path, progress=False, carry_box=carry_box)
    video_s = len(k) / fps
    if y is not None and len(y) / SAMPLE_RATE > video_s + MAX_AV_EXCESS_S:
        y = y[: int(round(video_s * SAMPLE_RATE))]
    t = num_frames(len(y)) if y is not None else max(1, int(round(video_s * FPS)))
    k25 = resample(k, fps, FPS, t).astype(np.float32)
    shapes, m = normalise(k25)
    fields = {
        "landmarks": k25, "shapes": shapes, "pose": relative_pose(m),
        "fps": np.float32(FPS), "source": str(item.path), "corpus": item.corpus, "speaker": item.speaker,
        "emotion": item.emotion, "label": item.label, "split": item.split, "intensity": np.int32(item.intensity),
        "width": np.int32(w), "height": np.int32(h), "video_fps": np.float32(fps), "video_frames": np.int32(len(k)),
        "transcript": item.transcript, "stamp": clip_stamp(item, carry_box),
    }
    if y is not None:
        mel = log_mel(y)
        fields.update(mel=mel, mfcc=mfcc(mel=mel), energy=energy(y), artic=articulation(y, t))
    if item.alignment is not None and Path(item.alignment).is_file():
        words, times = read_alignment(item.alignment)
        fields.update(words=np.array(words, dtype=str),
                      word_times=np.array(times, dtype=np.float32).reshape(-1, 2))
    return fields


def _reason(exc: BaseException) -> str:
    """One line for skipped.csv: our errors already say what is wrong; others get their type."""
    msg = " ".join(str(exc).split())
    return msg if isinstance(exc, InputError) else f"{type(exc).__name__}: {msg or 'failed'}"


def _work(item: VideoItem, out: Path, carry_box: bool = False) -> str | None:
    """Extract and write one clip; the reason it was skipped, or None when it was written."""
    try:
        cache.write_clip(out, item.key, extract(item, carry_box))
        return None
    except Exception as exc:
        return _reason(exc)


def _one_thread():
    """Math libraries on one thread; returns what undoes it (cv2's old count, threadpoolctl's limiter).

    A multi-threaded BLAS sums the Mel filterbank in another order (results 1e-6 apart), so without
    this the cache, and the weights trained on it, depended on ``--workers`` and on which worker got
    which clip: the pool starts workers on demand, and a later one did not see a spawn-time
    environment. SciPy's own BLAS is loaded first, since a library loaded later escapes the limit.
    """
    import importlib

    import cv2
    from threadpoolctl import threadpool_limits
    importlib.import_module("scipy.linalg")
    n = cv2.getNumThreads()
    cv2.setNumThreads(1)
    return n, threadpool_limits(1)


def _init_worker() -> None:
    _one_thread()


_RAY_READY = False


def _encoded(item: VideoItem, carry_box: bool = False) -> tuple[bytes | None, str | None]:
    """A Ray task: one clip's file bytes (the driver writes them), or the reason it was skipped.
    Its worker computes single-threaded, as a local worker does, so the arrays are the same."""
    global _RAY_READY
    if not _RAY_READY:
        _one_thread()
        _RAY_READY = True
    try:
        return cache.encode_clip(extract(item, carry_box)), None
    except Exception as exc:
        return None, _reason(exc)


def _run_ray(todo: list[VideoItem], out: Path, workers: int, address: str | None, done, carry_box: bool) -> None:
    """Run the clips as Ray tasks (a local runtime of ``workers`` CPUs, or the cluster at ``address``)."""
    from .. import cluster
    with cluster.connect(address, workers) as ray:
        task = ray.remote(num_cpus=1, max_retries=0)(_encoded)
        limit = cluster.IN_FLIGHT_PER_WORKER * cluster.workers_of(ray)
        for it, result, error in cluster.as_completed(ray, lambda it: task.remote(it, carry_box), todo, limit):
            if error is not None:
                done(it, f"the Ray worker failed on this file ({type(error).__name__})")
                continue
            data, reason = result
            if data is not None:
                cache.write_clip(out, it.key, data)
            done(it, reason)


@contextmanager
def _single_threaded():
    """Extraction in this process computes exactly as a worker does."""
    import cv2
    n, limits = _one_thread()
    try:
        yield
    finally:
        limits.restore_original_limits()
        cv2.setNumThreads(n)


class PoolUnavailable(RuntimeError):
    """Worker processes could not start (e.g. a script without an ``if __name__ == "__main__"`` guard)."""


def _pool(workers: int) -> ProcessPoolExecutor:
    import multiprocessing as mp
    ex = ProcessPoolExecutor(workers, mp_context=mp.get_context(MP_START), initializer=_init_worker)
    try:
        ex.submit(int).result()         # a pool that cannot start fails here, before any clip is lost
    except (BrokenProcessPool, OSError) as exc:
        ex.shutdown(cancel_futures=True)
        raise PoolUnavailable(str(exc)) from None
    return ex


def _run_parallel(todo: list[VideoItem], out: Path, workers: int, done, carry_box: bool) -> None:
    """Run ``_work`` over ``todo`` in processes; a worker that dies takes only its own clip down."""
    retry: list[VideoItem] = []
    ex = _pool(workers)
    try:
        futs = {ex.submit(_work, it, out, carry_box): it for it in todo}
        for fut in as_completed(futs):
            try:
                done(futs[fut], fut.result())
            except BrokenProcessPool:
                retry.append(futs[fut])
    finally:
        ex.shutdown(cancel_futures=True)
    # after a crash we cannot tell which clip caused it: redo the unfinished ones one at a time
    ex = _pool(1) if retry else None
    for it in retry:
        try:
            done(it, ex.submit(_work, it, out, carry_box).result())
        except BrokenProcessPool:
            done(it, "the worker process crashed while reading this file (corrupt video?)")
            ex.shutdown()
            ex = _pool(1)
    if ex is not None:
        ex.shutdown()


ENGINES = ("local", "ray")


def prepare(inputs: list[Path], out: Path, workers: int | None = 2, progress: bool = True, engine: str = "local",
            address: str | None = None, shards: int = 0, carry_box: bool = False) -> dict:
    """Extract every clip of ``inputs`` into the cache ``out``; returns counts and the paths written.

    ``engine`` "local" runs ``workers`` processes here (None: 2); "ray" runs Ray tasks, on a local runtime
    of ``workers`` CPUs (None: all of this machine's) or on the cluster at ``address``; the arrays are
    the same either way. ``shards`` > 0 also packs the cache into tar shards of that many clips
    (:func:`cache.pack_shards`). ``carry_box``: see :func:`extract` (a clip made the other way is made again).

    Counts: ``found`` clips discovered, ``prepared`` now, ``cached`` already there (made from the
    same file as it is now: a moved or replaced video is extracted again), ``skipped`` unusable (see
    ``skipped.csv``), ``clips`` in the index, ``seconds`` taken; ``keys`` are the clips of ``inputs``.
    """
    from tqdm.auto import tqdm
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if address and engine != "ray":
        raise InputError("--address joins a Ray cluster: pass it with --engine ray")
    t0 = time.perf_counter()
    out = Path(out)
    items = discover([Path(p) for p in inputs])
    if not items:
        raise InputError(f"no videos found in {', '.join(map(str, inputs))}; pass video files, folders of "
                         "videos or a data root like ../shared/data (see docs/DATA.md)")
    cache.check_format(out, create=True)
    skipped: list[dict] = []
    by_key: dict[str, VideoItem] = {}
    for it in items:
        if it.key in by_key:
            skipped.append({"source": str(it.path), "corpus": it.corpus, "key": it.key,
                            "reason": f"same cache key as {by_key[it.key].path}; rename one of them"})
        else:
            by_key[it.key] = it
    todo = [it for k, it in by_key.items()                 # missing, or made from another file or an older one
            if not cache.is_fresh(out, k, it.path, clip_stamp(it, carry_box))]
    cached = len(by_key) - len(todo)
    prepared = 0
    finished: set[str] = set()
    bar = tqdm(total=len(todo), desc="prepare", unit="clip", disable=not progress)

    def done(it: VideoItem, reason: str | None) -> None:
        nonlocal prepared
        finished.add(it.key)
        if reason is None:
            prepared += 1
        else:
            cache.clip_file(out, it.key).unlink(missing_ok=True)     # a stale copy must not stand in for it
            skipped.append({"source": str(it.path), "corpus": it.corpus, "key": it.key, "reason": reason})
        bar.update(1)
        bar.set_postfix(skipped=len(skipped), refresh=False)

    try:
        if engine == "ray" and todo:
            _run_ray(todo, out, workers, address, done, carry_box)
        elif (workers or 2) > 1 and len(todo) > 1:
            try:
                _run_parallel(todo, out, min(workers or 2, len(todo)), done, carry_box)
            except PoolUnavailable as exc:
                print(f"worker processes could not start ({exc}); preparing in this process", file=sys.stderr)
        left = [it for it in todo if it.key not in finished]     # all of them, or what no pool could take
        if left:
            with _single_threaded():
                for it in left:
                    done(it, _work(it, out, carry_box))
    finally:
        bar.close()
    skipped_csv = cache.write_skipped(out, skipped)
    rows = cache.rebuild_index(out)
    packed = cache.pack_shards(out, shards) if shards else []
    result = {"found": len(items), "prepared": prepared, "cached": cached, "skipped": len(skipped),
              "clips": len(rows), "seconds": round(time.perf_counter() - t0, 1),
              "index": str(out / cache.INDEX_FILE), "skipped_csv": str(skipped_csv), "shards": [str(p) for p in packed],
              "keys": sorted(set(by_key) - {r["key"] for r in skipped})}    # the clips of these inputs, now
    if progress:
        msg = (f"prepared {prepared} clip(s), {cached} already cached; index {result['index']} holds "
               f"{len(rows)} clip(s) ({result['seconds']} s)")
        if skipped:
            msg += f"\nskipped {len(skipped)} video(s) that could not be used; reasons in {skipped_csv}"
        print(msg, file=sys.stderr)
    return result
