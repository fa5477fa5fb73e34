"""Emotion chosen by the user: --emotion, --emotion-intensity, timelines and --export-emotions."""
import json

import numpy as np
import pytest

from ventriloquist.config import FPS
from ventriloquist.emotion.timeline import (TRANSITION_S, Segment, emotion_track, export_emotions,
                                            load_timeline)
from ventriloquist.emotion.vocabulary import EMOTIONS, INDEX
from ventriloquist.errors import InputError


def _write(path, text):
    path.write_text(text)
    return path


def test_a_timeline_reads_from_json_and_csv_alike(tmp_path):
    js = _write(tmp_path / "t.json", json.dumps([{"start": 0, "end": 1.5, "emotion": "Happy"},
                                                 {"start": 2, "end": 3, "emotion": "anger", "intensity": 0.5},
                                                 {"start": 3, "end": 4, "emotion": "auto"}]))
    cs = _write(tmp_path / "t.csv", "start,end,emotion,intensity\n0,1.5,Happy,\n2,3,anger,0.5\n3,4,auto,\n")
    a, b = load_timeline(js), load_timeline(cs)
    assert a == b
    assert a[0].weights[INDEX["happy"]] == 1 and a[1].weights[INDEX["angry"]] == 1 and a[1].intensity == 0.5
    assert a[2].weights is None                               # auto: the voice decides there
    dist = load_timeline(_write(tmp_path / "d.json", json.dumps(
        {"segments": [{"start": 0, "end": 1, "emotion": {"sad": 3, "fear": 1}}]})))
    assert dist[0].weights[INDEX["sad"]] == 0.75 and dist[0].weights[INDEX["fear"]] == 0.25


@pytest.mark.parametrize("name,text,message", [
    ("a.json", "[{\"start\": 0, \"end\": 1, \"emotion\": \"glee\"}]", "unknown emotion 'glee' (entry 1 of"),
    ("b.json", "[{\"start\": 2, \"end\": 1, \"emotion\": \"sad\"}]", "0 <= start < end (entry 1 of"),
    ("c.json", "{not json", "is not valid JSON"),
    ("d.csv", "start,end,emotion\n0,1,sad\n1,x,sad\n", "end must be a number, not 'x' (entry 2 of"),
    ("e.csv", "start,end\n0,1\n", "needs an emotion"),
    ("f.json", "[{\"start\": 0, \"end\": 1, \"emotion\": \"sad\", \"intensity\": 9}]", "intensity 9 is outside"),
    ("g.txt", "0,1,sad", "must be a .json or .csv file"),
    ("h.json", "[]", "holds no entries"),
])
def test_a_bad_timeline_is_refused_naming_the_file_and_entry(tmp_path, name, text, message):
    path = _write(tmp_path / name, text)
    with pytest.raises(InputError) as err:
        load_timeline(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_a_switch_of_emotion_is_a_ramp_never_a_jump():
    n = 10 * FPS
    segs = [Segment(2.0, 5.0, tuple(float(e == "happy") for e in EMOTIONS)),
            Segment(5.0, 8.0, tuple(float(e == "sad") for e in EMOTIONS), 0.5)]
    auto, w, level = emotion_track(n, "auto", 1.0, segs)
    np.testing.assert_allclose(auto + w.sum(1), 1.0, atol=1e-6)
    assert auto[0] == 1 and auto[-1] == 1                               # the voice's own outside the ranges
    assert w[int(3.5 * FPS), INDEX["happy"]] == 1 and w[int(6.5 * FPS), INDEX["sad"]] == 1
    assert level[int(6.5 * FPS)] == 0.5 and level[int(3.5 * FPS)] == 1
    step = np.abs(np.diff(np.column_stack([auto, w, level]), axis=0)).max()
    assert step <= 2.0 / (TRANSITION_S * FPS) + 1e-6                    # spread over TRANSITION_S
    at = int(5.0 * FPS)                                                 # halfway through the change at 5 s
    assert abs(w[at, INDEX["happy"]] - w[at, INDEX["sad"]]) < 0.15


def test_an_export_is_a_timeline_that_gives_back_the_same_emotions(tmp_path):
    n = 6 * FPS
    auto, w, level = emotion_track(n, "neutral", 0.8, [Segment(1.0, 3.0, tuple(float(e == "angry") for e in EMOTIONS))])
    probs = w + auto[:, None] / len(EMOTIONS)
    for suffix in (".csv", ".json"):
        path = export_emotions(tmp_path / f"e{suffix}", probs, level)
        again = emotion_track(n, "auto", 1.0, load_timeline(path))
        np.testing.assert_allclose(again[0], 0.0)
        np.testing.assert_allclose(again[1], probs, atol=1e-4)
        np.testing.assert_allclose(again[2], level, atol=1e-4)


# --- through the shipped models --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def speech_motion():
    from ventriloquist.motion.speech import SpeechMotion
    return SpeechMotion.from_weights()


@pytest.fixture(scope="module")
def heard(speech_motion, speech_wav):
    from ventriloquist.audio import load_audio
    return speech_motion.features(load_audio(speech_wav))


def test_a_chosen_emotion_drives_the_face_through_g_and_leaves_the_lips_in_sync(speech_motion, heard):
    from ventriloquist.face.topology import BROWS, EYES, mouth_aperture
    auto, _ = speech_motion.shapes(*heard)
    faces = {}
    for e in ("happy", "sad", "angry"):
        shapes, probs = speech_motion.with_settings(0, 1.0, 1.0, e).shapes(*heard)
        np.testing.assert_allclose(probs[:, INDEX[e]], 1.0)          # what drove the face is what was asked
        r = np.corrcoef(mouth_aperture(shapes), mouth_aperture(auto))[0, 1]
        assert r > 0.8                                                # the lips still follow the speech
        faces[e] = shapes
    brow_gap = {e: float((s[:, BROWS, 1].mean(1) - s[:, EYES, 1].mean(1)).mean()) for e, s in faces.items()}
    assert len({round(v, 3) for v in brow_gap.values()}) == 3          # three different upper faces
    calm = speech_motion.with_settings(0, 1.0, 1.0, "angry", intensity=0.0).shapes(*heard)[0]
    lips_only = speech_motion.with_settings(0, 0.0, 1.0).shapes(*heard)[0]
    np.testing.assert_allclose(calm, lips_only, atol=1e-5)           # intensity 0: no expression at all


def test_exp2emo_reads_the_requested_emotion_on_the_generated_face(speech_motion, heard):
    import torch

    from ventriloquist.motion.speech import mean_face
    from ventriloquist.train.expression import clip_windows
    from ventriloquist.train.generator import load_exp2emo
    exp2emo = load_exp2emo()
    for e in ("happy", "sad", "angry"):
        shapes, _ = speech_motion.with_settings(0, 1.0, 1.0, e).shapes(*heard)
        dk = (shapes - mean_face(speech_motion.generator)).astype(np.float32)
        with torch.inference_mode():
            votes = exp2emo(torch.from_numpy(clip_windows(dk, FPS))).argmax(-1).numpy()
        assert np.mean(votes == INDEX[e]) >= 0.7, e


def test_a_timeline_switches_mid_sentence_without_a_jump(speech_motion, heard, tmp_path):
    n = len(heard[0]) // 4
    mid = n / FPS / 2
    segs = [Segment(0.0, mid, tuple(float(e == "happy") for e in EMOTIONS)),
            Segment(mid, n / FPS, tuple(float(e == "angry") for e in EMOTIONS))]
    switched, probs = speech_motion.with_settings(0, 1.0, 1.0, timeline=segs).shapes(*heard)
    assert probs[2, INDEX["happy"]] == 1 and probs[-3, INDEX["angry"]] == 1
    steady = [speech_motion.with_settings(0, 1.0, 1.0, e).shapes(*heard)[0] for e in ("happy", "angry")]
    from ventriloquist.evaluate.metrics import REAL_STEP_P99, largest_steps
    step = lambda s: largest_steps(s).max()
    assert step(switched) <= 1.1 * max(step(s) for s in steady)       # the switch adds no step of its own
    at = int(mid * FPS)
    assert largest_steps(switched)[at - FPS // 2:at + FPS // 2].max() <= REAL_STEP_P99   # and is no jump a real face would not make


def test_the_cli_takes_emotion_options_and_exports_a_timeline(tmp_path, face_path, speech_wav, capsys):
    from ventriloquist.cli import main
    tl = tmp_path / "t.json"
    tl.write_text(json.dumps([{"start": 0.5, "end": 1.5, "emotion": "sad", "intensity": 0.6}]))
    out, track = tmp_path / "o.mp4", tmp_path / "e.csv"
    assert main(["generate", "--face", str(face_path), "--audio", str(speech_wav), "--out", str(out), "--size", "128",
                 "--emotion", "happy", "--emotion-timeline", str(tl), "--export-emotions", str(track), "--quiet"]) == 0
    assert out.is_file()
    segs = load_timeline(track)                                       # the export is a timeline
    assert segs[0].weights[INDEX["happy"]] == 1 and segs[int(1.0 * FPS)].weights[INDEX["sad"]] == 1
    assert segs[int(1.0 * FPS)].intensity == pytest.approx(0.6)
    again = tmp_path / "again.csv"
    assert main(["generate", "--face", str(face_path), "--audio", str(speech_wav), "--out", str(tmp_path / "p.mp4"),
                 "--size", "128", "--emotion-timeline", str(track), "--export-emotions", str(again), "--quiet"]) == 0
    assert again.read_text() == track.read_text()                     # and round-trips exactly
    bad = tmp_path / "bad.json"
    bad.write_text("[{\"start\": 0, \"end\": 1, \"emotion\": \"glee\"}]")
    assert main(["generate", "--face", str(face_path), "--audio", str(speech_wav), "--out", str(tmp_path / "x.mp4"),
                 "--emotion-timeline", str(bad), "--quiet"]) == 2
    assert "unknown emotion 'glee'" in capsys.readouterr().err and not (tmp_path / "x.mp4").exists()
