"""Training sets in memory-mapped files, so that what a training process holds does not grow with the data.

A stage turns the cache's clips into the arrays it trains on (emotion tracks, deformations, model
input rows) once, one clip at a time, and writes them here. Every process then maps the same files
read-only: the operating system pages in the rows a batch touches, shares them between the processes
of a machine and drops them under memory pressure. A process itself keeps only each clip's offsets and
a few strings (about 1 KB a clip). Under torchrun each process builds its own span of the clips (the
emotion tracks are the slow part), so the store's content and order do not depend on the number of
processes. Layout::

    <folder>/store.json            {"fingerprint", "clips", "parts"}: written last, when every part is complete
    <folder>/part-000/items.json   per file its dtype, row shape and rows; per clip its scalars and, per array
                                   field, [file, first row, end row]
    <folder>/part-000/<field>.bin  the rows of that field of the part's clips, end to end
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import InputError
from .distributed import World

STORE_FILE = "store.json"
ITEMS_FILE = "items.json"
MAX_STAT_FRAMES = 100_000        # statistics over a set's frames (a mean face, motion limits, a basis) use at
                                 # most this many (67 min of video): every clip below it, evenly spaced clips above


def fingerprint(**parts: Any) -> str:
    """A short hash of what a store's content depends on (the cache's index, the settings, the weights used)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _part_name(rank: int) -> str:
    return f"part-{rank:03d}"


def _write_part(folder: Path, items: Sequence[Any], make: Callable[[Any], dict], bar: Callable | None) -> None:
    """One process's part: ``make(item)`` for each item in turn, each array appended to its field's file."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    files: dict[str, Any] = {}
    rows: dict[str, int] = {}
    shapes: dict[str, tuple] = {}
    meta = []
    try:
        for it in (bar(items) if bar else items):
            fields = make(it)
            entry: dict[str, Any] = {"scalars": {}, "arrays": {}}
            for name, value in fields.items():
                if isinstance(value, np.generic):
                    value = value.item()
                if isinstance(value, np.ndarray):
                    value = np.ascontiguousarray(value)
                    if value.ndim == 0:
                        entry["scalars"][name] = value.item()
                        continue
                    key = f"{name}.{value.dtype.str}.{'x'.join(map(str, value.shape[1:]))}"
                    if key not in files:
                        files[key] = open(folder / f"{key}.bin", "wb")
                        rows[key], shapes[key] = 0, value.shape[1:]
                    value.tofile(files[key])
                    entry["arrays"][name] = [key, rows[key], rows[key] + len(value)]
                    rows[key] += len(value)
                elif value is None or isinstance(value, (str, int, float, bool)):
                    entry["scalars"][name] = value
                else:
                    raise TypeError(f"store field {name!r} is a {type(value).__name__}: arrays and scalars only")
            meta.append(entry)
    finally:
        for f in files.values():
            f.close()
    files_meta = {k: {"dtype": k.split(".")[1], "shape": list(shapes[k]), "rows": rows[k]} for k in files}
    tmp = folder / f".{ITEMS_FILE}.tmp"
    tmp.write_text(json.dumps({"files": files_meta, "items": meta}))
    os.replace(tmp, folder / ITEMS_FILE)


class ClipStore(Sequence):
    """The clips of a built store (``build``), in the order they were given: ``store[i]`` is a dict of the
    clip's arrays (read from the mapped files then, as ordinary arrays) and scalars; ``store[a:b]``,
    ``store.subset(ix)`` and ``store.field(name)`` are views that read nothing until asked."""

    def __init__(self, folder: Path, order: np.ndarray | None = None) -> None:
        self.folder = Path(folder)
        info = json.loads((self.folder / STORE_FILE).read_text())
        self._maps: list[dict[str, np.memmap]] = []
        self._entries: list[dict] = []
        for p in range(info["parts"]):
            part = self.folder / _part_name(p)
            meta = json.loads((part / ITEMS_FILE).read_text())
            maps = {}
            for key, f in meta["files"].items():
                if f["rows"] and not np.prod(f["shape"]):      # rows of no values (an empty file cannot be mapped)
                    maps[key] = np.zeros((f["rows"], *f["shape"]), np.dtype(f["dtype"]))
                elif f["rows"]:
                    maps[key] = np.memmap(part / f"{key}.bin", dtype=np.dtype(f["dtype"]), mode="r",
                                          shape=(f["rows"], *f["shape"]))
            self._maps.append(maps)
            self._entries += [dict(e, part=p) for e in meta["items"]]
        self._order = np.arange(len(self._entries)) if order is None else np.asarray(order, dtype=np.int64)

    def _view(self, order: np.ndarray) -> "ClipStore":
        view = object.__new__(ClipStore)
        view.folder, view._maps, view._entries, view._order = self.folder, self._maps, self._entries, order
        return view

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self._view(self._order[i])
        e = self._entries[int(self._order[i])]
        out = dict(e["scalars"])
        for name in e["arrays"]:
            out[name] = np.array(self._mapped(e, name))          # a copy: an ordinary array, read from the file now
        return out

    def _mapped(self, entry: dict, name: str) -> np.memmap:
        """The rows of one clip's field in its mapped file (nothing read yet)."""
        key, a, b = entry["arrays"][name]
        return self._maps[entry["part"]][key][a:b]

    def __iter__(self) -> Iterator[dict]:
        return (self[i] for i in range(len(self)))

    def subset(self, indices: Sequence[int]) -> "ClipStore":
        """The clips at ``indices`` (of this view), as a view."""
        return self._view(self._order[np.asarray(indices, dtype=np.int64)])

    def __add__(self, other: "ClipStore") -> "ClipStore":
        if other.folder != self.folder:
            raise ValueError("only views of one store can be joined")
        return self._view(np.concatenate([self._order, other._order]))

    def field(self, name: str) -> "Field":
        """Array field ``name`` of each clip of this view, read (alone) when asked for."""
        return Field(self, name)

    def read(self, i: int, name: str) -> np.ndarray:
        """Array field ``name`` of clip ``i`` of this view."""
        return np.array(self._mapped(self._entries[int(self._order[i])], name))

    def scalar(self, name: str) -> list:
        """One scalar field of every clip, without touching the arrays."""
        return [self._entries[int(k)]["scalars"].get(name) for k in self._order]

    def frames(self, name: str) -> np.ndarray:
        """Rows of array field ``name`` per clip."""
        out = []
        for k in self._order:
            arr = self._entries[int(k)]["arrays"].get(name)
            out.append(arr[2] - arr[1] if arr else 0)
        return np.array(out, dtype=np.int64)

    def rows(self, name: str) -> np.ndarray:
        """Array field ``name`` of every clip of this view, end to end (``np.concatenate`` of them, filled in place)."""
        parts = [self._mapped(self._entries[int(k)], name) for k in self._order]
        out = np.empty((sum(len(x) for x in parts), *parts[0].shape[1:]), parts[0].dtype)
        at = 0
        for x in parts:
            out[at:at + len(x)] = x
            at += len(x)
        return out

    def for_statistics(self, name: str, cap: int | None = None) -> "ClipStore":
        """This view if its clips hold at most ``cap`` rows of ``name`` in all, else evenly spaced clips that
        do: statistics of a set (a mean face, motion percentiles, a principal basis) then read a bounded
        sample, and on a set below the cap they are exactly those of every clip."""
        n, cap = self.frames(name), MAX_STAT_FRAMES if cap is None else cap
        if n.sum() <= cap:
            return self
        keep = max(1, int(len(n) * cap / n.sum()))
        return self.subset(np.unique(np.linspace(0, len(n) - 1, keep).round().astype(np.int64)))


class Field(Sequence):
    """One array field of a store's clips (``ClipStore.field``): ``field[i]`` reads clip i's array alone."""

    def __init__(self, store: ClipStore, name: str) -> None:
        self.store, self.name = store, name

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self.store.read(i, self.name)


def build(folder: Path | str, items: Sequence[Any], make: Callable[[Any], dict], print_: str,
          world: World = World(), bar: Callable | None = None) -> ClipStore:
    """The store of ``make(item)`` for every item, in order: reused when one with the same fingerprint
    ``print_`` is complete in ``folder``, else built, each process its own span of the items."""
    folder = Path(folder)
    done = folder / STORE_FILE
    if done.is_file():
        try:
            info = json.loads(done.read_text())
        except ValueError:
            info = {}
        if info.get("fingerprint") == print_ and info.get("clips") == len(items):
            return ClipStore(folder)
    world.barrier()                            # every process has looked before the main one removes the old store
    if world.main:
        if done.exists():
            done.unlink()
        for old in folder.glob("part-*"):
            shutil.rmtree(old)
    world.barrier()
    if len(items) >= world.size:
        a, b = world.span(len(items))
    else:                                      # fewer items than processes: the main process builds them all
        a, b = 0, len(items) if world.main else 0
    _write_part(folder / _part_name(world.rank), items[a:b], make, bar)
    world.barrier()
    if world.main:
        tmp = folder / f".{STORE_FILE}.tmp"
        tmp.write_text(json.dumps({"fingerprint": print_, "clips": len(items), "parts": world.size}))
        os.replace(tmp, done)
    world.barrier()
    store = ClipStore(folder)
    if len(store) != len(items):
        raise InputError(f"the training store {folder} holds {len(store)} clips, not {len(items)}; delete it and "
                         "train again")
    return store
