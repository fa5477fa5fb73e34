"""Expressions shaped like real ones: patterns measured per actor, auto emotion that holds back, a photo's smile."""
from __future__ import annotations

import numpy as np
import pytest

from ventriloquist.emotion.vocabulary import EMOTIONS
from ventriloquist.face import topology
from ventriloquist.face.align import Retargeter, corner_lift
from ventriloquist.motion.expression import (ARTICULATION_RANGE, NEUTRAL, ExpressionPatterns, ExpressionTrack, describe,
                                              measure)

ANGRY, HAPPY = EMOTIONS.index("angry"), EMOTIONS.index("happy")


def _talking(rng, n: int, opening: float, base: np.ndarray) -> np.ndarray:
    """Frames (n, 68, 2) of a face whose jaw and lower lip move down with an opening around ``opening``."""
    a = np.clip(opening + 0.05 * rng.standard_normal(n), 0, None)
    k = np.repeat(base[None], n, axis=0).copy()
    k[:, [56, 57, 58, 65, 66, 67], 1] += a[:, None]
    k[:, 5:12, 1] += 0.5 * a[:, None]
    return k


def _base() -> np.ndarray:
    k = np.zeros((68, 2))
    k[36:42, 0], k[42:48, 0] = -0.5, 0.5
    k[17:22], k[22:27] = (-0.5, -0.3), (0.5, -0.3)
    k[48:68, 1] = 1.0
    k[48, 0], k[54, 0] = -0.4, 0.4
    return k


def test_patterns_are_an_emotion_minus_the_same_actors_neutral_without_the_opening():
    rng = np.random.default_rng(0)
    clips = {}
    for actor, style in (("a", 1.0), ("b", 0.6)):
        base = _base() + 0.05 * rng.standard_normal((68, 2))         # another face
        clips[(actor, "neutral")] = _talking(rng, 200, 0.05, base)
        angry = base.copy()
        angry[17:27, 1] += 0.1 * style                                # brows lowered
        clips[(actor, "anger")] = _talking(rng, 200, 0.12, angry)     # ... and louder speech: wider open
    pat, report = measure(clips)
    d = describe(pat.patterns[ANGRY])
    assert d["brows_to_eyes"] == pytest.approx(0.08, abs=0.01)      # the actors' mean
    assert abs(pat.patterns[ANGRY][[57, 66], 1]).max() < 0.01        # the wider opening is not a pose ...
    assert 1.1 < pat.articulation[ANGRY] <= ARTICULATION_RANGE[1]    # ... but a gain on the speech's opening
    assert not pat.patterns[HAPPY].any() and pat.articulation[HAPPY] == 1.0 and pat.actors == ("a", "b")
    assert set(report) == {"a", "b"} and "angry" in report["a"]


def test_auto_emotion_holds_back_when_unsure_and_builds_like_a_face():
    n = 100                                                           # 4 s
    voiced = np.ones(n, bool)
    unsure = np.full((n, 7), 1 / 7)
    assert not ExpressionTrack()(unsure, voiced).any()
    neutral = np.tile(np.eye(7)[NEUTRAL] * 0.7 + 0.05, (n, 1))
    assert not ExpressionTrack()(neutral, voiced).any()
    angry = np.tile(np.eye(7)[ANGRY] * 0.9 + 0.1 / 7, (n, 1))
    w = ExpressionTrack()(angry, voiced)
    assert w[:, ANGRY].max() > 0.7 and w[:, NEUTRAL].max() == 0
    assert w[6, ANGRY] < 0.2 * w[-1, ANGRY]                           # not at once: it builds ...
    assert np.all(np.diff(w[:, ANGRY]) > -1e-6)
    gate = np.r_[np.ones(50), np.zeros(50)]
    w = ExpressionTrack()(angry, voiced, gate)
    assert w[-1, ANGRY] < 0.2 * w[49, ANGRY]                          # ... and fades in a long silence
    short = ExpressionTrack()(angry[:8], voiced[:8])                  # a third of a second of evidence
    assert short.max() < 0.1


def test_offline_auto_emotion_shows_a_heard_phrase_from_its_start_and_still_holds_back():
    n = 50                                                            # a 2-s acted phrase, angry throughout
    voiced = np.ones(n, bool)
    angry = np.tile(np.eye(7)[ANGRY] * 0.9 + 0.1 / 7, (n, 1))
    live, offline = ExpressionTrack()(angry, voiced), ExpressionTrack(both_ways=True)(angry, voiced)
    assert offline[:, ANGRY].mean() > 1.3 * live[:, ANGRY].mean()   # the whole phrase is evidence ...
    assert offline[12, ANGRY] > 0.5 and live[12, ANGRY] < 0.4         # ... so by half a second it shows
    assert offline[1, ANGRY] < 0.3                                     # ... still building as a face does
    unsure = np.tile(np.eye(7)[ANGRY] * 0.4 + 0.6 / 7, (n, 1))       # a belief just under one half: nothing
    assert not ExpressionTrack(both_ways=True)(unsure, voiced).any()
    track = ExpressionTrack(both_ways=True)
    track(angry[:25], voiced[:25])
    assert track.evidence[ANGRY] > 0.5                                 # the causal state carries on as live's does


def test_a_smiling_photo_loses_its_smile_when_an_emotion_is_asked_for():
    ref = _base()
    smiling = ref.copy()
    smiling[[48, 54, 60, 64], 1] -= 0.12                              # corners well above the lip line
    photo = smiling * 100 + 200                                       # pixels
    kept = Retargeter(photo)(ref[None], ref)[0]
    neutral = Retargeter(photo, neutral=True)(ref[None], ref)[0]
    to_canon = Retargeter(photo).source_n
    assert corner_lift((kept - 200) / 100) == pytest.approx(corner_lift(to_canon), abs=1e-6)
    assert corner_lift((neutral - 200) / 100) < corner_lift((kept - 200) / 100) - 0.05
    plain = ref * 100 + 200                                           # a neutral photo is left as it is
    np.testing.assert_allclose(Retargeter(plain, neutral=True)(ref[None], ref), Retargeter(plain)(ref[None], ref))


def test_shipped_patterns_show_each_emotion_in_the_right_regions():
    """The shipped patterns (weights `patterns`, measured on MEAD and CREMA-D) on G's motion: happy widens the
    mouth and lifts its corners, angry lowers the brows towards the eyes, surprise raises them and opens the eyes."""
    pat = ExpressionPatterns.from_weights()
    happy, angry, surprise = (describe(pat.patterns[EMOTIONS.index(e)]) for e in ("happy", "angry", "surprise"))
    assert happy["mouth_width"] > 0.05 and happy["corner_lift"] > 0.01
    assert angry["brows_to_eyes"] > 0.05
    assert surprise["brows_to_eyes"] < -0.04 and surprise["eyes_open"] > 0.02
    assert not pat.patterns[NEUTRAL].any() and pat.articulation[NEUTRAL] == 1.0
    assert len(pat.actors) >= 3


def test_chosen_emotion_shows_from_the_first_frame_and_auto_neutral_speech_does_not(speech_wav):
    from ventriloquist.audio import load_audio
    from ventriloquist.motion.speech import SpeechMotion
    base = SpeechMotion.from_weights()
    y = load_audio(speech_wav)
    out = {}
    for e in ("neutral", "angry", "happy", "auto"):
        sm = base.with_settings(0, 1.0, 1.0, e)
        out[e], _ = sm.shapes(*sm.features(y))
    brows = lambda k: (k[:, topology.BROWS, 1].mean(1) - k[:, topology.EYES, 1].mean(1))   # noqa: E731
    assert (brows(out["angry"]) - brows(out["neutral"]))[:5].mean() > 0.04
    width = lambda k: k[:, 54, 0] - k[:, 48, 0]                                             # noqa: E731
    assert np.median(width(out["happy"]) - width(out["neutral"])) > 0.05
    # espeak-ng's flat voice is not confidently emotional: auto stays near neutral
    d_auto = np.abs(brows(out["auto"]) - brows(out["neutral"])).mean()
    d_angry = np.abs(brows(out["angry"]) - brows(out["neutral"])).mean()
    assert d_auto <= 0.3 * d_angry


def test_two_emotions_shown_alike_are_set_apart():
    from ventriloquist.motion.expression import FACE_POINTS, distinct
    rng = np.random.default_rng(1)
    shared = rng.normal(0, 0.02, (68, 2))
    p = np.zeros((7, 68, 2))
    p[ANGRY] = shared + rng.normal(0, 0.006, (68, 2))
    p[EMOTIONS.index("disgust")] = shared + rng.normal(0, 0.006, (68, 2))
    q = distinct(p)

    def cos(a, b):
        a, b = a[FACE_POINTS].ravel(), b[FACE_POINTS].ravel()
        return a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    d = EMOTIONS.index("disgust")
    assert cos(q[ANGRY], q[d]) < cos(p[ANGRY], p[d]) - 0.05
    assert cos(q[ANGRY], p[ANGRY]) > 0.8 and not q[NEUTRAL].any()
