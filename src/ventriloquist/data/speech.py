"""Emotional-speech corpora: one list of labelled clips, whatever layout the data comes in.

Two sources are understood:

* the prepared layout of ``../shared/data/speech_emotion`` - a ``labels.csv`` with columns
  ``path, corpus, speaker, emotion, language, split, duration_s`` (paths relative to the CSV);
* the public corpora as distributed, detected from their file names (any folder depth):

  ========  ===============================  =================================================
  corpus    file name                        test split (fixed, speaker-independent)
  ========  ===============================  =================================================
  TESS      ``OAF_back_angry.wav``           the 12 words in ``TESS_TEST_WORDS`` (2 speakers
                                             only, so the split is by word, as in labels.csv)
  EmoDB     ``03a01Fa.wav``                  speakers 03 and 08
  RAVDESS   ``03-01-05-01-02-01-01.wav``     actors 21-24 (speech only, vocal channel 01)
  CREMA-D   ``1001_DFA_ANG_XX.wav``          actors 1082-1091
  SAVEE     ``DC/a01.wav`` (speaker folder)  speaker KL
  ========  ===============================  =================================================

Labels are mapped onto the 7-class vocabulary with :func:`ventriloquist.emotion.vocabulary.to_index`;
clips whose label has no place in it are dropped.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from ..emotion.vocabulary import to_index
from ..errors import InputError

SPEECH_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")

TESS_TEST_WORDS = frozenset(("back", "bath", "bean", "book", "cab", "came", "cause", "chain", "chair", "chalk",
                             "choice", "deep"))
EMODB_TEST_SPEAKERS = frozenset(("03", "08"))
RAVDESS_TEST_ACTORS = frozenset(("21", "22", "23", "24"))
CREMAD_TEST_ACTORS = frozenset(str(a) for a in range(1082, 1092))
SAVEE_TEST_SPEAKERS = frozenset(("KL",))
SAVEE_SPEAKERS = frozenset(("DC", "JE", "JK", "KL"))

EMODB_CODES = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness",
               "N": "neutral"}
RAVDESS_CODES = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
                 "07": "disgust", "08": "surprised"}
CREMAD_CODES = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
SAVEE_CODES = {"a": "anger", "d": "disgust", "f": "fear", "h": "happiness", "n": "neutral", "sa": "sadness",
               "su": "surprise"}

_TESS = re.compile(r"^([A-Za-z]{3})_([A-Za-z]+)_([A-Za-z_]+)$")
_EMODB = re.compile(r"^(\d\d)([a-z]\d\d)([WLEAFTN])([a-z])$")
_RAVDESS = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_CREMAD = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
_SAVEE = re.compile(r"^(sa|su|a|d|f|h|n)(\d\d)$")

HOW_TO_GET = ("point --data at the folder that holds speech_emotion/labels.csv (../shared/data in this project; "
              "see data/README.md), or at a folder with the public corpora (TESS, EmoDB, RAVDESS, CREMA-D, SAVEE) "
              "as distributed")


@dataclass(frozen=True)
class SpeechItem:
    path: Path
    corpus: str
    speaker: str
    emotion: int            # index into emotion.vocabulary.EMOTIONS
    split: str              # "train" or "test"
    label: str = ""         # the corpus's own label before mapping (e.g. "boredom")
    language: str = ""


def parse_name(path: Path) -> SpeechItem | None:
    """The labelled item a public-corpus file name describes, or None for files of no known corpus."""
    path = Path(path)
    if path.suffix.lower() not in SPEECH_EXTENSIONS + (".mp4", ".flv"):
        return None
    stem = path.stem
    m = _RAVDESS.match(stem)
    if m:
        modality, channel, emo, actor = m.group(1), m.group(2), m.group(3), m.group(7)
        if modality == "02" or channel != "01" or emo not in RAVDESS_CODES:   # video-only or song
            return None
        return _item(path, "RAVDESS", actor, RAVDESS_CODES[emo], actor in RAVDESS_TEST_ACTORS, "en")
    m = _CREMAD.match(stem)
    if m:
        actor, emo = m.group(1), m.group(3)
        if emo not in CREMAD_CODES:
            return None
        return _item(path, "CREMA-D", actor, CREMAD_CODES[emo], actor in CREMAD_TEST_ACTORS, "en")
    m = _EMODB.match(stem)
    if m:
        speaker = m.group(1)
        return _item(path, "EmoDB", speaker, EMODB_CODES[m.group(3)], speaker in EMODB_TEST_SPEAKERS, "de")
    m = _TESS.match(stem)
    if m and m.group(1).upper() in ("OAF", "YAF"):
        word, emo = m.group(2).lower(), m.group(3).lower()
        return _item(path, "TESS", m.group(1).upper(), emo, word in TESS_TEST_WORDS, "en")
    m = _SAVEE.match(stem)
    if m and path.parent.name.upper() in SAVEE_SPEAKERS:
        speaker = path.parent.name.upper()
        return _item(path, "SAVEE", speaker, SAVEE_CODES[m.group(1)], speaker in SAVEE_TEST_SPEAKERS, "en")
    return None


def _item(path: Path, corpus: str, speaker: str, label: str, test: bool, language: str) -> SpeechItem | None:
    idx = to_index(label)
    if idx is None:
        return None
    return SpeechItem(path, corpus, speaker, idx, "test" if test else "train", label, language)


def scan_corpora(folder: Path) -> list[SpeechItem]:
    """Every clip of a known public corpus under ``folder`` (recursively), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"speech data folder {folder} does not exist; {HOW_TO_GET}")
    items = [it for p in sorted(folder.rglob("*")) if p.is_file() and (it := parse_name(p)) is not None]
    return items


def read_labels_csv(csv_path: Path) -> list[SpeechItem]:
    """Items of a ``labels.csv`` in the ``speech_emotion`` layout (paths relative to the CSV's folder)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise InputError(f"labels file {csv_path} does not exist; {HOW_TO_GET}")
    root = csv_path.parent
    items = []
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "corpus", "speaker", "emotion", "split"} - set(reader.fieldnames or ())
        if missing:
            raise InputError(f"{csv_path} lacks the column(s) {', '.join(sorted(missing))}; expected "
                             "path, corpus, speaker, emotion, language, split, duration_s")
        for row in reader:
            idx = to_index(row["emotion"])
            if idx is None:
                continue
            items.append(SpeechItem(root / row["path"], row["corpus"], row["speaker"], idx, row["split"].strip(),
                                    row["emotion"], row.get("language", "")))
    return items


def load_speech_items(data: Path, corpora: tuple[str, ...] | None = None) -> list[SpeechItem]:
    """Labelled clips from a data root, a ``speech_emotion`` folder, a ``labels.csv`` or raw corpora.

    ``corpora`` keeps only the named corpora (case-insensitive), e.g. ``("TESS", "EmoDB")``.
    """
    data = Path(data)
    if data.is_file() and data.suffix == ".csv":
        items = read_labels_csv(data)
    elif not data.is_dir():
        raise InputError(f"speech data folder {data} does not exist; {HOW_TO_GET}")
    elif (data / "speech_emotion" / "labels.csv").is_file():
        items = read_labels_csv(data / "speech_emotion" / "labels.csv")
    elif (data / "labels.csv").is_file():
        items = read_labels_csv(data / "labels.csv")
    else:
        items = scan_corpora(data)
    if corpora:
        want = {c.lower() for c in corpora}
        items = [it for it in items if it.corpus.lower() in want]
    if not items:
        raise InputError(f"no labelled emotional speech found in {data}"
                         + (f" for corpora {', '.join(corpora)}" if corpora else "") + f"; {HOW_TO_GET}")
    return items
