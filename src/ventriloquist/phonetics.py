"""Speaker-independent phonetic features: what the mouth must do, heard by a phone recogniser.

The lips were learnt from one speaker, and log-Mel carries that speaker's voice, microphone
and room. Phones do not: pocketsphinx's English acoustic model (trained on many speakers,
shipped inside the ``pocketsphinx`` wheel, loaded offline) decodes any speech into phones
with 10-ms timings, and each phone becomes a few articulatory values (how open, rounded or
spread the lips are, whether they close). The generator reads these beside the Mel rows, one
row per Mel row, so a voice the models never heard still opens the mouth on its vowels and
closes it on /m b p/. Other languages decode into the nearest English phones, which is
enough for visemes; the Mel rows carry the rest.
"""
from __future__ import annotations

import threading
from typing import Iterator

import numpy as np

from .config import HOP_LENGTH, MEL_PER_FRAME, SAMPLE_RATE, SILENCE_PEAK
from .errors import MissingWeightsError

ROW_S = HOP_LENGTH / SAMPLE_RATE          # pocketsphinx decodes at 100 frames/s: one frame per Mel row
CHUNK_S = 20.0                            # long speech is decoded in pieces this long (bounded memory)
LANGUAGE_WEIGHT = 2.0                     # phone-LM weight of the all-phone search (measured: 1-2 best, 5+ worse)

# Articulatory values per phone (0-1): lips/jaw open, lips rounded, lips spread, lips closed
# (bilabial), lower lip to teeth (labiodental), tongue between teeth (dental), silence.
ARTICULATORS = ("open", "round", "spread", "bilabial", "labiodental", "dental", "silence")
N_ARTIC = len(ARTICULATORS)
_VALUES = {
    # vowels                open round spread
    "AA": (1.00, 0.0, 0.0), "AE": (0.85, 0.0, 0.5), "AH": (0.65, 0.0, 0.0), "AO": (0.80, 0.6, 0.0),
    "EH": (0.60, 0.0, 0.5), "ER": (0.35, 0.5, 0.0), "IH": (0.40, 0.0, 0.6), "IY": (0.25, 0.0, 1.0),
    "UH": (0.40, 0.6, 0.0), "UW": (0.25, 1.0, 0.0),
    # consonants
    "HH": (0.50, 0.0, 0.0), "L": (0.35, 0.0, 0.0), "R": (0.30, 0.5, 0.0), "W": (0.15, 1.0, 0.0),
    "Y": (0.25, 0.0, 0.7), "K": (0.35, 0.0, 0.0), "G": (0.35, 0.0, 0.0), "NG": (0.35, 0.0, 0.0),
    "T": (0.30, 0.0, 0.2), "D": (0.30, 0.0, 0.2), "N": (0.30, 0.0, 0.2), "S": (0.15, 0.0, 0.4),
    "Z": (0.15, 0.0, 0.4), "SH": (0.25, 0.6, 0.0), "ZH": (0.25, 0.6, 0.0), "CH": (0.25, 0.6, 0.0),
    "JH": (0.25, 0.6, 0.0), "TH": (0.25, 0.0, 0.0), "DH": (0.25, 0.0, 0.0), "F": (0.10, 0.0, 0.0),
    "V": (0.10, 0.0, 0.0), "P": (0.0, 0.0, 0.0), "B": (0.0, 0.0, 0.0), "M": (0.0, 0.0, 0.0),
}
_BILABIAL, _LABIODENTAL, _DENTAL = {"P", "B", "M"}, {"F", "V"}, {"TH", "DH"}
# diphthongs glide from one vowel to another: first half, second half
DIPHTHONGS = {"AW": ("AA", "UH"), "AY": ("AA", "IY"), "EY": ("EH", "IY"), "OW": ("AO", "UW"), "OY": ("AO", "IY")}
PHONES = tuple(_VALUES) + tuple(DIPHTHONGS)


def articulation_of(phone: str) -> np.ndarray:
    """The articulatory vector (N_ARTIC,) of one phone (a diphthong: the mean of its two ends); silence
    and fillers (SIL, +NSN+, ...) are silence."""
    if phone in DIPHTHONGS:
        return (articulation_of(DIPHTHONGS[phone][0]) + articulation_of(DIPHTHONGS[phone][1])) / 2
    if phone not in _VALUES:
        out = np.zeros(N_ARTIC, np.float32)
        out[-1] = 1.0
        return out
    o, r, s = _VALUES[phone]
    return np.array([o, r, s, phone in _BILABIAL, phone in _LABIODENTAL, phone in _DENTAL, 0.0], np.float32)


_local = threading.local()


def _decoder():
    """This thread's decoder (a decoder holds one utterance at a time, so threads never share one),
    with its feature state (the live cepstral mean among it) back at the start: pocketsphinx otherwise
    carries what it heard into the next utterance, so a clip's phones depended on what the process
    decoded before (a server's second request, a worker's second clip), and a cache on its --workers."""
    if getattr(_local, "decoder", None) is None:
        _local.decoder = _new_decoder()
    else:
        _local.decoder.reinit_feat()
    return _local.decoder


def _new_decoder():
    """pocketsphinx's all-phone decoder with its shipped US-English acoustic model and phone LM."""
    try:
        import pocketsphinx
    except ImportError:
        raise MissingWeightsError("the phone recogniser is missing; install it with `pip install pocketsphinx` "
                                  "(its wheel ships the acoustic model)") from None
    hmm, lm = pocketsphinx.get_model_path("en-us/en-us"), pocketsphinx.get_model_path("en-us/en-us-phone.lm.bin")
    import os
    if not (os.path.isdir(hmm) and os.path.isfile(lm)):
        raise MissingWeightsError(f"pocketsphinx's English model is missing ({hmm}); reinstall it with "
                                  "`pip install --force-reinstall pocketsphinx`")
    cfg = pocketsphinx.Config(hmm=hmm, allphone=lm, lm=None, beam=1e-20, pbeam=1e-20, lw=LANGUAGE_WEIGHT,
                              loglevel="FATAL")
    return pocketsphinx.Decoder(cfg)


BLOCK_ROWS = int(round(CHUNK_S / ROW_S))  # rows of one decoded piece


def phone_blocks(y: np.ndarray) -> Iterator[list[tuple[str, int, int]]]:
    """The phones of each CHUNK_S piece of ``y`` in turn (as :func:`phones`), decoded in order on one decoder:
    its running cepstral mean goes on from one piece to the next, so a piece's phones are the same whether
    the speech is read at once or a block at a time (:class:`~.motion.speech.ExtraRows`)."""
    dec = _decoder()
    chunk = int(CHUNK_S * SAMPLE_RATE)
    for start in range(0, len(y), chunk):
        piece = y[start:start + chunk]
        if not np.abs(piece).max(initial=0.0) >= SILENCE_PEAK:     # silence has no phones: not decoded at all
            yield []
            continue
        pcm = (np.clip(piece, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        dec.start_utt()
        dec.process_raw(pcm, full_utt=True)
        dec.end_utt()
        offset = start // HOP_LENGTH
        # a chunk the search ends without any hypothesis for (it happens on some non-English speech) has no
        # segmentation at all: it is heard as silence
        yield [(s.word, offset + s.start_frame, offset + s.end_frame + 1) for s in dec.seg() or ()]


def phones(y: np.ndarray) -> list[tuple[str, int, int]]:
    """Phones heard in ``y`` (mono float32 at SAMPLE_RATE) as (phone, first row, end row), rows of ROW_S."""
    return [p for block in phone_blocks(y) for p in block]


def articulation_rows(heard: list[tuple[str, int, int]], first: int, end: int) -> np.ndarray:
    """Articulatory rows ``first``..``end`` (end - first, N_ARTIC) of the ``heard`` phones; silence elsewhere."""
    out = np.tile(articulation_of("SIL"), (max(0, end - first), 1))
    for phone, a, b in heard:
        a, b = max(first, a) - first, min(end, b) - first
        if b <= a:
            continue
        if phone in DIPHTHONGS:
            mid = (a + b + 1) // 2
            out[a:mid] = articulation_of(DIPHTHONGS[phone][0])
            out[mid:b] = articulation_of(DIPHTHONGS[phone][1])
        else:
            out[a:b] = articulation_of(phone)
    return out


def articulation(y: np.ndarray, n_frames: int) -> np.ndarray:
    """Articulatory rows (n_frames * MEL_PER_FRAME, N_ARTIC), aligned with ``audio.log_mel``'s rows."""
    return articulation_rows(phones(y), 0, n_frames * MEL_PER_FRAME)
