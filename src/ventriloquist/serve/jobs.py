"""A bounded queue of video jobs, each rendered in a process of its own forked from the server.

The REST server is a thin layer over this: a job is a face and a speech file already saved
under a folder the queue owns (named by the job id, never by anything a client sent), plus
per-video options. Each worker is a thread that hands its jobs, one at a time, to a render
process of its own (started once, the models loaded once), which reports progress through a pipe
and renders with :meth:`Ventriloquist.generate`. Whatever stage a job is in (decoding, hearing the
speech, rendering), a cancel or its time limit ends that process within a fraction of a second and
frees its memory; a process that dies (killed, out of memory) fails its job with a message. Either
way the worker starts a fresh process and goes on. Finished jobs are removed after ``keep_s``.
"""
from __future__ import annotations

import multiprocessing
import queue
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import generate_config
from ..errors import VentriloquistError

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
RESULT_NAME = "video.mp4"
EMOTIONS_NAME = "emotions.csv"      # the per-frame emotion that drove the video (a timeline file)
POLL_S = 0.1                        # how often a worker looks at its job's process, cancel flag and clock
STOP_GRACE_S = 1.0                  # a stopped job's process gets this long to end before it is killed


class QueueFull(RuntimeError):
    """More jobs are waiting than the queue holds; ``retry_after`` is a fair guess in seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class Job:
    id: str
    folder: Path
    face: Path
    audio: Path
    options: dict
    timeline: Path | None = None        # an uploaded emotion timeline, saved under a name the server made
    state: str = QUEUED
    progress: float = 0.0
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def result(self) -> Path:
        return self.folder / RESULT_NAME

    @property
    def emotions(self) -> Path:
        return self.folder / EMOTIONS_NAME

    def config(self):
        """The job's GenerateConfig (options checked, the timeline read from the job's folder)."""
        return generate_config(self.options, emotion_timeline=self.timeline and str(self.timeline))

    def public(self) -> dict:
        """What a client may see (no paths)."""
        return {"id": self.id, "status": self.state, "progress": round(self.progress, 3), "error": self.error,
                "created": self.created, "started": self.started, "finished": self.finished,
                "options": self.options}


class JobQueue:
    """``workers`` threads, each with a render process of its own."""

    def __init__(self, workdir: Path, workers: int = 1, max_queued: int = 8, time_limit_s: float = 600.0,
                 keep_s: float = 3600.0):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.max_queued, self.time_limit_s, self.keep_s = max_queued, time_limit_s, keep_s
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._todo: queue.Queue[Job | None] = queue.Queue()
        self._durations: list[float] = []
        self._renderers = [_Renderer() for _ in range(max(1, workers))]
        self._threads = [threading.Thread(target=self._work, args=(r,), name=f"video-worker-{i}", daemon=True)
                         for i, r in enumerate(self._renderers)]
        for t in self._threads:
            t.start()

    # --- client side -------------------------------------------------------------------------------
    def new_folder(self) -> tuple[str, Path]:
        """A fresh job id and its folder, for the caller to save the uploads into before :meth:`submit`."""
        job_id = secrets.token_hex(8)
        folder = self.workdir / job_id
        folder.mkdir()
        return job_id, folder

    def submit(self, job_id: str, face: Path, audio: Path, options: dict, timeline: Path | None = None) -> Job:
        """Queue a job whose files are in its folder; QueueFull when ``max_queued`` are already waiting."""
        from ..emotion.timeline import load_timeline
        generate_config(options)                       # refuse bad options now, not in a worker
        if timeline is not None:
            load_timeline(timeline)
        with self._lock:
            waiting = sum(j.state == QUEUED for j in self.jobs.values())
            if waiting >= self.max_queued:
                raise QueueFull(self._retry_after(waiting))
            job = Job(job_id, self.workdir / job_id, face, audio, dict(options), timeline)
            self.jobs[job_id] = job
        self._todo.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        self.reap()
        return self.jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a waiting or running job, or delete a finished one with its files."""
        job = self.jobs.get(job_id)
        if job is None:
            return None
        if job.state in FINISHED:
            self._remove(job)
        else:
            job.cancel.set()
            with self._lock:
                if job.state == QUEUED:
                    self._finish(job, CANCELLED, "cancelled by the client")
        return job

    def stats(self) -> dict:
        with self._lock:
            states = [j.state for j in self.jobs.values()]
        return {"queued": states.count(QUEUED), "running": states.count(RUNNING), "done": states.count(DONE),
                "workers": len(self._threads), "max_queued": self.max_queued}

    def reap(self) -> None:
        """Remove finished jobs (and their files) older than ``keep_s``."""
        now = time.time()
        for job in list(self.jobs.values()):
            if job.state in FINISHED and job.finished is not None and now - job.finished > self.keep_s:
                self._remove(job)

    def close(self) -> None:
        for job in list(self.jobs.values()):
            job.cancel.set()
        for _ in self._threads:
            self._todo.put(None)
        for t in self._threads:
            t.join(timeout=30)
        for r in self._renderers:
            r.close()

    # --- worker side ---------------------------------------------------------------------------------
    def _retry_after(self, waiting: int) -> int:
        per_job = sorted(self._durations)[len(self._durations) // 2] if self._durations else 10.0
        return max(1, int(round(per_job * max(1, waiting) / len(self._threads))))

    def _finish(self, job: Job, state: str, error: str | None = None) -> None:
        """Record a job's end; its uploads are no longer needed and go at once (its video stays until reaped)."""
        job.state, job.error, job.finished = state, error, time.time()
        for upload in (job.face, job.audio, job.timeline):
            if upload is not None:
                upload.unlink(missing_ok=True)

    def _remove(self, job: Job) -> None:
        with self._lock:
            self.jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)

    def _work(self, renderer: "_Renderer") -> None:
        while True:
            job = self._todo.get()
            if job is None:
                return
            with self._lock:
                if job.state != QUEUED:            # cancelled while waiting
                    continue
                limit = self.time_limit_s             # fixed before the job is seen running
                job.state, job.started = RUNNING, time.time()
            state, error = renderer.run(job, job.started + limit, limit)
            if state != DONE:
                for leftover in [job.result, job.emotions, *job.folder.glob(".*")]:  # the writer's temp files too
                    leftover.unlink(missing_ok=True)
            else:
                self._durations = (self._durations + [time.time() - job.started])[-20:]
            self._finish(job, state, error)


_CONTEXT = multiprocessing.get_context("spawn")     # a clean process: no locks or threads inherited from the server


class _Renderer:
    """One render process and the pipe to it, restarted after a job it had to abandon."""

    def __init__(self):
        self.process = self.conn = None

    def start(self) -> None:
        self.conn, child = _CONTEXT.Pipe()
        self.process = _CONTEXT.Process(target=_render_jobs, args=(child,), name="ventriloquist-render", daemon=True)
        self.process.start()
        child.close()

    def run(self, job: Job, deadline: float, limit: float) -> tuple[str, str | None]:
        """Render ``job``; its final state and error message."""
        if self.process is None or not self.process.is_alive():
            self.start()
        spec = {"options": job.options, "timeline": job.timeline and str(job.timeline), "face": str(job.face),
                "audio": str(job.audio), "result": str(job.result), "emotions": str(job.emotions)}
        outcome = None
        try:
            self.conn.send(spec)
            while outcome is None:
                if job.cancel.is_set():
                    self.close()
                    return CANCELLED, "cancelled by the client"
                if time.time() > deadline:
                    self.close()
                    return FAILED, f"the job ran past its time limit of {limit:g} s"
                if self.conn.poll(POLL_S):
                    message = self.conn.recv()
                    if message[0] == "progress":
                        job.progress = message[1]
                    elif message[0] != "ready":
                        outcome = message
        except (EOFError, OSError):                 # the process ended without a word
            self.process.join(STOP_GRACE_S)
            code = self.process.exitcode
            self.close()
            how = f"was killed by signal {-code}" if code is not None and code < 0 else f"ended with exit code {code}"
            return FAILED, f"the render process {how} (out of memory?) before the video was done; try a shorter input"
        if outcome[0] == "done":
            return DONE, None
        return FAILED, outcome[1].replace(str(job.folder) + "/", "")

    def close(self) -> None:
        """End the process: at once if it is at work, killed if it does not go within the grace."""
        if self.process is None:
            return
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(STOP_GRACE_S)
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()
        self.process = self.conn = None


def _render_jobs(conn) -> None:
    """The render process: load the models once, then render each job sent, reporting ("progress", share)
    and then ("done",) or ("error", message)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # a Ctrl-C on the server is the server's to handle
    import cv2

    from ..pipeline import Ventriloquist
    cv2.setNumThreads(1)
    speech = Ventriloquist().speech_motion
    conn.send(("ready",))
    while True:
        try:
            spec = conn.recv()
        except EOFError:
            return
        last = [0.0]

        def progress(share: float) -> None:
            if share - last[0] >= 0.01 or share >= 1.0:
                last[0] = share
                conn.send(("progress", share))
        try:
            cfg = generate_config(spec["options"], emotion_timeline=spec["timeline"])
            Ventriloquist(cfg, speech_motion=speech).generate(spec["face"], spec["result"], audio=spec["audio"],
                                                              export_emotions=spec["emotions"], progress=progress)
            conn.send(("done",))
        except VentriloquistError as exc:
            conn.send(("error", str(exc)))
        except Exception as exc:                    # a bug must fail one job, never the server
            import traceback
            traceback.print_exc()
            conn.send(("error", f"unexpected {type(exc).__name__}; the server log has details"))
