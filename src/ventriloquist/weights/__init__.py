"""Shipped default weights: versioned files with SHA-256 checksums checked at every load.

``manifest.json`` in this folder maps a model name to its file, checksum, version and the
recipe that produced it. Loading never touches the network; a missing or altered file is
an error that says how to get it back. Inference reads the files without PyTorch
(:func:`read_checkpoint`: tensors become numpy arrays), so a CLI call need not import it.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

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


_STORAGES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
             "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
             "ByteStorage": np.uint8, "BoolStorage": np.bool_}
_SAFE = {("collections", "OrderedDict"), ("_codecs", "encode"), ("numpy", "ndarray"), ("numpy", "dtype"),
         ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
         ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
         ("__builtin__", "bytes"), ("builtins", "bytes")}          # an empty array's data (b"")


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_: Any) -> np.ndarray:
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * storage.itemsize for s in stride))
    return view.copy()


class _TorchFreeUnpickler(pickle.Unpickler):
    """Reads a ``torch.save`` zip file's pickle with tensors as numpy arrays; anything but tensors,
    numpy arrays and plain containers is refused (so, unlike ``torch.load``, it runs no foreign code)."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(archive.open(f"{prefix}/data.pkl"))
        self.archive, self.prefix, self.storages = archive, prefix, {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return lambda data, *_: data
        if module == "torch" and name in _STORAGES:
            return np.dtype(_STORAGES[name])
        if (module, name) in _SAFE:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a weights file")

    def persistent_load(self, pid: tuple) -> np.ndarray:
        _, dtype, key, _, _ = pid
        if key not in self.storages:
            self.storages[key] = np.frombuffer(self.archive.read(f"{self.prefix}/data/{key}"), dtype.newbyteorder("<"))
        return self.storages[key]


def read_checkpoint(name: str, folder: Path | None = None) -> dict[str, Any]:
    """:func:`load_checkpoint` without PyTorch: the same dict, its tensors as numpy arrays (verified file)."""
    path = weights_path(name, folder)
    with zipfile.ZipFile(path) as archive:
        prefix = archive.namelist()[0].split("/")[0]
        return _TorchFreeUnpickler(archive, prefix).load()


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
