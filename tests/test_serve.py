"""The REST server, over real HTTP on 127.0.0.1: jobs, limits, content checks, cancellation, API key."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
from test_app import chromium  # noqa: E402  (Debian's Chromium, as the app's test drives it)


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium whose every connection but 127.0.0.1 goes to a proxy that does not exist: offline."""
    driver = chromium(tmp_path, "--proxy-server=http://127.0.0.1:9")
    yield driver
    driver.quit()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server in a thread of this process (its render processes are its own)."""

    def __init__(self, tmp: Path, **cfg):
        import uvicorn

        from ventriloquist.serve.api import ServerConfig, create_app
        from ventriloquist.serve.jobs import JobQueue
        self.cfg = ServerConfig(port=_free_port(), workdir=tmp / "jobs", **cfg)
        self.jobs = JobQueue(self.cfg.workdir, workers=self.cfg.workers,
                             max_queued=self.cfg.max_queued, time_limit_s=self.cfg.time_limit_s, keep_s=self.cfg.keep_s)
        self.server = uvicorn.Server(uvicorn.Config(create_app(self.cfg, self.jobs), host="127.0.0.1",
                                                    port=self.cfg.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.cfg.port}"
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.jobs.close()


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path, max_upload_mb=2.0, max_queued=2, keep_s=60.0)
    yield s
    s.close()


@pytest.fixture(scope="module")
def small_face(tmp_path_factory, face_image, face_landmarks) -> Path:
    """The shipped portrait cropped to its face at 160 px: quick to render, still a clear face."""
    import cv2
    x0, y0 = face_landmarks.min(0).astype(int) - 40
    x1, y1 = face_landmarks.max(0).astype(int) + 40
    crop = cv2.resize(face_image[max(0, y0):y1, max(0, x0):x1], (160, 160), interpolation=cv2.INTER_AREA)
    path = tmp_path_factory.mktemp("face") / "face.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    return path


def _files(face: Path, audio: Path, face_name: str = "face.jpg", audio_name: str = "speech.wav") -> dict:
    return {"face": (face_name, face.read_bytes()), "audio": (audio_name, audio.read_bytes())}


def _wait(client, job_id: str, timeout: float = 120.0) -> dict:
    t0 = time.time()
    while time.time() - t0 < timeout:
        st = client.get(f"/v1/videos/{job_id}").json()
        if st["status"] in ("done", "failed", "cancelled"):
            return st
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {st}")


def test_a_job_from_upload_to_video(server, small_face, speech_wav, tmp_path):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        assert c.get("/v1/health").json()["status"] == "ok"
        assert "/v1/videos" in c.get("/openapi.json").json()["paths"] and c.get("/docs").status_code == 200
        r = c.post("/v1/videos", files=_files(small_face, speech_wav), data={"size": "128", "expression": "0.5"})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["status"] in ("queued", "running") and job["options"] == {"size": "128", "expression": "0.5"}
        early = c.get(job["result_url"])
        assert early.status_code in (200, 409)
        st = _wait(c, job["id"])
        assert st["status"] == "done" and st["progress"] == 1.0
        video = c.get(job["result_url"])
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        out = tmp_path / "got.mp4"
        out.write_bytes(video.content)
        with av.open(str(out)) as f:
            assert f.streams.video[0].height == 128 and f.duration > 1e6
        assert c.delete(f"/v1/videos/{job['id']}").status_code == 200       # a finished job is deleted ...
        assert c.get(f"/v1/videos/{job['id']}").status_code == 404          # ... with its files
        assert not (server.cfg.workdir / job["id"]).exists()


def test_uploads_are_judged_by_content_and_size(server, small_face, speech_wav, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image and not a sound\n" * 20)
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * (3 * 2 ** 20))
    with httpx.Client(base_url=server.url, timeout=60) as c:
        # names lie: a text file called photo.jpg, a photo called speech.wav
        r = c.post("/v1/videos", files={"face": ("photo.jpg", text.read_bytes()), "audio": ("s.wav", speech_wav.read_bytes())})
        assert r.status_code == 415 and "face is neither an image nor a video" in r.json()["detail"]
        r = c.post("/v1/videos", files=_files(small_face, small_face, audio_name="speech.wav"))
        assert r.status_code == 415 and "audio is not a sound file" in r.json()["detail"]
        r = c.post("/v1/videos", files=_files(small_face, big))
        assert r.status_code == 413 and "larger than 2 MB" in r.json()["detail"]
        r = c.post("/v1/videos", files=_files(small_face, speech_wav), data={"articulation": "9"})
        assert r.status_code == 422 and "articulation" in r.json()["detail"]
        r = c.post("/v1/videos", files={"face": ("f.jpg", small_face.read_bytes())})
        assert r.status_code == 422                                            # no audio part
        r = c.post("/v1/videos", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"})
        assert 400 <= r.status_code < 500
        assert c.get("/v1/videos/doesnotexist").status_code == 404
    assert list((server.cfg.workdir).iterdir()) == []                          # refused uploads leave nothing


def test_a_video_upload_is_dubbed(server, small_face, speech_wav, tmp_path):
    """A video as the face (its content says so, whatever its name): every frame kept, speaking the audio."""
    from ventriloquist.pipeline import Ventriloquist
    clip = tmp_path / "clip.mp4"
    Ventriloquist().generate(small_face, clip, audio=speech_wav, progress=False)
    with httpx.Client(base_url=server.url, timeout=60) as c:
        r = c.post("/v1/videos", files=_files(clip, speech_wav, face_name="upload.bin"), data={"video_end": "keep"})
        assert r.status_code == 202, r.text
        st = _wait(c, r.json()["id"])
        assert st["status"] == "done", st
        out = tmp_path / "dubbed.mp4"
        out.write_bytes(c.get(r.json()["result_url"]).content)
    with av.open(str(out)) as f, av.open(str(clip)) as g:
        assert f.streams.video[0].height == g.streams.video[0].height
        assert abs(f.streams.video[0].frames - g.streams.video[0].frames) <= 1
        assert f.streams.audio


def test_a_full_queue_says_when_to_retry_and_jobs_can_be_cancelled(server, small_face, speech_wav):
    ids, refused = [], None
    with httpx.Client(base_url=server.url, timeout=60) as c:
        for _ in range(5):                 # one runs, two wait, the rest are refused
            r = c.post("/v1/videos", files=_files(small_face, speech_wav), data={"size": "128"})
            if r.status_code == 429:
                refused = r
                break
            assert r.status_code == 202
            ids.append(r.json()["id"])
        assert refused is not None and int(refused.headers["Retry-After"]) >= 1
        cancelled = c.delete(f"/v1/videos/{ids[-1]}").json()
        assert cancelled["status"] == "cancelled"
        assert c.get(f"/v1/videos/{ids[-1]}/result").status_code == 409
        assert _wait(c, ids[0])["status"] == "done"
        assert _wait(c, ids[-1])["status"] == "cancelled"
    assert not (server.cfg.workdir / ids[-1] / "video.mp4").exists()


def test_a_running_job_is_cancelled_and_a_slow_one_times_out(tmp_path, small_face, speech_wav):
    s = Server(tmp_path, time_limit_s=0.5)
    try:
        with httpx.Client(base_url=s.url, timeout=60) as c:
            r = c.post("/v1/videos", files=_files(small_face, speech_wav), data={"size": "512"})
            st = _wait(c, r.json()["id"])
            assert st["status"] == "failed" and "time limit" in st["error"]
            s.jobs.time_limit_s = 600
            job = c.post("/v1/videos", files=_files(small_face, speech_wav), data={"size": "512"}).json()
            while c.get(f"/v1/videos/{job['id']}").json()["status"] == "queued":
                time.sleep(0.05)
            c.delete(f"/v1/videos/{job['id']}")
            assert _wait(c, job["id"])["status"] == "cancelled"
            assert not (s.cfg.workdir / job["id"] / "video.mp4").exists()
    finally:
        s.close()


def test_an_api_key_guards_the_jobs(tmp_path, small_face, speech_wav):
    s = Server(tmp_path, api_key="s3cret")
    try:
        with httpx.Client(base_url=s.url, timeout=60) as c:
            assert c.get("/v1/health").status_code == 200
            assert c.post("/v1/videos", files=_files(small_face, speech_wav)).status_code == 401
            assert c.get("/v1/videos/x", headers={"X-API-Key": "wrong"}).status_code == 401
            r = c.post("/v1/videos", files=_files(small_face, speech_wav), data={"size": "128"},
                       headers={"Authorization": "Bearer s3cret"})
            assert r.status_code == 202
            assert _wait(httpx.Client(base_url=s.url, headers={"X-API-Key": "s3cret"}), r.json()["id"])["status"] == "done"
    finally:
        s.close()


def test_finished_jobs_are_removed_after_their_time(tmp_path, small_face, speech_wav):
    s = Server(tmp_path, keep_s=0.2)
    try:
        with httpx.Client(base_url=s.url, timeout=60) as c:
            job = c.post("/v1/videos", files=_files(small_face, speech_wav), data={"size": "128"}).json()
            st = {}
            for _ in range(600):
                st = s.jobs.jobs.get(job["id"]).public() if job["id"] in s.jobs.jobs else {"status": "gone"}
                if st["status"] == "done":
                    break
                time.sleep(0.1)
            assert st["status"] == "done"
            time.sleep(0.4)
            assert c.get(f"/v1/videos/{job['id']}").status_code == 404
            assert not (s.cfg.workdir / job["id"]).exists()
    finally:
        s.close()


def test_a_job_with_a_chosen_emotion_a_timeline_and_its_emotion_track(server, small_face, speech_wav):
    import json

    from ventriloquist.emotion.timeline import load_timeline
    from ventriloquist.emotion.vocabulary import INDEX
    timeline = json.dumps([{"start": 0.4, "end": 1.2, "emotion": "angry"}]).encode()
    with httpx.Client(base_url=server.url, timeout=60) as c:
        r = c.post("/v1/videos", files={**_files(small_face, speech_wav), "timeline": ("../../etc/t.txt", timeline)},
                   data={"size": "128", "emotion": "sad", "emotion_intensity": "0.8"})
        assert r.status_code == 202, r.text
        job = r.json()
        assert _wait(c, job["id"])["status"] == "done"
        track = c.get(f"/v1/videos/{job['id']}/emotions")
        assert track.status_code == 200 and track.headers["content-type"].startswith("text/csv")
        saved = server.cfg.workdir / job["id"] / "got.csv"
        saved.write_bytes(track.content)
        segs = load_timeline(saved)
        assert segs[0].weights[INDEX["sad"]] == 1 and segs[0].intensity == pytest.approx(0.8)
        assert segs[20].weights[INDEX["angry"]] == 1                    # 0.8 s: inside the uploaded range
        bad = c.post("/v1/videos", files={**_files(small_face, speech_wav), "timeline": ("t.json", b"[{\"start\": 1}]")})
        assert bad.status_code == 422 and "start and end" in bad.json()["detail"]
        assert str(server.cfg.workdir) not in bad.json()["detail"]       # the server's folders stay private
        bad = c.post("/v1/videos", files=_files(small_face, speech_wav), data={"emotion": "glee"})
        assert bad.status_code == 422 and "unknown emotion 'glee'" in bad.json()["detail"]


def _silence_flac(path: Path, seconds: float) -> Path:
    """Digital silence, written in blocks (an hour is a small FLAC and never all in memory)."""
    import soundfile as sf
    block = np.zeros(16000 * 60, np.int16)
    with sf.SoundFile(str(path), "w", samplerate=16000, channels=1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(int(seconds // 60)):
            f.write(block)
    return path


def test_a_time_limit_and_a_cancel_stop_a_job_in_any_stage(tmp_path, small_face, speech_wav):
    """An hour of silence stops at its time limit wherever it is (decoding, hearing, rendering), frees the
    worker for the next job, and a DELETE stops a running job within two seconds; its uploads are gone."""
    hour = _silence_flac(tmp_path / "hour.flac", 3600)
    s = Server(tmp_path, time_limit_s=4.0, max_upload_mb=20.0)
    try:
        with httpx.Client(base_url=s.url, timeout=60) as c:
            long = c.post("/v1/videos", files=_files(small_face, hour, audio_name="hour.flac")).json()
            nxt = c.post("/v1/videos", files=_files(small_face, speech_wav), data={"size": "128"}).json()
            while c.get(f"/v1/videos/{long['id']}").json()["status"] == "queued":
                time.sleep(0.05)
            # a job's limit is set as it starts: the next one, which must start a fresh render process (models
            # loaded, about 3 s here), is not held to 4 s
            s.jobs.time_limit_s = 600
            st = _wait(c, long["id"], timeout=30)
            assert st["status"] == "failed" and "time limit" in st["error"]
            assert st["finished"] - st["started"] < 4.0 + 2.0
            assert _wait(c, nxt["id"])["status"] == "done"
            job = c.post("/v1/videos", files=_files(small_face, hour, audio_name="hour.flac")).json()
            while c.get(f"/v1/videos/{job['id']}").json()["status"] == "queued":
                time.sleep(0.05)
            time.sleep(1.0)
            t0 = time.time()
            c.delete(f"/v1/videos/{job['id']}")
            st = _wait(c, job["id"], timeout=10)
            assert st["status"] == "cancelled" and st["finished"] - t0 < 2.0
            assert sorted(p.name for p in (s.cfg.workdir / job["id"]).iterdir()) == []
    finally:
        s.close()


def test_a_render_process_that_dies_fails_its_job_and_the_next_one_runs(tmp_path, small_face, speech_wav):
    import os
    import signal
    s = Server(tmp_path)
    try:
        with httpx.Client(base_url=s.url, timeout=60) as c:
            hour = _silence_flac(tmp_path / "long.flac", 1200)
            job = c.post("/v1/videos", files=_files(small_face, hour, audio_name="long.flac")).json()
            renderer = s.jobs._renderers[0]
            while (c.get(f"/v1/videos/{job['id']}").json()["status"] == "queued" or renderer.process is None
                   or renderer.process.pid is None):
                time.sleep(0.05)                    # the job is marked running just before its process starts
            os.kill(renderer.process.pid, signal.SIGKILL)                   # as the OOM killer would
            st = _wait(c, job["id"], timeout=20)
            assert st["status"] == "failed" and "render process was killed by signal 9" in st["error"]
            again = c.post("/v1/videos", files=_files(small_face, speech_wav), data={"size": "128"}).json()
            assert _wait(c, again["id"])["status"] == "done"
    finally:
        s.close()


def test_photos_are_judged_from_their_header_as_the_cli_judges_them(server, small_face, speech_wav, tmp_path):
    """A decompression bomb is refused (413) from its header, in little memory; a PNG with a bad CRC the
    CLI renders is accepted; a queued job that is deleted leaves no upload; a huge option value is not
    echoed back."""
    import resource
    import subprocess
    import sys
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + (zlib.crc32(kind + data) & 0xFFFFFFFF).to_bytes(4, "big")
    z = zlib.compressobj(9)
    rows = b"".join(z.compress(b"\0" * (1 + 3 * 20000)) for _ in range(20000)) + z.flush()
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", (20000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0]))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    code = ("import sys, resource; from ventriloquist.serve.api import _check_face, _TooLarge\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try: _check_face(__import__('pathlib').Path(sys.argv[1]))\nexcept _TooLarge: pass\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)")
    grew_kb = int(subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True,
                                 check=True).stdout.split()[-1])
    assert grew_kb < 100 * 1024
    with httpx.Client(base_url=server.url, timeout=60) as c:
        r = c.post("/v1/videos", files=_files(bomb, speech_wav, face_name="bomb.png"))
        assert r.status_code == 413 and "too many" in r.json()["detail"]
        png = bytearray(cv2_png(small_face))
        at = png.find(b"IDAT")
        end = at + 4 + int.from_bytes(png[at - 4:at], "big")
        png[end:end + 4] = b"\0\0\0\0"                                # the image data's CRC, wrong
        bad = tmp_path / "bad_crc.png"
        bad.write_bytes(bytes(png))
        from ventriloquist.cli import main
        assert main(["generate", "--face", str(bad), "--audio", str(speech_wav), "--out", str(tmp_path / "b.mp4"),
                     "--size", "96", "--quiet"]) == 0
        first = c.post("/v1/videos", files=_files(bad, speech_wav, face_name="bad.png"), data={"size": "128"})
        assert first.status_code == 202
        queued = c.post("/v1/videos", files=_files(small_face, speech_wav), data={"size": "128"}).json()
        assert c.delete(f"/v1/videos/{queued['id']}").json()["status"] == "cancelled"
        assert list((server.cfg.workdir / queued["id"]).iterdir()) == []
        r = c.post("/v1/videos", files=_files(small_face, speech_wav), data={"size": "x" * 100_000})
        assert r.status_code == 422 and len(r.text) < 300 and "100000 characters" in r.text


def cv2_png(path: Path) -> bytes:
    import cv2
    ok, buf = cv2.imencode(".png", cv2.imread(str(path)))
    return buf.tobytes()


def test_the_schema_says_what_each_field_is(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        schema = c.get("/openapi.json").json()
    post = schema["paths"]["/v1/videos"]["post"]
    ref = post["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].split("/")[-1]
    fields = schema["components"]["schemas"][ref]["properties"]
    assert fields["size"]["type"] == "integer" and (fields["size"]["minimum"], fields["size"]["maximum"]) == (16, 4096)
    assert fields["expression"]["type"] == "number" and fields["expression"]["default"] == 1.0
    assert "happy" in fields["emotion"]["enum"] and fields["crop"]["enum"] == ["full", "face"]
    assert {"401", "413", "415", "422", "429"} <= set(post["responses"])
    assert {"401", "404", "409"} <= set(schema["paths"]["/v1/videos/{job_id}/result"]["get"]["responses"])
    assert {"APIKeyHeader", "HTTPBearer"} <= set(schema["components"]["securitySchemes"])


def test_the_docs_page_works_offline(server, browser):
    """/docs is Swagger UI from the package: the page names nothing off this server, and a headless browser
    that may reach nothing else (its proxy points nowhere) renders the API's operations."""
    from selenium.webdriver.common.by import By
    with httpx.Client(base_url=server.url, timeout=60) as c:
        page = c.get("/docs").text
        assert "cdn." not in page and "https://" not in page
    browser.get(server.url + "/docs")
    t0 = time.time()
    while time.time() - t0 < 60 and not browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"):
        time.sleep(0.25)
    paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert "/v1/videos" in paths and "/v1/videos/{job_id}/result" in paths
