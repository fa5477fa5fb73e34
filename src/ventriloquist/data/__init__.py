"""Corpus loaders (labelled emotional speech, talking faces) and caches for training."""
from __future__ import annotations

from .speech import SpeechItem, load_speech_items, parse_name, read_labels_csv, scan_corpora

__all__ = ["SpeechItem", "load_speech_items", "parse_name", "read_labels_csv", "scan_corpora"]
