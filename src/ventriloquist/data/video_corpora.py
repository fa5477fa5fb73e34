"""Talking-face and emotion videos: one list of clips with metadata, whatever layout they come in.

Three kinds of input are understood:

* the prepared layout of ``../shared/data`` - ``talking_face/clips.csv`` (GRID s1; columns
  ``path, alignment, speaker, transcript, split``) and ``emotion_video/labels.csv`` (MEAD and
  CREMA-D samples; columns ``path, corpus, speaker, emotion, intensity, has_audio``). The
  emotion samples are all ``test`` for the motion generator; Exp2Emo training uses them
  whatever their split (select them by corpus);
* the public corpora as distributed, detected from their paths (any folder depth):

  ==========  ===============================================  ==========================================
  corpus      path                                             test split (fixed, speaker-independent)
  ==========  ===============================================  ==========================================
  MEAD        ``M030/video/front/angry/level_3/001.mp4``       speakers numbered 035 and above
  RAVDESS     ``Actor_01/01-01-05-01-02-01-01.mp4``            actors 21-24 (as for speech)
  CREMA-D     ``VideoFlash/1001_DFA_ANG_XX.flv``               actors 1082-1091 (as for speech)
  GRID        ``s1/bbaf2n.mpg`` (+ optional ``align/*.align``)  speakers s30-s34
  VoxCeleb2   ``id00012/abc123DEF45/00001.mp4``                its own ``dev``/``test`` folder when the
                                                               path has one, else ids whose CRC-32 is 0 mod 10
  ==========  ===============================================  ==========================================

* any other video file or folder of videos: corpus ``custom``, no labels, split ``train``
  unless told otherwise.

Emotion labels are mapped onto the 7-class vocabulary (``emotion``, '' when unknown or with no
place in it); the corpus's own word is kept in ``label``.
"""
from __future__ import annotations

import csv
import hashlib
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..emotion.vocabulary import EMOTIONS, to_index
from ..errors import InputError
from ..video import VIDEO_EXTENSIONS
from .speech import CREMAD_CODES, CREMAD_TEST_ACTORS, RAVDESS_CODES, RAVDESS_TEST_ACTORS

AUDIO_SIDECAR_EXTENSIONS = (".m4a", ".wav", ".flac", ".mp3", ".aac")

MEAD_VIEWS = frozenset(("front",))            # the other six camera angles are too oblique for 2-D landmarks
MEAD_TEST_FROM = 35                           # MEAD speakers M035.., W035.. are test (about 20 % of 48)
GRID_TEST_SPEAKERS = frozenset(f"s{i}" for i in range(30, 35))
VOX_TEST_MODULO = 10                          # VoxCeleb2 without dev/test folders: crc32(id) % 10 == 0 is test
RAVDESS_MODALITIES = {"01": True, "02": False}  # audio-video, video-only (03 = audio-only is not a video)
RAVDESS_SPEECH_CHANNEL = "01"                 # 02 = song: singing mouths are not speech
CUSTOM_CORPUS = "custom"
KEY_MAX = 96                                  # characters of readable key before the hash

SHARED_CLIPS_CSV = Path("talking_face") / "clips.csv"
SHARED_EMOTION_CSV = Path("emotion_video") / "labels.csv"
CLIPS_COLUMNS = {"path", "speaker", "split"}
EMOTION_COLUMNS = {"path", "corpus", "speaker", "emotion"}

HOW_TO_GET = ("pass video files, folders of videos, or a data root like ../shared/data "
              "(see docs/DATA.md for the supported corpus layouts)")

_MEAD_SPEAKER = re.compile(r"^[MW]\d{3}$")
_MEAD_LEVEL = re.compile(r"^level_?(\d)$")
_RAVDESS = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_CREMAD = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
_GRID_NAME = re.compile(r"^[blps][bgrw][abiw][a-z][0-9z][anps]$")
_GRID_SPEAKER = re.compile(r"^s\d{1,2}$")
_VOX_ID = re.compile(r"^id\d{5}$")
_VOX_CLIP = re.compile(r"^\d{5}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class VideoItem:
    path: Path                       # the video file
    corpus: str
    speaker: str = ""
    emotion: str = ""                # vocabulary name, '' when unknown
    split: str = "train"
    relpath: str = ""                # corpus-relative path: what the cache key is made from
    label: str = ""                  # the corpus's own emotion word (e.g. 'contempt')
    intensity: int = 0               # MEAD level 1-3, RAVDESS 1-2, 0 when unknown
    audio: Path | None = None        # separate speech file when the video has none of its own
    transcript: str = ""
    alignment: Path | None = None    # GRID word timings

    @property
    def key(self) -> str:
        """Stable, filesystem-safe id: readable corpus + path, plus a hash so no two paths collide."""
        ident = f"{self.corpus}/{self.relpath or self.path.name}"
        readable = _UNSAFE.sub("_", str(Path(ident).with_suffix("")).replace("/", "_")).strip("._")[:KEY_MAX]
        return f"{readable}-{hashlib.sha1(ident.encode()).hexdigest()[:8]}"


def vocab_emotion(label: str) -> str:
    """The vocabulary name of a corpus label, or '' when it has none."""
    idx = to_index(label) if label else None
    return "" if idx is None else EMOTIONS[idx]


def _split(test: bool) -> str:
    return "test" if test else "train"


# --- generic corpora, detected from paths ---------------------------------------------------------

def _mead(path: Path) -> VideoItem | None:
    parts = path.parts
    for i in range(len(parts) - 5):
        spk, kind, view, emo, level = parts[i:i + 5]
        if _MEAD_SPEAKER.match(spk) and kind == "video" and i + 6 == len(parts):
            m = _MEAD_LEVEL.match(level)
            if m is None or view not in MEAD_VIEWS:
                return None
            audio = None
            for ext in AUDIO_SIDECAR_EXTENSIONS:   # MEAD ships speech separately: <spk>/audio/<emo>/level_n/001.m4a
                cand = Path(*parts[:i + 1], "audio", emo, level, path.stem + ext)
                if cand.is_file():
                    audio = cand
                    break
            return VideoItem(path, "MEAD", spk, vocab_emotion(emo), _split(int(spk[1:]) >= MEAD_TEST_FROM),
                             "/".join(parts[i:]), emo, int(m.group(1)), audio)
    return None


def _ravdess(path: Path) -> VideoItem | None:
    m = _RAVDESS.match(path.stem)
    if m is None:
        return None
    modality, channel, emo, intensity, actor = m.group(1), m.group(2), m.group(3), m.group(4), m.group(7)
    if modality not in RAVDESS_MODALITIES or channel != RAVDESS_SPEECH_CHANNEL or emo not in RAVDESS_CODES:
        return None
    if not RAVDESS_MODALITIES[modality] and (path.parent / ("01" + path.name[2:])).is_file():
        return None    # the video-only copy of an audio-video recording we already have
    label = RAVDESS_CODES[emo]
    return VideoItem(path, "RAVDESS", actor, vocab_emotion(label), _split(actor in RAVDESS_TEST_ACTORS),
                     f"Actor_{actor}/{path.name}", label, int(intensity))


def _cremad(path: Path) -> VideoItem | None:
    m = _CREMAD.match(path.stem)
    if m is None or m.group(3) not in CREMAD_CODES:
        return None
    actor, label = m.group(1), CREMAD_CODES[m.group(3)]
    return VideoItem(path, "CREMA-D", actor, vocab_emotion(label), _split(actor in CREMAD_TEST_ACTORS), path.name,
                     label)


def _grid_alignment(path: Path, speaker: str) -> Path | None:
    name = path.stem + ".align"
    spk_dir = next((p for p in path.parents if p.name == speaker), path.parent)
    for cand in (path.with_suffix(".align"), path.parent / "align" / name, spk_dir / "align" / name,
                 spk_dir.parent / "align" / speaker / name, spk_dir.parent / "alignments" / speaker / name):
        if cand.is_file():
            return cand
    return None


def _grid(path: Path) -> VideoItem | None:
    if not _GRID_NAME.match(path.stem):
        return None
    speaker = next((p.name for p in path.parents if _GRID_SPEAKER.match(p.name)), None)
    if speaker is None:
        return None
    return VideoItem(path, "GRID", speaker, "", _split(speaker in GRID_TEST_SPEAKERS), f"{speaker}/{path.name}",
                     alignment=_grid_alignment(path, speaker))


def _voxceleb(path: Path) -> VideoItem | None:
    parts = path.parts
    if len(parts) < 3 or not (_VOX_ID.match(parts[-3]) and _VOX_CLIP.match(path.stem)):
        return None
    spk = parts[-3]
    official = next((p for p in reversed(parts[:-3]) if p in ("dev", "test")), None)
    test = official == "test" if official else zlib.crc32(spk.encode()) % VOX_TEST_MODULO == 0
    return VideoItem(path, "VoxCeleb2", spk, "", _split(test), "/".join(parts[-3:]))


_PARSERS = (_mead, _ravdess, _cremad, _grid, _voxceleb)


def parse_video_path(path: Path) -> VideoItem | None:
    """The clip a public-corpus path describes, or None for a file of no known corpus (or one we leave out)."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        return None
    for parse in _PARSERS:
        item = parse(path)
        if item is not None:
            return item
    return None


def _known_pattern(path: Path) -> bool:
    """True when the path belongs to a known corpus even if ``parse_video_path`` leaves it out (e.g. song)."""
    s = path.stem
    return bool(_RAVDESS.match(s) or _CREMAD.match(s) or (path.parent.name.startswith("level")
                                                          and any(_MEAD_SPEAKER.match(p) for p in path.parts)))


def scan_folder(folder: Path, split: str = "train") -> list[VideoItem]:
    """Every video under ``folder`` (recursively, hidden entries skipped), sorted by path.

    Files of a known corpus get its metadata; the rest are ``custom`` clips with ``split``.
    """
    folder = Path(folder)
    items = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if not p.is_file() or p.suffix.lower() not in VIDEO_EXTENSIONS or any(s.startswith(".") for s in rel.parts):
            continue
        item = parse_video_path(p)
        if item is None and not _known_pattern(p):
            item = VideoItem(p, CUSTOM_CORPUS, split=split, relpath=f"{folder.name}/{rel.as_posix()}")
        if item is not None:
            items.append(item)
    return items


# --- the ../shared/data layout ----------------------------------------------------------------------

def _read_csv(csv_path: Path, need: set[str]) -> list[dict]:
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = need - set(reader.fieldnames or ())
        if missing:
            raise InputError(f"{csv_path} lacks the column(s) {', '.join(sorted(missing))}; "
                             "see docs/DATA.md for the expected columns")
        return [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]


def read_clips_csv(csv_path: Path) -> list[VideoItem]:
    """Talking-face clips of a ``talking_face/clips.csv`` (paths relative to the CSV's folder)."""
    csv_path = Path(csv_path)
    root = csv_path.parent
    items = []
    for row in _read_csv(csv_path, CLIPS_COLUMNS):
        align = root / row["alignment"] if row.get("alignment") else None
        # GRID's clips.csv carries word alignments; another folder's clips are its own corpus
        corpus = row.get("corpus") or ("GRID" if align is not None else CUSTOM_CORPUS)
        items.append(VideoItem(root / row["path"], corpus, row["speaker"], "",
                               row["split"] or "train", row["path"], transcript=row.get("transcript", ""),
                               alignment=align))
    return items


def read_emotion_csv(csv_path: Path, split: str = "test") -> list[VideoItem]:
    """Emotion clips of an ``emotion_video/labels.csv``; they are all ``split`` (test for the generator)."""
    csv_path = Path(csv_path)
    root = csv_path.parent
    items = []
    for row in _read_csv(csv_path, EMOTION_COLUMNS):
        level = row.get("intensity", "")
        items.append(VideoItem(root / row["path"], row["corpus"], row["speaker"], vocab_emotion(row["emotion"]),
                               row.get("split") or split, row["path"], row["emotion"],
                               int(level) if level.isdigit() else 0))
    return items


def read_shared_layout(root: Path) -> list[VideoItem]:
    """GRID talking faces and MEAD / CREMA-D emotion clips of a ``../shared/data``-style root."""
    root = Path(root)
    items: list[VideoItem] = []
    if (root / SHARED_CLIPS_CSV).is_file():
        items += read_clips_csv(root / SHARED_CLIPS_CSV)
    if (root / SHARED_EMOTION_CSV).is_file():
        items += read_emotion_csv(root / SHARED_EMOTION_CSV)
    return items


def _csv_columns(csv_path: Path) -> set[str]:
    with open(csv_path, newline="") as f:
        return set(csv.DictReader(f).fieldnames or ())


def _read_any_csv(csv_path: Path) -> list[VideoItem]:
    cols = _csv_columns(csv_path)
    if EMOTION_COLUMNS <= cols:
        return read_emotion_csv(csv_path)
    if CLIPS_COLUMNS <= cols:
        return read_clips_csv(csv_path)
    raise InputError(f"{csv_path} is neither a clips.csv nor an emotion labels.csv; see docs/DATA.md")


def discover(inputs: list[Path], split: str = "train") -> list[VideoItem]:
    """Clips of every input (file, folder, CSV or data root), first occurrence of each video kept.

    ``split`` applies to videos of no known corpus.
    """
    items: list[VideoItem] = []
    seen: set[Path] = set()
    for inp in inputs:
        inp = Path(inp)
        if not inp.exists():
            raise InputError(f"{inp} does not exist; {HOW_TO_GET}")
        if inp.is_file() and inp.suffix.lower() == ".csv":
            found = _read_any_csv(inp)
        elif inp.is_file():
            if inp.suffix.lower() not in VIDEO_EXTENSIONS:
                raise InputError(f"{inp} is not a video file ({', '.join(VIDEO_EXTENSIONS)}); {HOW_TO_GET}")
            found = [parse_video_path(inp) or VideoItem(inp, CUSTOM_CORPUS, split=split, relpath=inp.name)]
        elif (inp / SHARED_CLIPS_CSV).is_file() or (inp / SHARED_EMOTION_CSV).is_file():
            found = read_shared_layout(inp)
        elif (inp / "clips.csv").is_file():
            found = read_clips_csv(inp / "clips.csv")
        elif (inp / "labels.csv").is_file() and EMOTION_COLUMNS <= _csv_columns(inp / "labels.csv"):
            found = read_emotion_csv(inp / "labels.csv")
        else:
            found = scan_folder(inp, split)
        for it in found:
            real = it.path.resolve()
            if real not in seen:
                seen.add(real)
                items.append(it)
    return items


def read_alignment(path: Path) -> tuple[list[str], list[tuple[float, float]]]:
    """Words and (start, end) seconds of a GRID ``.align`` file (units of 1/25,000 s; sil/sp dropped)."""
    words, times = [], []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] not in ("sil", "sp"):
            words.append(parts[2])
            times.append((int(parts[0]) / 25000.0, int(parts[1]) / 25000.0))
    return words, times
