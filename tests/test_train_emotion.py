"""Sp2Emo's training data: which clips are drawn how often, and read speech taught as neutral."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ventriloquist.data.speech import SpeechItem
from ventriloquist.emotion.vocabulary import EMOTIONS
from ventriloquist.errors import InputError
from ventriloquist.train.emotion import NEUTRAL_CORPUS, neutral_speech_items, sample_weights


def _items(corpus: str, speaker: str, emotions: list[str]) -> list[SpeechItem]:
    return [SpeechItem(Path(f"{corpus}_{speaker}_{k}.wav"), corpus, speaker, EMOTIONS.index(e), "train")
            for k, e in enumerate(emotions)]


def test_read_speech_gets_its_share_and_no_speaker_rules_it():
    acted = _items("EmoDB", "03", ["angry"] * 30 + ["sad"] * 10) + _items("TESS", "OAF", ["happy"] * 5)
    read = _items(NEUTRAL_CORPUS, "s1", ["neutral"] * 100) + _items(NEUTRAL_CORPUS, "s2", ["neutral"] * 4)
    w = sample_weights(acted + read, balance=2.0, neutral_share=0.2)
    is_read = np.array([it.corpus == NEUTRAL_CORPUS for it in acted + read])
    assert w.sum() == pytest.approx(1.0)
    assert w[is_read].sum() == pytest.approx(0.2)
    # classes stay balanced within an acted corpus, as without read speech
    emodb = w[:40]
    assert emodb[:30].sum() == pytest.approx(emodb[30:].sum())
    np.testing.assert_allclose(w[~is_read] / w[~is_read].sum(), sample_weights(acted, 2.0))
    # by the square root of the clip count: 10 : 2, not 100 : 4
    s1, s2 = w[45:145].sum(), w[145:].sum()
    assert s1 / s2 == pytest.approx(5.0)


def test_read_speech_lists_become_neutral_items(tmp_path):
    (tmp_path / "tf").mkdir()
    (tmp_path / "tf" / "clips.csv").write_text("path,speaker,split\na.mp4,spk1,train\nb.mp4,spk2,test\n")
    items = neutral_speech_items(tmp_path, ["tf/clips.csv"])
    assert [(it.path, it.corpus, it.speaker, EMOTIONS[it.emotion], it.split) for it in items] == [
        (tmp_path / "tf" / "a.mp4", NEUTRAL_CORPUS, "spk1", "neutral", "train"),
        (tmp_path / "tf" / "b.mp4", NEUTRAL_CORPUS, "spk2", "neutral", "test")]
    with pytest.raises(InputError, match="missing.csv does not exist"):
        neutral_speech_items(tmp_path, ["missing.csv"])
