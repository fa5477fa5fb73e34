"""The fixed emotion vocabulary and how each corpus's labels map onto it.

Mapping choices (documented in the model card): EmoDB 'boredom' and MEAD 'contempt' have
no class of their own; boredom is a low-arousal neutral delivery, contempt is closest to
disgust in face and voice, so they map there. 'Pleasant surprise' (TESS) is surprise.
"""
from __future__ import annotations

from ..errors import InputError, shown

EMOTIONS = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")
N_EMOTIONS = len(EMOTIONS)
INDEX = {e: i for i, e in enumerate(EMOTIONS)}
AUTO = "auto"                                 # the emotion the voice says
EMOTION_CHOICES = (AUTO,) + EMOTIONS

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


def emotion_weights(name: str, where: str = "") -> tuple[float, ...] | None:
    """One-hot weights of an emotion name (any corpus spelling), None for ``auto``."""
    if name.strip().lower() == AUTO:
        return None
    k = to_index(name)
    if k is None:
        raise InputError(f"unknown emotion {shown(name)}{where}; use one of {', '.join(EMOTION_CHOICES)}")
    return tuple(float(i == k) for i in range(N_EMOTIONS))
