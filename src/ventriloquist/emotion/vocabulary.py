"""The fixed emotion vocabulary and how each corpus's labels map onto it.

Mapping choices (documented in the model card): EmoDB 'boredom' and MEAD 'contempt' have
no class of their own; boredom is a low-arousal neutral delivery, contempt is closest to
disgust in face and voice, so they map there. 'Pleasant surprise' (TESS) is surprise.
"""
from __future__ import annotations

EMOTIONS = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")
N_EMOTIONS = len(EMOTIONS)
INDEX = {e: i for i, e in enumerate(EMOTIONS)}

# label spelled by a corpus (lower case) -> vocabulary entry
ALIASES = {
    "neutral": "neutral", "neu": "neutral", "n": "neutral", "calm": "neutral", "boredom": "neutral",
    "happy": "happy", "happiness": "happy", "hap": "happy", "joy": "happy",
    "sad": "sad", "sadness": "sad",
    "angry": "angry", "anger": "angry", "ang": "angry",
    "fear": "fear", "fearful": "fear", "fea": "fear",
    "disgust": "disgust", "disgusted": "disgust", "dis": "disgust", "contempt": "disgust",
    "surprise": "surprise", "surprised": "surprise", "ps": "surprise", "pleasant_surprise": "surprise",
    "pleasant surprise": "surprise", "sur": "surprise",
}


def to_index(label: str) -> int | None:
    """Vocabulary index of a corpus label, or None when the label has no place in it."""
    name = ALIASES.get(label.strip().lower())
    return None if name is None else INDEX[name]
