"""Smoke training of every stage in the paper's order, on a few clips of ../shared/data.

Builds a miniature data root (a handful of rows of each labels file, linked to the shared
files), then runs emotion -> expression -> generator with --smoke --publish into a private
weights folder, and drives a photo from speech with the result.
"""
from __future__ import annotations

import json

from ventriloquist.cli import main


def test_all_stages_train_publish_and_drive_a_face(mini_data, tmp_path, monkeypatch, face_path, speech_wav):
    weights = tmp_path / "weights"
    monkeypatch.setenv("VENTRILOQUIST_WEIGHTS", str(weights))
    cache = tmp_path / "cache"
    assert main(["prepare", str(mini_data), "--out", str(cache), "--quiet"]) == 0
    (tmp_path / "expression.toml").write_text(f'cache = "{cache}"\n')
    # the shipped generator recipe: the validation clips are trained on too, the last epoch is kept
    (tmp_path / "generator.toml").write_text(f'cache = "{cache}"\ntrain_on_val = true\nselect = "last"\n')
    runs = tmp_path / "runs"
    common = ["--data", str(mini_data), "--out", str(runs), "--smoke", "--publish"]
    assert main(["train", "emotion", *common]) == 0
    assert main(["train", "expression", "--config", str(tmp_path / "expression.toml"), *common]) == 0
    assert main(["train", "generator", "--config", str(tmp_path / "generator.toml"), *common]) == 0
    assert main(["train", "patterns", "--config", str(tmp_path / "expression.toml"), *common]) == 0
    assert main(["train", "mouths", *common]) == 0                      # the renderer's interiors
    for stage in ("emotion", "expression", "generator", "patterns", "mouths"):
        assert (runs / stage / "metrics.json").is_file()
    for log in ("emotion/member0", "emotion/member2", "expression", "generator"):
        assert (runs / log / "log.jsonl").read_text().strip()
    g = json.loads((runs / "generator" / "metrics.json").read_text())
    assert g["trained_on_val"] and g["selection"] == "last" and g["best_epoch"] == 1      # smoke: 2 epochs
    assert g["train_clips"] == 6 and g["val_clips"] == 1        # 5 train + the 1 validation clip
    assert main(["train", "emotion", "--resume", *common]) == 0          # complete members load, none retrains
    assert main(["train", "generator", "--config", str(tmp_path / "generator.toml"), "--resume", *common]) == 0
    out = tmp_path / "talk.mp4"
    assert main(["generate", "--face", str(face_path), "--audio", str(speech_wav), "--out", str(out),
                 "--size", "128", "--quiet"]) == 0
    assert out.stat().st_size > 1000
