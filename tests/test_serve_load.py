"""The server under load: 200 mixed requests, 8 at a time, to a ``ventriloquist serve`` process on 127.0.0.1.

Valid jobs (some with options or a timeline), oversized bodies, uploads of the wrong type, malformed
multipart, bad options, unknown job ids, status polls and cancellations; then every job is deleted
while it is being downloaded. Afterwards: no 5xx and no dropped connection, the process alive with
nothing in its log, every valid job's video correct, its memory back near its idle level, and no file
of its own outside its jobs folder. The server runs in
its own process with its own TMPDIR so that its memory and its files can be told apart from the test's.

The figures are printed (``pytest -s``) and written to $VENTRILOQUIST_LOAD_REPORT when that is set.
"""
from __future__ import annotations

import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import av
import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

pytestmark = pytest.mark.slow

REQUESTS = 200
CONCURRENCY = 8
BURST = 50                  # valid uploads sent at once after the mixed load
WORKERS = 2                 # one per core of a small runner; two also share the loaded models
MAX_QUEUED = 12             # small enough that a burst of valid jobs meets 429
UPLOAD_MB = 2               # the demo face (0.8 MB) and the speech fit; the oversized bodies are 3 MB
SPEECH_S = 1.0
REPORT_ENV = "VENTRILOQUIST_LOAD_REPORT"

# Each kind of request: how many of the 200, and the status codes it may get.
MIX: dict[str, tuple[int, set[int]]] = {
    "valid": (66, {202, 429}),
    "poll": (12, {200}),
    "cancel": (14, {200}),
    "oversized": (12, {413}),
    "wrong_type": (16, {415}),
    "malformed": (20, {400, 422}),
    "bad_option": (20, {422}),
    "unknown_id": (40, {404}),
}
assert sum(n for n, _ in MIX.values()) == REQUESTS

VALID: list[tuple[dict[str, str], bytes | None]] = [
    ({"size": "96"}, None),
    ({"size": "128", "emotion": "happy"}, None),
    ({"size": "96", "emotion": "sad", "emotion_intensity": "0.8", "seed": "7"}, None),
    ({"size": "128", "expression": "0.5", "head_motion": "0"}, None),
    ({"size": "96", "crop": "face", "fps": "20"}, None),
    ({"size": "128", "articulation": "1.5"}, json.dumps([{"start": 0.2, "end": 0.8, "emotion": "angry"}]).encode()),
]
BAD_OPTIONS: list[tuple[dict[str, str], bytes | None]] = [
    ({"articulation": "9"}, None),
    ({"emotion": "glee"}, None),
    ({"size": "abc"}, None),
    ({"size": "inf"}, None),
    ({"seed": "1e400"}, None),
    ({"size": "5"}, None),
    ({"crop": "sideways"}, None),
    ({"fps": "0"}, None),
    ({}, b'[{"start": 1}]'),
    ({}, b"[" * 50_000),                 # nested deeper than the JSON parser recurses
]


# --- the server process --------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    """``pid`` and all its descendants (worker processes, should the server ever use any)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(parents.get(p, []))
    return tree


class ServerProcess:
    """``ventriloquist serve`` in a process of its own, with a fresh TMPDIR that holds its jobs folder."""

    def __init__(self, root: Path, *flags: str):
        self.tmpdir = root / "tmp"
        self.tmpdir.mkdir()
        self.log_path = root / "server.log"
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "TMPDIR": str(self.tmpdir)}
        env.pop("VENTRILOQUIST_API_KEY", None)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "ventriloquist.cli", "serve", "--port", str(port),
                                          *flags], env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"the server did not start within 180 s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def workdir(self) -> Path:
        """The jobs folder: the server's own temporary folder, the one thing it should make in TMPDIR."""
        folders = list(self.tmpdir.glob("ventriloquist-jobs-*"))
        assert len(folders) == 1, folders
        return folders[0]

    def rss_mb(self) -> float:
        total = 0
        for pid in _children(self.proc.pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        return total / 1024

    def open_files(self) -> list[str]:
        """What the server holds open apart from sockets and pipes (which keep-alive clients account for)."""
        held = []
        for fd in Path(f"/proc/{self.proc.pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if not target.startswith(("socket:", "pipe:", "anon_inode:")):
                held.append(target)
        return held

    def stop(self) -> int:
        """Stop it as Ctrl-C would (so it removes its temporary folder); kill it if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def server(tmp_path):
    s = ServerProcess(tmp_path, "--workers", str(WORKERS), "--max-queued", str(MAX_QUEUED),
                      "--max-upload-mb", str(UPLOAD_MB), "--time-limit", "120", "--keep", "900")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def speech(speech_wav, tmp_path_factory) -> Path:
    """The first second of the shared espeak-ng speech: each job takes well under a second of CPU."""
    import soundfile as sf
    data, sr = sf.read(speech_wav, dtype="int16")
    path = tmp_path_factory.mktemp("load") / "speech.wav"
    sf.write(path, data[: int(SPEECH_S * sr)], sr, subtype="PCM_16")
    return path


# --- the requests ----------------------------------------------------------------------------------------
@dataclass
class Sent:
    kind: str
    status: int | None              # None: the connection failed
    latency_s: float
    detail: str = ""
    job: str | None = None          # the job a valid request made, a poll read or a cancel hit
    state: str | None = None        # that job's status in the reply
    options: dict = field(default_factory=dict)


class Load:
    """Builds and sends the mixed requests; keeps the jobs they made so polls and cancels can use them."""

    def __init__(self, url: str, face: bytes, speech: bytes):
        self.url, self.face, self.speech = url, face, speech
        self.accepted: list[str] = []
        self.options: dict[str, dict] = {}
        self.cancelled: set[str] = set()
        self.lock = threading.Lock()
        self.local = threading.local()
        self.clients: list[httpx.Client] = []

    def client(self) -> httpx.Client:
        """One keep-alive client per thread, as separate users would have."""
        if not hasattr(self.local, "client"):
            self.local.client = httpx.Client(base_url=self.url, timeout=120)
            with self.lock:
                self.clients.append(self.local.client)
        return self.local.client

    def close(self) -> None:
        for c in self.clients:
            c.close()

    def files(self, face: bytes | None = None, audio: bytes | None = None, timeline: bytes | None = None) -> dict:
        files = {"face": ("face.png", self.face if face is None else face),
                 "audio": ("speech.wav", self.speech if audio is None else audio)}
        if timeline is not None:
            files["timeline"] = ("timeline.json", timeline)
        return files

    def pick(self, cancel: str | None = None) -> str:
        """A job made by an earlier request and not cancelled: any for a poll; for a cancel the newest
        (likely queued) or the oldest (likely running, or done and so deleted). Waits for one, since
        the mix starts with valid requests."""
        deadline = time.time() + 60
        while time.time() < deadline:
            with self.lock:
                live = [j for j in self.accepted if j not in self.cancelled]
                if live:
                    job = {"newest": live[-1], "oldest": live[0], None: random.choice(live)}[cancel]
                    if cancel:
                        self.cancelled.add(job)         # before the DELETE, so a poll's 404 can be judged
                    return job
            time.sleep(0.05)
        raise AssertionError("no job was accepted to poll or cancel")

    def request(self, kind: str, i: int) -> tuple[str, str, dict, dict]:
        """(method, path, httpx arguments, options) for the ``i``-th request of ``kind``."""
        if kind == "valid":
            options, timeline = VALID[i % len(VALID)]
            return "POST", "/v1/videos", {"files": self.files(timeline=timeline), "data": options}, options
        if kind == "poll":
            return "GET", f"/v1/videos/{self.pick()}", {}, {}
        if kind == "cancel":
            return "DELETE", f"/v1/videos/{self.pick('oldest' if i % 2 else 'newest')}", {}, {}
        if kind == "oversized":
            big = b"\0" * (3 * 2 ** 20)
            if i % 2:                                   # chunked, no Content-Length: refused as it streams in
                chunks = [big[k:k + 2 ** 16] for k in range(0, len(big), 2 ** 16)]
                return "POST", "/v1/videos", {"content": iter(chunks),
                                              "headers": {"content-type": "multipart/form-data; boundary=x"}}, {}
            return "POST", "/v1/videos", {"files": self.files(audio=big)}, {}
        if kind == "wrong_type":
            text = b"not an image and not a sound\n" * 40
            noise = np.random.default_rng(i).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
            face, audio = [(text, None), (None, self.face), (None, noise), (b"", None)][i % 4]
            return "POST", "/v1/videos", {"files": self.files(face=face, audio=audio)}, {}
        if kind == "malformed":
            return "POST", "/v1/videos", self.malformed(i), {}
        if kind == "bad_option":
            options, timeline = BAD_OPTIONS[i % len(BAD_OPTIONS)]
            return "POST", "/v1/videos", {"files": self.files(timeline=timeline), "data": options}, options
        if kind == "unknown_id":
            job = [secrets.token_hex(8), "..%2F..%2Fetc%2Fpasswd", "%00", "a" * 300][i % 4]
            method, suffix = [("GET", ""), ("GET", "/result"), ("GET", "/emotions"), ("DELETE", "")][(i // 4) % 4]
            return method, f"/v1/videos/{job}{suffix}", {}, {}
        raise ValueError(kind)

    def malformed(self, i: int) -> dict:
        good = httpx.Request("POST", self.url, files=self.files())
        body = good.read()
        multipart = good.headers["content-type"]
        bodies = [
            (b"--x\r\nbroken", "multipart/form-data; boundary=x"),
            (b"\x00garbage\xff" * 100, "multipart/form-data"),                     # no boundary at all
            (b"\x00garbage\xff" * 100, "multipart/form-data; boundary="),
            (body, "multipart/form-data; boundary=not-the-one-used"),
            (body[: len(body) // 2], multipart),                                     # cut off mid-file
            (b'{"face": "x", "audio": "y"}', "application/json"),
        ]
        if i % 8 < len(bodies):
            content, ctype = bodies[i % 8]
            return {"content": content, "headers": {"content-type": ctype}}
        if i % 8 == 6:                                                              # no audio part
            return {"files": {"face": ("face.png", self.face)}}
        return {"data": {"face": "a field, not a file", "audio": "nor this"}}

    def download_or_delete(self, job: str, what: str) -> tuple[str, str, int | None, bytes]:
        """A download of the job's video or emotions, or its DELETE, sent alongside each other."""
        try:
            if what == "delete":
                r = self.client().delete(f"/v1/videos/{job}")
            else:
                r = self.client().get(f"/v1/videos/{job}/{what}")
        except httpx.TransportError as exc:
            return job, what, None, repr(exc).encode()
        return job, what, r.status_code, r.content

    def send(self, kind: str, i: int) -> Sent:
        method, path, kwargs, options = self.request(kind, i)
        t0 = time.perf_counter()
        try:
            r = self.client().request(method, path, **kwargs)
        except httpx.TransportError as exc:
            return Sent(kind, None, time.perf_counter() - t0, repr(exc))
        sent = Sent(kind, r.status_code, time.perf_counter() - t0, r.text[:300], options=options)
        if kind in ("poll", "cancel"):
            sent.job = path.rsplit("/", 1)[1]
            sent.state = r.json().get("status") if r.status_code == 200 else None
        if kind == "valid" and r.status_code == 202:
            sent.job = r.json()["id"]
            with self.lock:
                self.accepted.append(sent.job)
                self.options[sent.job] = options
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
        return sent


def _schedule(seed: int = 0) -> list[tuple[str, int]]:
    """The 200 (kind, index) pairs in a fixed shuffled order, the first few valid so the queue fills."""
    items = [(kind, i) for kind, (n, _) in MIX.items() for i in range(n)]
    first = [it for it in items if it[0] == "valid"][:CONCURRENCY]
    rest = [it for it in items if it not in first]
    random.Random(seed).shuffle(rest)
    return first + rest


# --- checks --------------------------------------------------------------------------------------------
def _wait(client: httpx.Client, job: str, timeout: float = 180.0) -> dict | None:
    """The job's final status, or None once it is gone (a finished job that a cancel deleted)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = client.get(f"/v1/videos/{job}")
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        if r.json()["status"] in ("done", "failed", "cancelled"):
            return r.json()
        time.sleep(0.2)
    raise AssertionError(f"job {job} did not finish in {timeout:g} s")


def _check_video(path: Path, size: int, fps: float, duration_s: float) -> None:
    """An MP4 that decodes: video of the requested size and rate as long as the speech, and sound."""
    with av.open(str(path)) as f:
        assert f.format.name.startswith("mov"), f.format.name
        video = f.streams.video[0]
        assert max(video.width, video.height) == size, (video.width, video.height)
        assert f.streams.audio, "no audio stream"
        assert abs(f.duration / 1e6 - duration_s) <= 0.1, f.duration / 1e6
        frames = sum(1 for _ in f.decode(video=0))
    assert abs(frames - fps * duration_s) <= max(2, 0.1 * fps), frames


def _settle(measure: Callable[[], float], limit: float, timeout: float = 20.0) -> float:
    """``measure()`` once it is at most ``limit``, or its last reading after ``timeout`` seconds."""
    deadline = time.time() + timeout
    value = measure()
    while value > limit and time.time() < deadline:
        time.sleep(0.5)
        value = measure()
    return value


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def test_the_server_under_load(server, face_path, speech, tmp_path):
    t_start = time.time()
    face, audio = face_path.read_bytes(), speech.read_bytes()
    workdir = server.workdir
    client = httpx.Client(base_url=server.url, timeout=120)
    with av.open(str(speech)) as f:
        speech_s = f.duration / 1e6

    # Warm-up: one job per worker, so the models are loaded and each worker has rendered once.
    warm = [client.post("/v1/videos", files={"face": ("f.png", face), "audio": ("s.wav", audio)},
                        data={"size": size}) for size in ("96", "128")]
    assert all(r.status_code == 202 for r in warm), [r.text for r in warm]
    for r in warm:
        assert _wait(client, r.json()["id"])["status"] == "done"
        assert client.get(f"/v1/videos/{r.json()['id']}/result").status_code == 200
        assert client.delete(f"/v1/videos/{r.json()['id']}").status_code == 200
    time.sleep(1.0)
    idle_mb, idle_files = server.rss_mb(), server.open_files()

    peak = [idle_mb]
    sampling = threading.Event()

    health: list[float] = []                    # how long /v1/health takes while the server is under load

    def sample() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as probe:
            while not sampling.wait(0.2):
                peak.append(server.rss_mb())
                t0 = time.perf_counter()
                probe.get("/v1/health")
                health.append(time.perf_counter() - t0)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    load = Load(server.url, face, audio)
    t_load = time.time()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        sent = list(pool.map(lambda item: load.send(*item), _schedule()))
    with ThreadPoolExecutor(BURST) as pool:     # then 50 valid uploads at once: most meet a full queue (429)
        burst = list(pool.map(lambda i: load.send("valid", 1000 + i), range(BURST)))
    load_s = time.time() - t_load

    # Every valid job not cancelled is done, and its video is right.
    videos = tmp_path / "videos"
    videos.mkdir()
    done, cancel_outcomes = 0, Counter()
    for job in load.accepted:
        st = _wait(client, job)
        options = load.options[job]
        if job in load.cancelled:
            cancel_outcomes[st["status"] if st else "deleted"] += 1
            assert st is None or st["status"] in ("cancelled", "done"), st
            if st and st["status"] == "cancelled":
                assert client.get(f"/v1/videos/{job}/result").status_code == 409
                assert not (workdir / job / "video.mp4").exists() and not (workdir / job / "emotions.csv").exists()
            continue
        assert st is not None and st["status"] == "done", st
        r = client.get(f"/v1/videos/{job}/result")
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
        (videos / f"{job}.mp4").write_bytes(r.content)
        _check_video(videos / f"{job}.mp4", int(options["size"]), float(options.get("fps", 25)), speech_s)
        track = client.get(f"/v1/videos/{job}/emotions")
        assert track.status_code == 200 and track.content.strip()
        done += 1
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        raced = list(pool.map(lambda task: load.download_or_delete(*task),
                              [(job, what) for job in load.accepted for what in ("result", "emotions", "result", "delete")]))
    sampling.set()
    sampler.join()

    # Memory back near idle (the server and its render processes). glibc keeps freed memory in the arenas
    # of the threads that used it, and the concurrent uploads touch arenas the warm-up never did: the
    # server trims them after each upload's checks (without the trim, 50 uploads at once left +131 MB). A
    # render process keeps what its largest video needed (261 -> 290 MB from 96-px to 512-px jobs, no more
    # after). Together they end 60-65 MB above idle, a plateau, not growth per job (a clean clone once read
    # 80.1); 100 MB is allowed: keeping 1 MB per job (a photo and its frames) for the ~40 jobs accepted
    # would cross it.
    limit_mb = idle_mb + 100.0
    after_mb = _settle(server.rss_mb, limit_mb)
    after_files = server.open_files()

    statuses = Counter(s.status for s in sent)
    latencies = [s.latency_s for s in sent]
    report = {
        "requests": len(sent),
        "concurrency": CONCURRENCY,
        "status_counts": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
        "by_kind": {kind: dict(Counter(str(s.status) for s in sent if s.kind == kind)) for kind in MIX},
        "burst": {"posts": BURST, "status_counts": dict(Counter(str(b.status) for b in burst))},
        "health_ms": {"samples": len(health), "p95": round(1e3 * _percentile(health, 95), 1)},
        "latency_ms": {"p50": round(1e3 * _percentile(latencies, 50), 1),
                       "p95": round(1e3 * _percentile(latencies, 95), 1),
                       "max": round(1e3 * max(latencies), 1)},
        "deleted_while_downloading": dict(Counter(f"{what} {status}" for _, what, status, _ in raced)),
        "jobs_accepted": len(load.accepted),
        "valid_jobs_done": done,
        "cancel_replies": dict(Counter(str(s.state) for s in sent if s.kind == "cancel")),
        "cancelled_jobs": dict(cancel_outcomes),
        "memory_mb": {"idle": round(idle_mb, 1), "peak": round(max(peak), 1), "after": round(after_mb, 1),
                      "limit": round(limit_mb, 1)},
        "open_files": {"idle": len(idle_files), "after": len(after_files)},
        "load_s": round(load_s, 1),
        "total_s": round(time.time() - t_start, 1),
    }
    print("\nserver load report:", json.dumps(report, indent=2))
    if os.environ.get(REPORT_ENV):
        Path(os.environ[REPORT_ENV]).write_text(json.dumps(report, indent=2) + "\n")

    assert {b.status for b in burst} <= {202, 429} and _percentile(health, 95) < 0.5, (report["burst"], report["health_ms"])
    failed = [s for s in sent if s.status is None or s.status >= 500]
    assert not failed, [(s.kind, s.status, s.detail) for s in failed]
    wrong = [s for s in sent if s.status not in MIX[s.kind][1]
             and not (s.kind == "poll" and s.status == 404 and s.job in load.cancelled)]
    assert not wrong, [(s.kind, s.status, s.options, s.detail) for s in wrong]
    assert not [s for s in sent if str(server.tmpdir) in s.detail], "a response shows the server's folders"
    for job, what, status, body in raced:         # deleted while downloaded: each download whole, or a 404
        finished = (videos / f"{job}.mp4").exists()
        if what == "delete":
            assert status == 200 or (status == 404 and job in load.cancelled), (job, status, body)
        elif status == 200 and what == "result" and finished:
            assert body == (videos / f"{job}.mp4").read_bytes(), f"a download of {job} was cut short"
        else:
            assert status in ((200, 404) if finished else (200, 404, 409)), (job, what, status, body[:300])
    assert done >= 5 and cancel_outcomes, (done, cancel_outcomes)
    assert server.proc.poll() is None and client.get("/v1/health").json()["queued"] == 0
    assert after_mb <= limit_mb, report["memory_mb"]
    assert sorted(after_files) == sorted(idle_files), "the server still holds files open"
    assert list(workdir.iterdir()) == [], "deleted jobs left files"
    assert list(server.tmpdir.iterdir()) == [workdir], "files outside the jobs folder"
    client.close()
    load.close()

    assert server.stop() == 0
    assert list(server.tmpdir.iterdir()) == [], "the jobs folder outlived the server"
    log = server.log()
    assert "Traceback" not in log, log[-3000:]
