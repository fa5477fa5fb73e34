"""The prepared-data cache: one compressed ``.npz`` per clip plus an ``index.csv``.

Extraction (face tracking, audio features) is the slow part of training, so it runs once
(``ventriloquist prepare``) and every later step reads arrays from here. Layout::

    cache/
      cache.json          {"format": FORMAT}  - stale caches are refused with a clear error
      index.csv           one row per clip (INDEX_COLUMNS)
      skipped.csv         videos that could not be used, with the reason (from the last run)
      clips/<key>.npz     the arrays of one clip (see ``write_clip``)
      shards/             optional (``prepare --shards N``): the same clip files packed N to a tar
        shard-000000.tar  (WebDataset layout: member ``<key>.npz``), and ``index.json`` saying where
                          each clip lies; a cache of shards alone reads as one of loose clips

All time series share the model time base ``FPS``: ``landmarks``/``shapes``/``pose``/``energy``
have T rows, ``mel``/``mfcc``/``artic`` have ``T * MEL_PER_FRAME`` rows (audio clips only).
"""
from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError

FORMAT = 3                       # bump when fields change meaning; old caches are then refused
                                 # (2: sub-pixel landmarks from averaged box shifts, face.detect;
                                 #  3: phonetic rows ``artic`` beside the Mel rows, ventriloquist.phonetics)
CLIPS_DIR = "clips"
INDEX_FILE = "index.csv"
META_FILE = "cache.json"
SKIPPED_FILE = "skipped.csv"
INDEX_COLUMNS = ("key", "file", "source", "corpus", "speaker", "emotion", "split", "frames", "has_audio")
SKIPPED_COLUMNS = ("source", "corpus", "key", "reason")
ARRAY_FIELDS = ("landmarks", "shapes", "pose", "mel", "mfcc", "energy", "artic")   # float32 time series
STRING_FIELDS = ("source", "corpus", "speaker", "emotion", "split", "label", "transcript", "stamp")


def user_cache_dir() -> Path:
    """Where caches of a user's own data live: ``$VENTRILOQUIST_CACHE``, else the platform's cache
    folder (``$XDG_CACHE_HOME`` or ``~/.cache``) under ``ventriloquist``."""
    if os.environ.get("VENTRILOQUIST_CACHE"):
        return Path(os.environ["VENTRILOQUIST_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ventriloquist"


def stamp(*paths: Path | str | None) -> str:
    """Size and modification time of the files a clip was made from: a replaced file gets a new stamp."""
    parts = []
    for p in paths:
        if p is not None and os.path.exists(p):
            st = os.stat(p)
            parts.append(f"{st.st_size}:{st.st_mtime_ns}")
    return ";".join(parts)


def cache_stamp(cache_dir: Path | str) -> str:
    """The stamp of a cache's index (and shard index): it changes whenever ``prepare`` rewrites the cache, so
    what a training run derives from the cache (train/store.py) knows when to derive it again."""
    cache_dir = Path(cache_dir)
    return stamp(cache_dir / INDEX_FILE, cache_dir / SHARDS_DIR / SHARD_INDEX)


def is_fresh(cache_dir: Path, key: str, source: Path | str, current: str) -> bool:
    """Whether the cached clip ``key`` was made from ``source`` as it is now (stamp ``current``).

    A clip of another file (the folder moved, a same-named folder elsewhere) or of an older version
    of it is stale; clips written before stamps existed count as fresh while their source exists.
    """
    path = clip_file(cache_dir, key)
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            cached_source = str(z["source"].item()) if "source" in z.files else ""
            cached_stamp = str(z["stamp"].item()) if "stamp" in z.files else None
    except Exception:
        return False
    if not cached_source or not Path(cached_source).exists():
        return False
    if Path(cached_source).resolve() != Path(source).resolve():
        return False
    return cached_stamp is None or cached_stamp == current


def _redo(cache_dir: Path | str) -> str:
    return f"delete {cache_dir} and run `ventriloquist prepare <data> --out {cache_dir}` again"


def clip_file(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / CLIPS_DIR / f"{key}.npz"


def check_format(cache_dir: Path, create: bool = False) -> None:
    """Refuse a cache written in another format (or create the marker for a new cache)."""
    cache_dir = Path(cache_dir)
    meta = cache_dir / META_FILE
    if meta.is_file():
        try:
            fmt = json.loads(meta.read_text()).get("format")
        except (ValueError, AttributeError):
            fmt = None
        if fmt != FORMAT:
            raise InputError(f"cache {cache_dir} has format {fmt}, this version needs {FORMAT}; {_redo(cache_dir)}")
    elif create:
        cache_dir.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"format": FORMAT}) + "\n")
    elif (cache_dir / CLIPS_DIR).is_dir():
        raise InputError(f"cache {cache_dir} has no {META_FILE} (written by an older version); {_redo(cache_dir)}")


def encode_clip(fields: dict) -> bytes:
    """One clip's fields as the bytes of its ``.npz`` file (what a remote worker sends back)."""
    import io
    data = {"format": np.int32(FORMAT)}
    for name, value in fields.items():
        if value is None:
            continue
        if name in ARRAY_FIELDS:
            value = np.asarray(value, dtype=np.float32)
        data[name] = np.asarray(value)
    buf = io.BytesIO()
    np.savez_compressed(buf, **data)
    return buf.getvalue()


def write_clip(cache_dir: Path, key: str, fields: dict | bytes) -> Path:
    """Write one clip (its fields, or :func:`encode_clip`'s bytes) atomically: a half-written file
    never appears under its final name."""
    path = clip_file(cache_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = fields if isinstance(fields, bytes) else encode_clip(fields)
    fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _unpack(z) -> dict:
    out = {}
    for name in z.files:
        v = z[name]
        out[name] = v.item() if v.ndim == 0 else v
    return out


def read_npz(path: Path, data: bytes | None = None) -> dict:
    """All fields of one clip file (or of its bytes ``data``, from a shard); scalars come back as Python values."""
    import io
    path = Path(path)
    if data is None and not path.is_file():
        raise InputError(f"cached clip {path} does not exist; {_redo(path.parent.parent)}")
    try:
        with np.load(io.BytesIO(data) if data is not None else path, allow_pickle=False) as z:
            d = _unpack(z)
    except Exception as exc:
        raise InputError(f"cached clip {path} is unreadable ({type(exc).__name__}); delete it and run prepare again") from None
    if d.get("format") != FORMAT:
        raise InputError(f"cached clip {path} has format {d.get('format')}, this version needs {FORMAT}; "
                         f"{_redo(path.parent.parent)}")
    return d


def index_row(cache_dir: Path, path: Path) -> dict:
    """The index row of one clip file, read without decompressing the features."""
    with np.load(path, allow_pickle=False) as z:
        if "format" not in z.files or int(z["format"]) != FORMAT:
            raise InputError(f"cached clip {path} has another format; {_redo(cache_dir)}")
        s = {k: str(z[k].item()) if k in z.files else "" for k in STRING_FIELDS}
        frames = int(z["landmarks"].shape[0])
        has_audio = "mel" in z.files
    return {"key": path.stem, "file": path.relative_to(cache_dir).as_posix(), "source": s["source"],
            "corpus": s["corpus"], "speaker": s["speaker"], "emotion": s["emotion"], "split": s["split"],
            "frames": frames, "has_audio": int(has_audio)}


def rebuild_index(cache_dir: Path) -> list[dict]:
    """Rewrite ``index.csv`` from the clip files present (so it never disagrees with them)."""
    cache_dir = Path(cache_dir)
    rows = [index_row(cache_dir, p) for p in sorted((cache_dir / CLIPS_DIR).glob("*.npz"))]
    fd, tmp = tempfile.mkstemp(prefix=".index.", suffix=".tmp", dir=cache_dir)
    with os.fdopen(fd, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=INDEX_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, cache_dir / INDEX_FILE)
    return rows


def write_skipped(cache_dir: Path, rows: list[dict]) -> Path:
    """``skipped.csv``: the videos of the last run that could not be used, one reason each."""
    path = Path(cache_dir) / SKIPPED_FILE
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SKIPPED_COLUMNS)
        w.writeheader()
        w.writerows({k: r.get(k, "") for k in SKIPPED_COLUMNS} for r in rows)
    return path


def load_index(cache_dir: Path | str) -> list[dict]:
    """Rows of ``index.csv`` with ``frames`` as int and ``has_audio`` as bool."""
    cache_dir = Path(cache_dir)
    path = cache_dir / INDEX_FILE
    if not path.is_file():
        raise InputError(f"{path} does not exist; run `ventriloquist prepare <data> --out {cache_dir}` first")
    check_format(cache_dir)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(INDEX_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise InputError(f"{path} lacks the column(s) {', '.join(sorted(missing))}; {_redo(cache_dir)}")
        rows = list(reader)
    for r in rows:
        r["frames"] = int(r["frames"])
        r["has_audio"] = r["has_audio"].strip().lower() in ("1", "true", "yes")
    return rows


def load_clip(cache_dir: Path | str, key: str) -> dict:
    """Arrays and metadata of one clip (see the module docstring for the fields): its loose file,
    else its member of a shard."""
    path = clip_file(Path(cache_dir), key)
    where = None if path.is_file() else shard_index(cache_dir).get("members", {}).get(key)
    if where is None:
        d = read_npz(path)
    else:
        with open(Path(cache_dir) / SHARDS_DIR / where[0], "rb") as f:
            f.seek(where[1])
            d = read_npz(path, f.read(where[2]))
    d["key"] = key
    return d


# --- shards ------------------------------------------------------------------------------------------------------
SHARDS_DIR = "shards"
SHARD_INDEX = "index.json"
SHARD_NAME = "shard-{:06d}.tar"


_SHARD_INDEXES: dict[Path, tuple[int, dict]] = {}     # parsed once per index file version: load_clip asks per clip


def shard_index(cache_dir: Path | str) -> dict:
    """``shards/index.json`` ({"format", "shards": [{"file", "keys"}], "members": {key: [file, offset, size]}}),
    or {} without shards."""
    path = (Path(cache_dir) / SHARDS_DIR / SHARD_INDEX).resolve()
    if not path.is_file():
        return {}
    mtime = path.stat().st_mtime_ns
    if path in _SHARD_INDEXES and _SHARD_INDEXES[path][0] == mtime:
        return _SHARD_INDEXES[path][1]
    try:
        index = json.loads(path.read_text())
    except ValueError:
        raise InputError(f"{path} is not valid JSON; run `ventriloquist prepare <data> --out {cache_dir} --shards N` "
                         "again") from None
    if index.get("format") != FORMAT:
        raise InputError(f"shards of {cache_dir} have format {index.get('format')}, this version needs {FORMAT}; "
                         f"{_redo(cache_dir)}")
    _SHARD_INDEXES[path] = (mtime, index)
    return index


def pack_shards(cache_dir: Path | str, per_shard: int) -> list[Path]:
    """Pack the loose clip files of the index into tar shards of ``per_shard`` clips (WebDataset layout:
    one member ``<key>.npz`` per clip, in index order) and write ``shards/index.json``; a cluster
    streams these sequentially, and :func:`load_clip` reads a clip from its shard by offset. Shards
    of an earlier packing are replaced (the new set is complete before the index names it)."""
    import tarfile
    cache_dir = Path(cache_dir)
    if per_shard < 1:
        raise InputError(f"--shards must be at least 1 clip per shard, not {per_shard}")
    rows = load_index(cache_dir)
    folder = cache_dir / SHARDS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    shards, members, written = [], {}, []
    for n, start in enumerate(range(0, len(rows), per_shard)):
        chunk = rows[start:start + per_shard]
        name = SHARD_NAME.format(n)
        tmp = folder / f".{name}.tmp"
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for r in chunk:
                info = tar.gettarinfo(clip_file(cache_dir, r["key"]), arcname=f"{r['key']}.npz")
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0                                   # the same clips give the same shard bytes
                with open(clip_file(cache_dir, r["key"]), "rb") as f:
                    tar.addfile(info, f)
        with tarfile.open(tmp) as tar:
            for m in tar.getmembers():
                members[m.name[: -len(".npz")]] = [name, m.offset_data, m.size]
        os.replace(tmp, folder / name)
        shards.append({"file": name, "keys": [r["key"] for r in chunk]})
        written.append(folder / name)
    index = {"format": FORMAT, "clips_per_shard": per_shard, "shards": shards, "members": members}
    fd, tmp = tempfile.mkstemp(prefix=".index.", suffix=".tmp", dir=folder)
    with os.fdopen(fd, "w") as f:
        json.dump(index, f)
    os.replace(tmp, folder / SHARD_INDEX)
    for old in folder.glob("shard-*.tar"):
        if old not in written:
            old.unlink()
    return written


def iter_shard(path: Path | str) -> Iterator[dict]:
    """The clips of one shard in order, read as a stream (no seeking: a pipe or object store works)."""
    import tarfile
    with tarfile.open(path, "r|") as tar:
        for m in tar:
            if m.isfile() and m.name.endswith(".npz"):
                d = read_npz(Path(path) / m.name, tar.extractfile(m).read())
                d["key"] = m.name[: -len(".npz")]
                yield d


def iter_clips(cache_dir: Path | str, split: str | None = None, corpus: str | None = None,
               has_audio: bool | None = None) -> Iterator[dict]:
    """Clips of the cache one at a time, optionally only one split / corpus (case-insensitive) / with audio."""
    for row in load_index(cache_dir):
        if split is not None and row["split"] != split:
            continue
        if corpus is not None and row["corpus"].lower() != corpus.lower():
            continue
        if has_audio is not None and row["has_audio"] != has_audio:
            continue
        yield load_clip(cache_dir, row["key"])
