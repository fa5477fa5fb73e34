"""`ventriloquist evaluate` on a user folder of videos: metrics, report and plots come out."""
from __future__ import annotations

import json

from ventriloquist.cli import main


def test_evaluate_a_folder_of_videos(tmp_path, face_path, speech_wav, monkeypatch):
    videos = tmp_path / "my_clips"
    videos.mkdir()
    assert main(["generate", "--face", str(face_path), "--audio", str(speech_wav),
                 "--out", str(videos / "talk.mp4"), "--size", "256", "--crop", "face", "--quiet"]) == 0
    monkeypatch.chdir(tmp_path)                     # the cache for a user folder goes beside ./cache
    out = tmp_path / "report"
    assert main(["evaluate", "--data", str(videos), "--out", str(out), "--quick", "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    methods = m["lip_sync"]["my_clips"]["methods"]
    assert {"ours", "ours, no emotion branch", "static face", "energy jaw", "real video"} <= set(methods)
    assert 0 <= methods["ours"]["mouth_lmd"] < 0.2
    assert m["speed"]["10s"]["compute_s_per_video_s"] > 0
    assert m["render"]["identity"] < 0.6
    report = (out / "report.md").read_text()
    assert "| ours |" in report and "static face" in report
    assert list(out.glob("*_aperture_vs_energy.png"))
    # re-synthesis: our own video re-made from its first frame and its audio gives its mouth back
    res = m["resynthesis"]["my_clips"]
    (row,) = res["clips"]
    assert row["clip"] == "talk.mp4" and row["face_lost_share"] == 0 and row["identity_max"] < 0.6
    assert row["ours"]["follow_r"] > 0.7 and row["upper_bound"]["follow_r"] > 0.7
    assert 0.6 < row["ours"]["amplitude_ratio"] < 1.6
    assert {"energy_jaw", "ours_landmarks"} <= set(row) and res["median"]["ours"]["follow_r"] == row["ours"]["follow_r"]
    assert "## Re-synthesis: my_clips (1 clips" in report and (out / "resynthesis_talk.png").is_file()
