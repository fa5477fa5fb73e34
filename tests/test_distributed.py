"""Past one machine, run for real on this one: `prepare` and `batch` on a local Ray runtime of two
workers, the cache's tar shards, and training under `torchrun --nproc_per_node 2`."""
from __future__ import annotations

import csv
import tarfile
from pathlib import Path

import numpy as np
import pytest

from ventriloquist.config import FPS, SAMPLE_RATE
from ventriloquist.data import cache
from ventriloquist.data.prepare import prepare

FIELDS = ("landmarks", "shapes", "pose", "mel", "mfcc", "energy", "artic")


def _video(path: Path, face_image: np.ndarray, seconds: float, seed: int) -> Path:
    from ventriloquist.config import VideoConfig
    from ventriloquist.video import VideoWriter
    crop = face_image[20:260, 120:360]
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    rng = np.random.default_rng(seed)
    audio = (0.2 * np.sin(2 * np.pi * (150 + 20 * seed) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
             + 0.02 * rng.normal(size=t.size)).astype(np.float32)
    with VideoWriter(path, 240, 240, VideoConfig(fps=FPS, preset="ultrafast"), audio=audio) as vw:
        for i in range(int(seconds * FPS)):
            vw.write(np.roll(crop, (i % 3 + seed, i % 2), axis=(0, 1)))
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory, face_image) -> Path:
    """Four short talking clips and one file that is not a video."""
    root = tmp_path_factory.mktemp("videos")
    for i in range(4):
        _video(root / f"clip{i}.mp4", face_image, 1.0 + 0.2 * i, i)
    (root / "broken.mp4").write_bytes(b"not a video" * 100)
    return root


@pytest.fixture(scope="module")
def local_cache(videos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "cache"
    prepare([videos], out, workers=1, progress=False)
    return out


def _clips(folder: Path) -> dict[str, dict]:
    return {c["key"]: c for c in cache.iter_clips(folder)}


def _same(a: dict[str, dict], b: dict[str, dict]) -> None:
    assert a.keys() == b.keys() and len(a) == 4
    for key, one in a.items():
        for field in FIELDS:
            np.testing.assert_array_equal(one[field], b[key][field], err_msg=f"{key} {field}")


def test_prepare_on_ray_equals_one_process_and_lists_what_failed(videos, local_cache, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "cache"
    res = prepare([videos], out, workers=2, progress=False, engine="ray")
    assert res["prepared"] == 4 and res["skipped"] == 1 and res["clips"] == 4
    _same(_clips(local_cache), _clips(out))                                      # bit-identical arrays
    with open(out / cache.SKIPPED_FILE, newline="") as f:
        assert [Path(r["source"]).name for r in csv.DictReader(f)] == ["broken.mp4"]
    again = prepare([videos], out, workers=2, progress=False, engine="ray")    # idempotent: nothing redone
    assert again["prepared"] == 0 and again["cached"] == 4


def test_engine_options_are_checked(videos, tmp_path):
    from ventriloquist.errors import InputError
    with pytest.raises(InputError, match="unknown engine"):
        prepare([videos], tmp_path / "c", engine="spark", progress=False)
    with pytest.raises(InputError, match="--engine ray"):
        prepare([videos], tmp_path / "c", address="auto", progress=False)


def test_shards_stream_and_read_back_as_the_cache(local_cache, tmp_path):
    """WebDataset-layout tar shards with an index: each clip reads back from its shard by offset, a
    shard streams in order, and a cache of shards alone (loose clips deleted) is read by the same code."""
    import shutil
    folder = tmp_path / "cache"
    shutil.copytree(local_cache, folder)
    written = cache.pack_shards(folder, 3)
    assert [p.name for p in written] == ["shard-000000.tar", "shard-000001.tar"]
    index = cache.shard_index(folder)
    assert [len(s["keys"]) for s in index["shards"]] == [3, 1] and len(index["members"]) == 4
    with tarfile.open(written[0]) as tar:
        assert [m.name for m in tar.getmembers()] == [f"{k}.npz" for k in index["shards"][0]["keys"]]
    streamed = {c["key"]: c for p in written for c in cache.iter_shard(p)}
    loose = _clips(folder)
    _same(loose, streamed)
    before = written[0].read_bytes()
    assert cache.pack_shards(folder, 3) == written and written[0].read_bytes() == before   # repacking: the same bytes
    shutil.rmtree(folder / cache.CLIPS_DIR)
    _same(loose, _clips(folder))


def test_webdataset_reads_the_shards(local_cache, tmp_path):
    wds = pytest.importorskip("webdataset")
    import io
    import shutil
    folder = tmp_path / "cache"
    shutil.copytree(local_cache, folder)
    (shard,) = cache.pack_shards(folder, 10)
    samples = list(wds.WebDataset(str(shard), shardshuffle=False))
    assert [s["__key__"] for s in samples] == cache.shard_index(folder)["shards"][0]["keys"]
    with np.load(io.BytesIO(samples[0]["npz"])) as z:
        np.testing.assert_array_equal(z["mel"], cache.load_clip(folder, samples[0]["__key__"])["mel"])


# --- training under torchrun ------------------------------------------------------------------------------------------
SENTENCES = ("Put the blue box on the table, please.", "Bin green at four soon.", "Lay red by six again.",
             "Place white with nine now.", "Set blue in two please.", "Say the word back.",
             "Where is the shawl?", "I will sell the sheep.", "Seize the shack now.", "Search the hall.")


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory, face_landmarks, espeak) -> tuple[Path, Path]:
    """(data root, cache) every stage trains on, made here: labelled espeak speech (the emotion corpora's
    layout), two speakers' landmark clips of four emotions (the photo's face moving each its own way)
    and eight talking clips of espeak speech with a moving mouth (6 train, 2 test)."""
    from ventriloquist.audio import energy, load_audio, log_mel
    from ventriloquist.face.align import normalise
    from ventriloquist.phonetics import articulation
    root = tmp_path_factory.mktemp("synthetic")
    speech = root / "data" / "speech_emotion"
    speech.mkdir(parents=True)
    emotions = ("neutral", "happy", "sad", "angry")
    with open(speech / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "corpus", "speaker", "emotion", "language", "split", "duration_s"])
        for i, text in enumerate(SENTENCES):
            for j, (corpus, spk) in enumerate((("TESS", "OAF"), ("EmoDB", "03"))):
                wav = espeak(text, speech / f"{corpus}_{i}.wav", pitch=30 + 10 * i + 20 * j)
                w.writerow([wav.name, corpus, spk, emotions[(i + j) % 4], "en", "test" if i >= 8 else "train", 2.0])
    out = root / "cache"
    cache.check_format(out, create=True)
    rest = normalise(face_landmarks[None].astype(np.float64))[0][0]
    rng = np.random.default_rng(0)
    for n, (spk, emo) in enumerate((s, e) for s in ("m1", "w2") for e in emotions):
        t = 60
        shapes = rest + np.sin(np.arange(t) / (3 + n))[:, None, None] * rng.normal(0, 0.03, (68, 2))
        cache.write_clip(out, f"MEAD_{spk}_{emo}", {
            "landmarks": 100 * shapes + 200, "shapes": shapes, "pose": np.zeros((t, 4)), "source": f"{spk}_{emo}",
            "corpus": "MEAD", "speaker": spk, "emotion": emo, "split": "train", "stamp": ""})
    for i in range(8):
        y = load_audio(espeak(SENTENCES[i], root / f"talk{i}.wav", pitch=50))
        mel = log_mel(y)
        t = len(mel) // 4
        e = energy(y)[:t]
        shapes = rest + rng.normal(0, 0.003, (t, 68, 2))
        shapes[:, 48:68, 1] += 0.3 * (e / (e.max() + 1e-9))[:, None] * np.linspace(0, 1, 20)[None]   # the mouth opens
        cache.write_clip(out, f"GRID_s1_talk{i}", {
            "landmarks": 100 * shapes + 200, "shapes": shapes, "pose": np.zeros((t, 4)), "source": f"talk{i}",
            "corpus": "GRID", "speaker": "s1", "emotion": "", "split": "train" if i < 6 else "test", "stamp": "",
            "mel": mel[: 4 * t], "energy": e, "artic": articulation(y, t)})
    cache.rebuild_index(out)
    return root / "data", out


@pytest.fixture(scope="module")
def mini_cache(mini_data, tmp_path_factory) -> Path:
    from ventriloquist.cli import main
    out = tmp_path_factory.mktemp("minicache") / "cache"
    assert main(["prepare", str(mini_data), "--out", str(out), "--quiet"]) == 0
    return out


def _torchrun(args: list[str], cwd: Path, procs: int = 2) -> None:
    import os
    import subprocess
    import sys
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
           "-m", "ventriloquist.cli", *args]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _params(path: Path) -> dict:
    import torch
    state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    return {k: v for k, v in state.items() if v.is_floating_point() and "running" not in k}


def _difference(a: Path, b: Path) -> float:
    """‖a − b‖ / ‖a‖ over the trained parameters of two checkpoints."""
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    num = sum(float((pa[k] - pb[k]).pow(2).sum()) for k in pa)
    return (num / sum(float(v.pow(2).sum()) for v in pa.values())) ** 0.5


def _train_both(stage: str, toml: Path, data: Path, tmp_path: Path, tolerance: float) -> None:
    """The stage's smoke run in one process and under torchrun with two: the same weights within
    ``tolerance``; the log written once."""
    from ventriloquist.cli import main
    common = ["--config", str(toml), "--data", str(data), "--smoke"]
    assert main(["train", stage, *common, "--out", str(tmp_path / "one")]) == 0
    _torchrun(["train", stage, *common, "--out", str(tmp_path / "two")], tmp_path)
    folder = "emotion/member0" if stage == "emotion" else stage
    assert _difference(tmp_path / "one" / folder / "last.pt", tmp_path / "two" / folder / "last.pt") < tolerance
    log = (tmp_path / "two" / folder / "log.jsonl").read_text().splitlines()
    assert len(log) == 2                                  # two epochs, logged once (by rank 0), not twice
    if stage == "generator":                             # each process built its span of the training store
        _same_store(tmp_path / "one" / "generator" / "store" / "talking", tmp_path / "two" / "generator" / "store" / "talking")


def _same_store(one: Path, two: Path) -> None:
    """Two builds of a training store, by one process and by two: the same clips in the same order (the emotion
    tracks equal up to float rounding: BLAS sums in another order with another number of threads)."""
    from ventriloquist.train.store import ClipStore
    a, b = ClipStore(one), ClipStore(two)
    assert len(list(two.glob("part-*"))) == 2 and len(a) == len(b) > 1
    for x, y in zip(a, b):
        assert x.keys() == y.keys() and x["key"] == y["key"]
        for k, v in x.items():
            if isinstance(v, np.ndarray):
                np.testing.assert_allclose(v, y[k], rtol=1e-5, atol=1e-6, err_msg=k)
            else:
                assert v == y[k], k


def test_each_process_draws_only_its_own_items_of_a_batch():
    """World.streams: the items of a global batch that two processes draw, put together, are the items one
    process draws, whatever the batch size (7 splits 3 + 4)."""
    from ventriloquist.train.distributed import World
    one = [r.random(3) for r in World().streams(0, 5, 7)]
    two = [r.random(3) for rank in (0, 1) for r in World(rank, 2).streams(0, 5, 7)]
    assert len(two) == 7 and [len(World(k, 2).streams(0, 5, 7)) for k in (0, 1)] == [3, 4]
    np.testing.assert_array_equal(np.stack(one), np.stack(two))
    assert not np.allclose(one[0], World().streams(0, 6, 7)[0].random(3))      # another batch, other draws


STAGES = [
    # the same global batch, one slice per process: exact for Exp2Emo (its masked means are global, World.mean)
    ("expression", 'dropout = 0.0\ncross_validate = false\n', 1e-5),
    # G's prototype and energy terms are batch-level, so each process's slice differs from the whole a little
    ("generator", 'train_on_val = true\nselect = "last"\ndropout = 0.0\n', 1e-3),
    # a lips-only G (emotion_branch = false): no Sp2Emo or Exp2Emo, no batch-level terms
    ("generator", 'train_on_val = true\nselect = "last"\ndropout = 0.0\nemotion_branch = false\n', 1e-5),
    # Sp2Emo's BatchNorm normalises each process's slice on the CPU (SyncBatchNorm needs GPUs)
    ("emotion", 'dropout = 0.0\nmembers = 1\n', 0.05),
]


@pytest.mark.parametrize("stage, config, tolerance", STAGES)
def test_torchrun_two_processes_train_as_one(synthetic_data, tmp_path, stage, config, tolerance):
    """`torchrun --nproc_per_node 2` (gloo) for a few steps of each stage gives the weights of one process
    with the same global batch, within the stage's tolerance; only rank 0 writes."""
    data, made = synthetic_data
    toml = tmp_path / f"{stage}.toml"
    toml.write_text(config if stage == "emotion" else f'cache = "{made}"\n{config}')
    _train_both(stage, toml, data, tmp_path, tolerance)


@pytest.mark.parametrize("stage, config, tolerance", STAGES[1:])
def test_torchrun_on_real_clips(mini_data, mini_cache, tmp_path, stage, config, tolerance):
    """The same on real clips of ../shared (GRID s1, MEAD, TESS and EmoDB)."""
    toml = tmp_path / f"{stage}.toml"
    toml.write_text(config if stage == "emotion" else f'cache = "{mini_cache}"\n{config}')
    _train_both(stage, toml, mini_data, tmp_path, tolerance)


def test_a_checkpoint_resumes_on_another_number_of_processes(synthetic_data, tmp_path):
    """An epoch under torchrun with two processes, the next one resumed in one process: the weights of two
    epochs in one process (the checkpoint holds the global model, optimiser and random streams)."""
    from ventriloquist.cli import main
    toml = tmp_path / "expression.toml"
    data, made = synthetic_data
    toml.write_text(f'cache = "{made}"\ndropout = 0.0\ncross_validate = false\n'
                    'epochs = 2\nsteps_per_epoch = 3\nbatch = 8\nunlabelled_clips = 4\n')
    common = ["--config", str(toml), "--data", str(data)]
    assert main(["train", "expression", *common, "--out", str(tmp_path / "one")]) == 0
    _torchrun(["train", "expression", *common, "--epochs", "1", "--out", str(tmp_path / "mixed")], tmp_path)
    assert main(["train", "expression", *common, "--resume", "--out", str(tmp_path / "mixed")]) == 0
    assert _difference(tmp_path / "one" / "expression" / "last.pt", tmp_path / "mixed" / "expression" / "last.pt") < 1e-5


# --- batch on Ray -----------------------------------------------------------------------------------------------------
def _frames(path: Path) -> np.ndarray:
    from ventriloquist.video import read_frames
    return np.stack(list(read_frames(path))).astype(np.int16)


def test_batch_on_ray_gives_the_local_batchs_videos(tmp_path, face_image, face_landmarks, speech_wav):
    """Two Ray actors (one loaded pipeline each) render a manifest: the same summary, the same videos as
    the local batch (to the encoder's rounding), written where the rows say; a rerun skips them all."""
    pytest.importorskip("ray")
    import shutil

    import cv2

    from ventriloquist.cli import main
    root = tmp_path / "in"
    root.mkdir()
    x0, y0 = face_landmarks.min(0).astype(int) - 40
    x1, y1 = face_landmarks.max(0).astype(int) + 40
    crop = cv2.resize(face_image[max(0, y0):y1, max(0, x0):x1], (128, 128), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(root / "anna.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "ben.jpg"), cv2.cvtColor(crop[:, ::-1], cv2.COLOR_RGB2BGR))
    shutil.copy(speech_wav, root / "anna.wav")
    (root / "broken.jpg").write_text("not a photo")
    manifest = root / "jobs.csv"
    manifest.write_text("face,audio,out,size,emotion\nanna.jpg,anna.wav,,,\nben.jpg,anna.wav,ben.mp4,96,happy\n"
                        "broken.jpg,anna.wav,,,\nanna.jpg,anna.wav,again.mp4,,sad\n")
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    assert main(["batch", str(manifest), "--out", str(local), "--workers", "1", "--quiet"]) == 2
    assert main(["batch", str(manifest), "--out", str(ray_out), "--engine", "ray", "--workers", "2", "--quiet"]) == 2

    def summary(folder):
        with open(folder / "summary.csv", newline="") as f:
            return [(r["row"], r["status"], Path(r["out"]).name) for r in csv.DictReader(f)]
    assert summary(local) == summary(ray_out)
    assert [s for _, s, _ in summary(ray_out)] == ["done", "done", "failed", "done"]
    names = sorted(p.name for p in local.glob("*.mp4"))
    assert names == sorted(p.name for p in ray_out.glob("*.mp4")) == ["again.mp4", "anna__anna.mp4", "ben.mp4"]
    for name in names:
        a, b = _frames(local / name), _frames(ray_out / name)
        assert a.shape == b.shape and np.abs(a - b).mean() < 1.0, name
    assert not list(ray_out.glob(".*"))
    assert main(["batch", str(manifest), "--out", str(ray_out), "--engine", "ray", "--workers", "2", "--quiet"]) == 2
    assert [s for _, s, _ in summary(ray_out)] == ["skipped", "skipped", "failed", "skipped"]
