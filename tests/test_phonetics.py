"""Phonetic rows: phones heard by pocketsphinx, as articulatory values aligned with the Mel rows."""
from __future__ import annotations

import numpy as np
import pytest

from ventriloquist import phonetics
from ventriloquist.audio import load_audio, log_mel
from ventriloquist.config import MEL_PER_FRAME, SAMPLE_RATE

OPEN, ROUND, SPREAD, BILABIAL, LABIODENTAL, DENTAL, SILENCE = range(phonetics.N_ARTIC)


@pytest.fixture(scope="module")
def speech(speech_wav) -> np.ndarray:
    return load_audio(speech_wav)


def test_rows_line_up_with_the_mel_rows(speech):
    n = len(log_mel(speech)) // MEL_PER_FRAME
    rows = phonetics.articulation(speech, n)
    assert rows.shape == (n * MEL_PER_FRAME, phonetics.N_ARTIC) and rows.dtype == np.float32
    assert np.all((rows >= 0) & (rows <= 1))
    # espeak's WAV starts and ends in silence; the sentence in between is mostly speech
    assert rows[:3, SILENCE].all() and rows[-3:, SILENCE].all()
    assert rows[:, SILENCE].mean() < 0.5


def test_speech_opens_and_closes_the_lips(speech):
    """'Put the blue box on the table, please': open vowels, bilabial closures (p, b) and rounding (u, o)."""
    rows = phonetics.articulation(speech, len(log_mel(speech)) // MEL_PER_FRAME)
    heard = [p for p, _, _ in phonetics.phones(speech)]
    assert len(heard) > 10
    assert rows[:, OPEN].max() >= 0.8
    assert rows[:, BILABIAL].sum() >= 3
    assert rows[:, ROUND].max() >= 0.9


def test_silence_and_noise_are_silence():
    quiet = np.zeros(2 * SAMPLE_RATE, np.float32)
    rows = phonetics.articulation(quiet, 50)
    assert rows.shape == (200, phonetics.N_ARTIC)
    assert rows[:, SILENCE].all() and not rows[:, OPEN].any()


def test_long_speech_is_decoded_in_pieces_that_keep_their_time(speech, monkeypatch):
    """A long recording is decoded in CHUNK_S pieces; each piece's phones land at its own offset."""
    gap = np.zeros(SAMPLE_RATE, np.float32)
    y = np.concatenate([speech, gap, speech])
    whole = phonetics.phones(y)
    monkeypatch.setattr(phonetics, "CHUNK_S", (len(speech) + len(gap)) / SAMPLE_RATE)
    pieces = phonetics.phones(y)
    second = (len(speech) + len(gap)) // (SAMPLE_RATE // 100)
    later = [p for p in pieces if p[1] >= second]
    assert later and later[-1][2] <= len(y) // (SAMPLE_RATE // 100) + 2
    assert abs(len(pieces) - len(whole)) <= 4          # the same sentence twice, either way


def test_every_phone_has_values_and_diphthongs_glide():
    for p in phonetics.PHONES:
        v = phonetics.articulation_of(p)
        assert v.shape == (phonetics.N_ARTIC,) and v[SILENCE] == 0
    assert phonetics.articulation_of("M")[BILABIAL] == 1 and phonetics.articulation_of("F")[LABIODENTAL] == 1
    assert phonetics.articulation_of("+NSN+")[SILENCE] == 1          # fillers and noise read as silence
    first, second = phonetics.DIPHTHONGS["AY"]
    assert phonetics.articulation_of(first)[OPEN] > phonetics.articulation_of(second)[OPEN]


def test_what_was_heard_before_does_not_change_a_clips_phones(speech_wav):
    """A decoder is reused (loading it costs 0.6 s) but starts each utterance afresh: pocketsphinx's live
    cepstral mean once carried over, so a server's second request or a worker's second clip heard other
    phones than the same file alone (and a cache depended on --workers)."""
    from ventriloquist.audio import load_audio
    y = load_audio(speech_wav)
    t = np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE
    rng = np.random.default_rng(0)
    for before, clip in ((0.8 * np.sin(2 * np.pi * 120 * t), 0.05 * y),           # quiet speech after a loud tone
                         (0.5 * rng.standard_normal(len(t)), y)):                   # speech after hiss
        clip = clip.astype(np.float32)
        first = phonetics.phones(clip)
        phonetics.phones(before.astype(np.float32))
        assert phonetics.phones(clip) == first


def test_a_chunk_without_any_hypothesis_is_heard_as_silence(speech, monkeypatch):
    """pocketsphinx ends some utterances (seen on German news speech) without a hypothesis, and then
    has no segmentation at all: that chunk is silence, and the others keep their phones and time."""
    real = phonetics._decoder()
    calls = []

    class Flaky:
        def start_utt(self):
            real.start_utt()

        def process_raw(self, pcm, full_utt):
            real.process_raw(pcm, full_utt=full_utt)

        def end_utt(self):
            real.end_utt()

        def seg(self):
            calls.append(1)
            return None if len(calls) == 1 else real.seg()

    monkeypatch.setattr(phonetics, "CHUNK_S", 1.0)
    monkeypatch.setattr(phonetics, "_decoder", lambda: Flaky())
    heard = phonetics.phones(speech)
    assert len(calls) > 1 and heard
    assert min(a for _, a, _ in heard) >= int(1.0 * SAMPLE_RATE) // phonetics.HOP_LENGTH


def test_silence_is_not_decoded(speech, monkeypatch):
    """An hour of digital silence costs no decoding at all; speech after it is still heard, in time."""
    real, decoded = phonetics._decoder(), []

    class Counting:
        def __getattr__(self, name):
            if name == "process_raw":
                decoded.append(1)
            return getattr(real, name)

    monkeypatch.setattr(phonetics, "_decoder", lambda: Counting())
    y = np.zeros(3600 * SAMPLE_RATE, np.float32)
    assert phonetics.phones(y) == [] and decoded == []
    late = np.concatenate([np.zeros(60 * SAMPLE_RATE, np.float32), speech])
    heard = phonetics.phones(late)
    assert heard and min(a for _, a, _ in heard) >= 60 * SAMPLE_RATE // phonetics.HOP_LENGTH and len(decoded) == 1
