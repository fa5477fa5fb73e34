"""``ventriloquist batch``: many videos in one run, the models loaded once per worker process.

Rows come from a manifest CSV (columns ``face``, ``audio``, optional ``out`` and any per-video
option: size, crop, fps, expression, articulation, emotion, emotion_intensity, head_motion, face_index,
seed, and an ``emotion_timeline`` file; relative paths are relative to the CSV) or from a
folder of faces and a folder of speech (paired by file name, or every face with every speech). Work is spread over worker processes; a row whose output already exists
is skipped (outputs appear only when complete, so a rerun resumes); a failing row is reported
in ``summary.csv`` and never stops the others.
"""
from __future__ import annotations

import csv
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from .config import OPTIONS
from .errors import InputError, unwind_on_sigterm
from .video import remove_stale

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
SUMMARY = "summary.csv"
SUMMARY_COLUMNS = ("row", "face", "audio", "out", "status", "seconds", "error")


@dataclass
class Row:
    index: int
    face: Path
    audio: Path
    out: Path
    options: dict = field(default_factory=dict)
    timeline: Path | None = None        # an emotion timeline file (.json/.csv)


def _safe_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).strip("._") or "video"


def _names(columns: set[str]) -> str:
    """Column names for a one-line message: a name holding a line break is shown escaped."""
    return ", ".join(c if c.isprintable() else repr(c) for c in sorted(columns))


def read_manifest(path: Path, out_dir: Path) -> list[Row]:
    """Rows of a manifest CSV; a row without ``out`` is named after its face and audio."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest {path} does not exist; pass a CSV with the columns face,audio[,out,...]")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = set(reader.fieldnames or ())
            if not {"face", "audio"} <= cols:
                raise InputError(f"manifest {path} needs the columns face and audio (it has: {_names(cols) or 'none'})")
            unknown = cols - {"face", "audio", "out", "emotion_timeline"} - set(OPTIONS)
            if unknown:
                raise InputError(f"manifest {path} has unknown column(s) {_names(unknown)}; "
                                 f"options are {', '.join(OPTIONS)}, emotion_timeline")
            rows = []
            for i, r in enumerate(reader, start=1):
                face, audio = path.parent / (r["face"] or "").strip(), path.parent / (r["audio"] or "").strip()
                name = (r.get("out") or "").strip() or f"{face.stem}__{audio.stem}.mp4"
                out = out_dir / _safe_name(Path(name).name)
                out = out if out.suffix.lower() == ".mp4" else out.with_suffix(".mp4")
                timeline = (r.get("emotion_timeline") or "").strip()
                rows.append(Row(i, face, audio, out, {k: r[k] for k in OPTIONS if (r.get(k) or "").strip()},
                                path.parent / timeline if timeline else None))
    except UnicodeDecodeError:
        raise InputError(f"manifest {path} is not UTF-8 text; save it as a UTF-8 CSV file") from None
    except csv.Error as exc:
        raise InputError(f"manifest {path} is not a readable CSV file ({exc})") from None
    return rows


def pair_folders(faces: Path, audio: Path, out_dir: Path, every: bool = False) -> list[Row]:
    """Faces (photos, or videos to dub) and speech files paired by name (``anna.jpg`` + ``anna.wav``), or every
    face with every speech."""
    from .audio import AUDIO_EXTENSIONS
    from .video import VIDEO_EXTENSIONS
    for folder, what in ((faces, "--faces"), (audio, "--audio")):
        if not Path(folder).is_dir():
            raise InputError(f"{what} {folder} is not a folder")
    pics = sorted(p for p in Path(faces).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
    sounds = sorted(p for p in Path(audio).iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
    if every:
        pairs = [(f, a) for f in pics for a in sounds]
    else:
        by_stem = {a.stem: a for a in sounds}
        pairs = [(f, by_stem[f.stem]) for f in pics if f.stem in by_stem]
    if not pairs:
        raise InputError(f"no face in {faces} has a speech file of the same name in {audio}; "
                         "name them alike (anna.jpg, anna.wav) or pass --every")
    return [Row(i, f, a, out_dir / _safe_name(f"{f.stem}.mp4" if not every else f"{f.stem}__{a.stem}.mp4"))
            for i, (f, a) in enumerate(pairs, start=1)]


# --- workers -------------------------------------------------------------------------------------------------
_speech = None


def _init(threads: int) -> None:
    """Each worker process loads the models once and computes on ``threads`` threads; a SIGTERM unwinds it
    as a Ctrl-C does, so the video it was writing leaves no temporary file."""
    global _speech
    unwind_on_sigterm()
    import cv2
    import torch
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    from .pipeline import Ventriloquist
    _speech = Ventriloquist().speech_motion


def _render(row: Row) -> tuple[int, str, float, str]:
    """(row index, status, seconds, error) for one row, rendered in this process."""
    from .config import generate_config
    from .errors import VentriloquistError
    from .pipeline import Ventriloquist
    t0 = time.perf_counter()
    try:
        cfg = generate_config(row.options, emotion_timeline=row.timeline and str(row.timeline))
        Ventriloquist(cfg, speech_motion=_speech).generate(
            row.face, row.out, audio=row.audio, progress=False)
        return row.index, "done", time.perf_counter() - t0, ""
    except VentriloquistError as exc:
        return row.index, "failed", time.perf_counter() - t0, str(exc)
    except Exception as exc:
        return row.index, "failed", time.perf_counter() - t0, f"unexpected {type(exc).__name__}: {exc}"


def run_batch(rows: list[Row], out_dir: Path, workers: int | None = None, progress: bool = True,
              engine: str = "local", address: str | None = None) -> dict:
    """Render every row not yet done; write ``out_dir/summary.csv``; return the counts.

    ``engine`` "local": worker processes here; "ray": one pipeline per Ray actor, on a local runtime
    of ``workers`` CPUs or the cluster at ``address``, each video sent back and written here."""
    if engine not in ("local", "ray"):
        raise InputError(f"unknown engine {engine!r}; choose local or ray")
    if address and engine != "ray":
        raise InputError("--address joins a Ray cluster: pass it with --engine ray")
    from tqdm.auto import tqdm
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seen: dict[Path, int] = {}
    results: dict[int, tuple[str, float, str]] = {}
    todo = []
    for r in rows:
        if r.out in seen:
            results[r.index] = ("failed", 0.0, f"same output name as row {seen[r.out]}; give one of them another out")
        elif r.out.is_file():
            results[r.index] = ("skipped", 0.0, "output exists")
        else:
            seen[r.out] = r.index
            remove_stale(r.out)                # what a killed earlier run was writing
            todo.append(r)
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    bar = tqdm(total=len(rows), initial=len(rows) - len(todo), desc="batch", unit="video", disable=not progress)
    t0 = time.perf_counter()
    try:
        if engine == "ray" and todo:
            _ray_run(todo, workers, address, results, bar)
        elif workers == 1:
            _init(max(1, os.cpu_count() or 1))
            for r in todo:
                i, status, secs, err = _render(r)
                results[i] = (status, secs, err)
                bar.update(1)
        else:
            crashed = _pool_run(todo, workers, results, bar)
            for r in crashed:          # a worker died (out of memory, a decoder crash): retry each row alone
                if not _pool_run([r], 1, results, bar):
                    continue
                results[r.index] = ("failed", 0.0, "the worker process crashed on this row")
                bar.update(1)
    finally:
        bar.close()
        _write_summary(out_dir / SUMMARY, rows, results)
    counts = {s: sum(v[0] == s for v in results.values()) for s in ("done", "skipped", "failed")}
    counts.update(rows=len(rows), seconds=round(time.perf_counter() - t0, 1), summary=str(out_dir / SUMMARY))
    if progress:
        print(f"{counts['done']} rendered, {counts['skipped']} already there, {counts['failed']} failed "
              f"({counts['seconds']} s); summary {counts['summary']}", file=sys.stderr)
    return counts


def _pool_run(rows: list[Row], workers: int, results: dict, bar) -> list[Row]:
    """Render ``rows`` in a pool of spawned workers; the rows lost to a crashed worker are returned."""
    import multiprocessing as mp
    from concurrent.futures.process import BrokenProcessPool
    lost = []
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init, initargs=(1,)) as ex:
        futs = {ex.submit(_render, r): r for r in rows}
        try:
            for fut in as_completed(futs):
                try:
                    i, status, secs, err = fut.result()
                except BrokenProcessPool:
                    lost.append(futs[fut])
                    continue
                results[i] = (status, secs, err)
                bar.update(1)
        except KeyboardInterrupt:              # Ctrl-C or SIGTERM: the workers stop too, cleaning up after them
            for proc in list((ex._processes or {}).values()):
                proc.terminate()
            ex.shutdown(wait=True, cancel_futures=True)
            raise
    return sorted(lost, key=lambda r: r.index)


class _RayRenderer:
    """A Ray actor: one loaded pipeline, rendering rows into its own temporary folder and sending each
    video back as bytes (a cluster node need not see the output folder)."""

    def __init__(self) -> None:
        _init(1)

    def render(self, row: Row) -> tuple[int, str, float, str, bytes | None]:
        import dataclasses
        import tempfile
        with tempfile.TemporaryDirectory(prefix="ventriloquist-ray-") as tmp:
            local = Path(tmp) / row.out.name
            i, status, secs, err = _render(dataclasses.replace(row, out=local))
            return i, status, secs, err, local.read_bytes() if status == "done" else None


def _ray_run(todo: list[Row], workers: int, address: str | None, results: dict, bar) -> None:
    """Render ``todo`` on Ray actors; the driver writes each video where its row asks (atomically). A row
    whose actor died is retried once on a fresh actor, then reported."""
    import tempfile

    from . import cluster

    def finish(row: Row, result) -> None:
        i, status, secs, err, data = result
        if data is not None:                     # complete or absent, as a local render leaves it
            fd, tmp = tempfile.mkstemp(prefix=f".{row.out.stem}.", suffix=".part", dir=row.out.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, row.out)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        results[i] = (status, secs, err)
        bar.update(1)

    with cluster.connect(address, workers) as ray:
        worker = ray.remote(num_cpus=1)(_RayRenderer)
        actors = [worker.remote() for _ in range(max(1, min(len(todo), cluster.workers_of(ray))))]
        load = {k: 0 for k in range(len(actors))}
        owner: dict[int, int] = {}

        def submit(row: Row):
            k = min(load, key=load.get)          # the least busy actor
            load[k] += 1
            owner[row.index] = k
            return actors[k].render.remote(row)

        lost = []
        for row, result, error in cluster.as_completed(ray, submit, todo, 2 * len(actors)):
            k = owner.pop(row.index)
            load[k] -= 1
            if error is not None:                 # _render catches a row's own errors: the actor died
                lost.append(row)
                actors[k] = worker.remote()       # rows still queued on the dead one fail fast and join `lost`
            else:
                finish(row, result)
        for row in lost:                          # alone on a fresh actor: only the row that kills it fails
            retry = worker.remote()
            try:
                finish(row, ray.get(retry.render.remote(row)))
            except Exception:
                results[row.index] = ("failed", 0.0, "the Ray worker crashed on this row")
                bar.update(1)
            ray.kill(retry)


def _write_summary(path: Path, rows: list[Row], results: dict) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(SUMMARY_COLUMNS)
        for r in rows:
            status, secs, err = results.get(r.index, ("not run", 0.0, "interrupted"))
            w.writerow([r.index, r.face, r.audio, r.out, status, f"{secs:.1f}", err])
