"""Throughput of the server and of batch mode, as ratios (for the closing notes and the README).

* server: ``ventriloquist serve`` in a subprocess, N jobs of S seconds of speech posted at once,
  wall time until the last is done -> jobs per minute, and the server's peak RSS;
* batch: the same N rows through ``ventriloquist batch`` vs ``ventriloquist generate`` run once
  per row (a fresh process each) -> the speed-up.

    python tools/throughput.py --jobs 20 --seconds 7
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from ventriloquist.audio import load_audio
from ventriloquist.demo import DEMO_SPEECH, demo_face


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def server(n: int, wav: Path, size: int, workers: int) -> dict:
    import httpx
    port = _port()
    proc = subprocess.Popen([sys.executable, "-m", "ventriloquist.cli", "serve", "--port", str(port),
                             "--workers", str(workers), "--max-queued", str(n)], stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()                                  # "serving on ..." once the models are loaded
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
            t0 = time.perf_counter()
            ids = [c.post("/v1/videos", files={"face": ("f", demo_face().read_bytes()), "audio": ("a", wav.read_bytes())},
                          data={"size": str(size), "crop": "face"}).json()["id"] for _ in range(n)]
            while any(c.get(f"/v1/videos/{i}").json()["status"] in ("queued", "running") for i in ids):
                time.sleep(0.5)
            wall = time.perf_counter() - t0
            done = sum(c.get(f"/v1/videos/{i}").json()["status"] == "done" for i in ids)
        return {"jobs": n, "done": done, "wall_s": round(wall, 1), "jobs_per_min": round(60 * done / wall, 2),
                "peak_rss_mb": round(_peak_rss_mb(proc.pid), 0), "workers": workers}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def batch(n: int, wav: Path, size: int, tmp: Path) -> dict:
    manifest = tmp / "rows.csv"
    manifest.write_text("face,audio,out,size,crop\n" + "".join(
        f"{demo_face()},{wav},v{i}.mp4,{size},face\n" for i in range(n)))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ventriloquist.cli", "batch", str(manifest), "--out", str(tmp / "batch"),
                    "--quiet"], check=True)
    t_batch = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(n):
        subprocess.run([sys.executable, "-m", "ventriloquist.cli", "generate", "--face", str(demo_face()), "--audio",
                        str(wav), "--out", str(tmp / f"cli{i}.mp4"), "--size", str(size), "--crop", "face", "--quiet"],
                       check=True)
    t_cli = time.perf_counter() - t0
    return {"rows": n, "batch_s": round(t_batch, 1), "cli_per_row_s": round(t_cli, 1),
            "speed_up": round(t_cli / t_batch, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=7.0)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--workers", type=int, default=1, help="server worker threads")
    ap.add_argument("--batch-rows", type=int, default=10)
    a = ap.parse_args()
    y = load_audio(DEMO_SPEECH)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wav = tmp / "speech.wav"
        sf.write(wav, np.tile(y, int(a.seconds * 16000 / len(y)) + 1)[: int(a.seconds * 16000)], 16000)
        print("server:", server(a.jobs, wav, a.size, a.workers), flush=True)
        print("batch:", batch(a.batch_rows, wav, a.size, tmp), flush=True)


if __name__ == "__main__":
    main()
