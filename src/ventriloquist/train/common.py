"""Training utilities shared by every stage: seeding, config files, checkpoints, logs, progress bars.

A stage keeps its defaults in a dataclass; ``configs/<stage>.toml`` overrides fields by
name (an unknown name is an error, so typos never pass silently). ``Checkpointer`` writes
``last.pt`` every epoch (model, optimizer, scheduler, epoch and RNG states) and ``best.pt``
whenever the validation metric improves; ``--resume`` continues from ``last.pt`` at the
next epoch with the same random streams. ``JsonlLog`` appends one JSON line per epoch.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import time
import tomllib
import typing
from pathlib import Path
from typing import Any, Iterable, TypeVar

import numpy as np
import torch

from ..errors import InputError

T = TypeVar("T")


def interp_rows(x: np.ndarray, pos: np.ndarray, axis: int = 0, dtype: type | None = None) -> np.ndarray:
    """``x`` sampled at fractional positions ``pos`` along ``axis`` (linear, clamped to the ends).

    The augmentations that stretch time or warp the Mel axis all resample this way. The weights
    keep ``pos``'s precision unless ``dtype`` is given.
    """
    n = x.shape[axis]
    pos = np.clip(pos, 0, n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    w = pos - lo if dtype is None else (pos - lo).astype(dtype)
    w = w.reshape([len(w) if d == axis else 1 for d in range(x.ndim)])
    return np.take(x, lo, axis=axis) * (1 - w) + np.take(x, hi, axis=axis) * w


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU) so a run repeats exactly on the same machine."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def set_threads(n: int | None = None) -> int:
    """Limit torch's intra-op threads (default: VENTRILOQUIST_THREADS or 2) and return the number used."""
    n = n or int(os.environ.get("VENTRILOQUIST_THREADS", "2"))
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


# --- config ----------------------------------------------------------------------------------------------------
def _coerce(value: Any, annotation: Any, default: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is tuple or isinstance(default, tuple):
        return tuple(value)
    if (annotation is float or isinstance(default, float)) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def load_config(defaults: type[T] | T, toml_path: str | Path | None = None, **overrides: Any) -> T:
    """The stage's defaults (a dataclass type or instance) with the fields a TOML file sets replaced.

    Keys not among the dataclass's fields raise InputError naming the key and the file.
    ``overrides`` (e.g. ``epochs`` from the command line) are applied last; ``None`` values are ignored.
    """
    cfg = defaults() if isinstance(defaults, type) else dataclasses.replace(defaults)
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    hints = typing.get_type_hints(type(cfg))
    values: dict[str, Any] = {}
    if toml_path is not None:
        path = Path(toml_path)
        if not path.is_file():
            raise InputError(f"config file {path} does not exist; pass an existing TOML file (see configs/)")
        try:
            values = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"config file {path} is not valid TOML: {exc}") from None
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise InputError(f"config file {path} sets unknown key(s) {', '.join(unknown)}; "
                             f"known keys: {', '.join(sorted(fields))}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise InputError(f"unknown config key(s) {', '.join(unknown)}")
    for k, v in values.items():
        setattr(cfg, k, _coerce(v, hints.get(k), getattr(cfg, k)))
    return cfg


# --- checkpoints -----------------------------------------------------------------------------------------------
def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


class Checkpointer:
    """``last.pt`` every epoch and ``best.pt`` when ``metric`` improves (``mode`` "max" or "min")."""

    def __init__(self, folder: str | Path, mode: str = "max", world=None) -> None:
        """``world`` (``distributed.World``): under torchrun only its main process writes, and every
        process waits for the write, so any of them can read the checkpoint back."""
        from .distributed import World
        if mode not in ("max", "min"):
            raise ValueError("mode must be 'max' or 'min'")
        self.world = world or World()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.mode = mode
        self.best: float | None = None
        self.best_epoch: int | None = None

    @property
    def last_path(self) -> Path:
        return self.folder / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.folder / "best.pt"

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def save(self, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
             scheduler: Any = None, metric: float | None = None, extra: dict[str, Any] | None = None,
             rng: dict[str, Any] | None = None) -> bool:
        """Write last.pt (and best.pt when ``metric`` improved); True when this epoch is the new best.

        ``rng`` adds states of extra generators (e.g. a numpy Generator's bit_generator.state).
        """
        is_best = metric is not None and self.improved(metric)
        if is_best:
            self.best, self.best_epoch = float(metric), epoch
        if self.world.main:
            state = {"epoch": epoch, "model": model.state_dict(),
                     "optimizer": optimizer.state_dict() if optimizer is not None else None,
                     "scheduler": scheduler.state_dict() if scheduler is not None else None,
                     "rng": _rng_state(), "extra_rng": rng, "metric": metric,
                     "best": self.best, "best_epoch": self.best_epoch, "extra": extra or {}}
            _atomic_save(state, self.last_path)
            if is_best:
                _atomic_save({"epoch": epoch, "model": state["model"], "metric": metric, "extra": extra or {}},
                             self.best_path)
        self.world.barrier()
        return is_best

    def resume(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
               scheduler: Any = None) -> tuple[int, dict[str, Any]]:
        """Load last.pt into the objects; returns (the next epoch to run, the saved state).

        Raises InputError when there is nothing to resume from.
        """
        if not self.last_path.is_file():
            raise InputError(f"cannot resume: {self.last_path} does not exist; run without --resume first")
        state = torch.load(self.last_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        if optimizer is not None and state.get("optimizer") is not None:
            optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        self.best, self.best_epoch = state.get("best"), state.get("best_epoch")
        return int(state["epoch"]) + 1, state

    def load_best(self, model: torch.nn.Module) -> dict[str, Any]:
        state = torch.load(self.best_path if self.best_path.is_file() else self.last_path, map_location="cpu",
                           weights_only=False)
        model.load_state_dict(state["model"])
        return state


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# --- logs and progress -----------------------------------------------------------------------------------------
class JsonlLog:
    """``log.jsonl``: one JSON object per epoch. On resume, lines of epochs at or after ``start`` are dropped."""

    def __init__(self, path: str | Path, start_epoch: int = 0, write: bool = True) -> None:
        """``write`` False (a torchrun process other than the main one): records are returned, not written."""
        self.path = Path(path)
        self.enabled = write
        self.t0 = time.time()
        if not write:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [r for r in self.read() if r.get("epoch", -1) < start_epoch] if start_epoch > 0 else []
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def write(self, **record: Any) -> dict[str, Any]:
        record.setdefault("time_s", round(time.time() - self.t0, 2))
        if not self.enabled:
            return record
        with open(self.path, "a") as f:
            f.write(json.dumps(_jsonable(record)) + "\n")
        return record


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    return x


def write_json(path: str | Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(obj), indent=2) + "\n")


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, leave: bool = False,
             enabled: bool = True) -> Iterable[T]:
    """A tqdm bar on interactive terminals (silent in logs and CI)."""
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, total=total, leave=leave, disable=None if enabled else True,
                dynamic_ncols=True)
