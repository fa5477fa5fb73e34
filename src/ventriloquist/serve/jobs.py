"""A bounded queue of video jobs run by a few worker threads that share one loaded pipeline.

The REST server is a thin layer over this: a job is a face and a speech file already saved
under a folder the queue owns (named by the job id, never by anything a client sent), plus
per-video options. Workers render with :meth:`Ventriloquist.generate`; its progress callback
reports progress and stops a job that was cancelled or ran past its time limit (the writer
then leaves no partial file). Finished jobs are removed after ``keep_s``.
"""
from __future__ import annotations

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


class QueueFull(RuntimeError):
    """More jobs are waiting than the queue holds; ``retry_after`` is a fair guess in seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


class Stopped(Exception):
    """Raised from the progress callback: the job was cancelled or ran out of time."""


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
    """``workers`` threads over one shared :class:`~ventriloquist.motion.speech.SpeechMotion`."""

    def __init__(self, workdir: Path, speech_motion=None, workers: int = 1, max_queued: int = 8,
                 time_limit_s: float = 600.0, keep_s: float = 3600.0):
        from ..pipeline import Ventriloquist
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.speech = speech_motion if speech_motion is not None else Ventriloquist().speech_motion
        self.max_queued, self.time_limit_s, self.keep_s = max_queued, time_limit_s, keep_s
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._todo: queue.Queue[Job | None] = queue.Queue()
        self._durations: list[float] = []
        self._threads = [threading.Thread(target=self._work, name=f"video-worker-{i}", daemon=True)
                         for i in range(max(1, workers))]
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

    # --- worker side ---------------------------------------------------------------------------------
    def _retry_after(self, waiting: int) -> int:
        per_job = sorted(self._durations)[len(self._durations) // 2] if self._durations else 10.0
        return max(1, int(round(per_job * max(1, waiting) / len(self._threads))))

    def _finish(self, job: Job, state: str, error: str | None = None) -> None:
        job.state, job.error, job.finished = state, error, time.time()

    def _remove(self, job: Job) -> None:
        with self._lock:
            self.jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)

    def _work(self) -> None:
        from ..pipeline import Ventriloquist
        while True:
            job = self._todo.get()
            if job is None:
                return
            with self._lock:
                if job.state != QUEUED:            # cancelled while waiting
                    continue
                job.state, job.started = RUNNING, time.time()
            deadline = job.started + self.time_limit_s

            def progress(share: float, job: Job = job, deadline: float = deadline) -> None:
                job.progress = share
                if job.cancel.is_set() or time.time() > deadline:
                    raise Stopped
            try:
                vt = Ventriloquist(job.config(), speech_motion=self.speech)
                vt.generate(job.face, job.result, audio=job.audio, export_emotions=job.emotions, progress=progress)
                self._durations = (self._durations + [time.time() - job.started])[-20:]
                self._finish(job, DONE)
            except Stopped:
                for output in (job.result, job.emotions):   # the last report comes after both are written
                    output.unlink(missing_ok=True)
                if job.cancel.is_set():
                    self._finish(job, CANCELLED, "cancelled by the client")
                else:
                    self._finish(job, FAILED, f"the job ran past its time limit of {self.time_limit_s:g} s")
            except VentriloquistError as exc:
                self._finish(job, FAILED, str(exc).replace(str(job.folder) + "/", ""))
            except Exception as exc:                # a bug must fail one job, never the worker
                self._finish(job, FAILED, f"unexpected {type(exc).__name__}; the server log has details")
                import traceback
                traceback.print_exc()
