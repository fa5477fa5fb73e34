"""Shipped default weights: versioned files with SHA-256 checksums checked at every load.

``manifest.json`` in this folder maps a model name to its file, checksum, version and the
recipe that produced it. Loading never touches the network; a missing or altered file is
an error that says how to get it back.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import MissingWeightsError

WEIGHTS_DIR = Path(__file__).parent
ENV = "VENTRILOQUIST_WEIGHTS"      # a folder of your own weights (same manifest format) replaces the shipped ones


def weights_dir() -> Path:
    return Path(os.environ.get(ENV) or WEIGHTS_DIR)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest(folder: Path | None = None) -> dict[str, dict[str, Any]]:
    path = (folder or weights_dir()) / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def weights_path(name: str, folder: Path | None = None) -> Path:
    """Path of a verified weights file, or a MissingWeightsError saying how to produce it."""
    folder = folder or weights_dir()
    entry = manifest(folder).get(name)
    if entry is None:
        raise MissingWeightsError(
            f"no '{name}' weights in {folder / 'manifest.json'}; train them with `ventriloquist train {name}` "
            "(see docs/TRAINING.md) or reinstall the package")
    path = folder / entry["file"]
    if not path.is_file():
        raise MissingWeightsError(f"weights file {path} is missing; reinstall the package or retrain with "
                                  f"`{entry.get('recipe', 'ventriloquist train ' + name)}`")
    digest = sha256(path)
    if digest != entry["sha256"]:
        raise MissingWeightsError(f"weights file {path} is corrupt (SHA-256 {digest[:12]}... does not match the "
                                  "manifest); reinstall the package or retrain")
    return path


def load_checkpoint(name: str, folder: Path | None = None) -> dict[str, Any]:
    """The verified checkpoint dict (``state_dict`` plus ``config`` and metadata) of a model."""
    import torch
    return torch.load(weights_path(name, folder), map_location="cpu", weights_only=False)


def publish(name: str, checkpoint: dict[str, Any], version: str, recipe: str, folder: Path | None = None) -> Path:
    """Write a checkpoint into a weights folder and record its checksum in the manifest."""
    import torch
    folder = folder or weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.pt"
    torch.save(checkpoint, path)
    entries = manifest(folder)
    entries[name] = {"file": path.name, "sha256": sha256(path), "version": version, "recipe": recipe,
                     "bytes": path.stat().st_size}
    (folder / "manifest.json").write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    return path
