"""Stage ``emotion``: train Sp2Emo on labelled emotional speech (TESS + EmoDB by default).

Recipe (defaults in :class:`EmotionConfig`, overridden by ``configs/emotion.toml``):

* every clip's log-Mel is computed once and kept in memory; each epoch draws random
  one-second windows (centred on speech frames) from class- and corpus-balanced clips, with
  augmentation done on the cached log-Mel: time stretch, vocal-tract-length warp of the Mel
  axis, additive noise, gain; then MFCC + per-utterance mean normalisation (:func:`emotion.sp2emo.features_from_mel`,
  the function inference uses) and SpecAugment-style time / coefficient masks;
* with ``neutral_speech``, ordinary read speech (talking-face clip lists, GRID's) is taught as neutral in
  ``neutral_share`` of the windows: the labelled corpora are acted, and heard ordinary speech as emotional;
* Adam, LR 1e-3 halved every ``lr_halve_every`` epochs, cross-entropy with label smoothing; an
  exponential moving average of the weights (``ema``) is what is validated and shipped;
* validation on a held-out part of the *train* split (EmoDB speakers ``val_emodb_speakers``,
  TESS words ``val_tess_words``) picks the best epoch (``select = "best"``) or only scores a fixed
  schedule (``select = "last"``); with ``train_on_val`` the validation clips are trained on too (the
  recipe's settings were chosen on runs without it); the test split is only used at the end;
* test: clip decision = mean of window probabilities over the clip's speech frames; EmoDB
  unweighted accuracy (mean recall over the classes present), TESS accuracy;
* baseline: RBF-SVM on per-clip MFCC statistics (mean + std of MFCC and deltas over speech
  rows), standardised, C picked on the same validation clips, same training clips (with ``train_on_val``
  a refit on train + val with that C is reported as well, for reference).

* the shipped model is an ensemble of ``members`` nets trained this way from seeds
  ``seed``, ``seed + 1``, ...; their clip probabilities are averaged (one net's UA swings by
  several points with its seed on a few hundred clips).

Outputs in ``out/emotion/``: ``member<k>/{last,best}.pt`` and ``member<k>/log.jsonl`` per net,
``metrics.json`` (the ensemble's and each member's scores), ``confusion_<model>_<corpus>.png``.
"""
from __future__ import annotations

import copy
import json
import logging
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..audio import load_audio, log_mel, mfcc
from ..config import MEL_PER_FRAME
from ..data.cache import stamp
from ..data.speech import SpeechItem, load_speech_items
from ..emotion.sp2emo import EmotionRecognizer, features_from_mel, speech_frames, windows
from ..emotion.sp2emo_net import Sp2Emo, Sp2EmoEnsemble, config_dict
from ..emotion.vocabulary import EMOTIONS, INDEX, N_EMOTIONS
from ..errors import InputError
from . import TrainOptions
from .common import (Checkpointer, JsonlLog, interp_rows, load_config, progress, seed_everything, set_threads,
                     write_json)
from .distributed import World, join
from .store import build, fingerprint

log = logging.getLogger(__name__)
RECIPE = "ventriloquist train emotion --config configs/emotion.toml --seed 0 --publish"
NEUTRAL_CORPUS = "read"                  # the corpus name of neutral_speech's clips


@dataclass
class EmotionConfig:
    corpora: tuple[str, ...] = ("TESS", "EmoDB")
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    lr_halve_every: int = 10
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    crops_per_clip: float = 2.0          # windows drawn per training clip and epoch (on average)
    corpus_balance: float = 2.0          # corpora weigh size**(1 - balance): 1 the same, 0 in proportion to size,
                                         # 2 the smaller corpus (EmoDB) more
    mixup: float = 0.0                   # Beta(a, a) mixup of windows and targets; 0 disables
    neutral_speech: tuple[str, ...] = ()  # talking-face clip lists (clips.csv, relative to --data) whose ordinary
                                          # read speech is taught as neutral (the corpora above are all acted)
    neutral_share: float = 0.0           # share of the training windows drawn from those clips
    # model
    channels: tuple[int, int, int] = (64, 128, 128)
    emb_dim: int = 64
    dropout: float = 0.3
    deltas: int = 0                      # delta (1) / delta-delta (2) MFCC channels, computed in the model
    # weight averaging and the final model
    ema: float = 0.997                   # per-step decay of an exponential moving average of the weights
                                         # (BatchNorm statistics included); > 0: validation, selection and
                                         # the shipped model use the averaged weights
    select: str = "last"                 # "best": the epoch with the best validation score; "last": the last
    train_on_val: bool = True            # also train on the validation clips (needs select = "last": nothing
                                         # is left to select on); the SVM baseline keeps its train/val protocol
    # augmentation (on the cached log-Mel, then on the normalised MFCC windows)
    stretch: float = 0.15                # time stretch factor in [1 - s, 1 + s]
    vtlp: float = 0.1                    # Mel-axis warp factor in [1 - v, 1 + v]
    noise_p: float = 0.5                 # probability of additive noise
    noise_snr_db: tuple[float, float] = (10.0, 40.0)
    gain_db: float = 6.0
    time_masks: int = 2
    time_mask_rows: int = 10
    coef_masks: int = 1
    coef_mask_width: int = 3
    # validation (part of the train split) and evaluation
    val_emodb_speakers: tuple[str, ...] = ("09", "12")
    val_tess_words: tuple[str, ...] = ("said", "search", "seize", "sell", "shack", "shall", "shawl", "sheep")
    eval_stride: int = 2                 # frames between evaluated windows at clip level
    svm_c: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    threads: int = 1                     # torch threads; 1 avoids spin-waiting on a busy 2-core machine
    smoke_clips: int = 20
    # the shipped model
    members: int = 3                     # nets from seeds seed .. seed + members - 1, probabilities averaged
                                         # (validation EmoDB UA: one net 0.72-0.77, three 0.76-0.80)


# --- data ------------------------------------------------------------------------------------------------------
_TESS_WORD = re.compile(r"^[A-Za-z]{3}_([A-Za-z]+)_")


def split_items(items: list[SpeechItem], cfg: EmotionConfig) -> tuple[list[SpeechItem], list[SpeechItem],
                                                                       list[SpeechItem]]:
    """(train, val, test): val is a speaker- (EmoDB, other corpora) or word-independent (TESS) part of train."""
    train_all = [it for it in items if it.split != "test"]
    test = [it for it in items if it.split == "test"]
    other_val: set[tuple[str, str]] = set()
    for corpus in sorted({it.corpus for it in train_all} - {"EmoDB", "TESS"}):
        speakers = sorted({it.speaker for it in train_all if it.corpus == corpus})
        if len(speakers) >= 3:
            other_val.add((corpus, speakers[-1]))

    def is_val(it: SpeechItem) -> bool:
        if it.corpus == "EmoDB":
            return it.speaker in cfg.val_emodb_speakers
        if it.corpus == "TESS":
            m = _TESS_WORD.match(it.path.stem)
            return bool(m) and m.group(1).lower() in cfg.val_tess_words
        return (it.corpus, it.speaker) in other_val

    train = [it for it in train_all if not is_val(it)]
    val = [it for it in train_all if is_val(it)]
    if not val or not train:                        # tiny corpora (smoke runs): every 5th clip validates
        train = [it for i, it in enumerate(train_all) if i % 5 != 4]
        val = [it for i, it in enumerate(train_all) if i % 5 == 4]
    return train, val, test


def smoke_subset(items: list[SpeechItem], n: int) -> list[SpeechItem]:
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(items))
    train = [items[i] for i in idx if items[i].split != "test"][: max(2, int(0.75 * n))]
    test = [items[i] for i in idx if items[i].split == "test"][: max(1, n - len(train))]
    return train + test


class Features(Sequence):
    """``features_from_mel`` of each Mel, made when it is read: the validation features of every epoch are
    never all held at once."""

    def __init__(self, mels: Sequence[np.ndarray]) -> None:
        self.mels = mels

    def __len__(self) -> int:
        return len(self.mels)

    def __getitem__(self, i: int) -> tuple:
        return features_from_mel(self.mels[i])


def neutral_speech_items(data: Path, lists: Sequence[str]) -> list[SpeechItem]:
    """The clips of talking-face clip lists as neutral speech (corpus ``NEUTRAL_CORPUS``; the list's split kept):
    read, unacted speech, what ordinary speakers sound like when no emotion is meant."""
    from ..data.video_corpora import read_clips_csv
    items = []
    for name in lists:
        csv_path = Path(data) / name
        if not csv_path.is_file():
            raise InputError(f"neutral speech list {csv_path} does not exist; point --data at ../shared/data "
                             "(data/README.md) or remove it from neutral_speech in the config")
        items += [SpeechItem(v.path, NEUTRAL_CORPUS, v.speaker, INDEX["neutral"], v.split, "read speech")
                  for v in read_clips_csv(csv_path)]
    return items


def sample_weights(items: list[SpeechItem], balance: float, neutral_share: float = 0.0) -> np.ndarray:
    """Per-clip sampling probabilities: classes balanced within a corpus, corpora weighted by size**(1-balance);
    the neutral read speech (``NEUTRAL_CORPUS``) gets ``neutral_share`` of the draws, its speakers weighted by the
    square root of their clip count (one speaker with hundreds of clips does not become the sound of neutral)."""
    read = np.array([it.corpus == NEUTRAL_CORPUS for it in items])
    share = neutral_share if read.any() and (~read).any() else float(read.all())
    w = np.zeros(len(items))
    if (~read).any():
        w[~read] = _acted_weights([it for it, r in zip(items, read) if not r], balance) * (1 - share)
    if read.any():
        speaker = np.array([it.speaker for it in items])
        for s in np.unique(speaker[read]):
            sel = read & (speaker == s)
            w[sel] = np.sqrt(sel.sum()) / sel.sum()
        w[read] *= share / w[read].sum()
    return w / w.sum()


def _acted_weights(items: list[SpeechItem], balance: float) -> np.ndarray:
    """Classes balanced within each corpus, corpora weighted by size**(1 - balance)."""
    corpus = np.array([it.corpus for it in items])
    label = np.array([it.emotion for it in items])
    w = np.zeros(len(items))
    for c in np.unique(corpus):
        in_c = corpus == c
        classes = np.unique(label[in_c])
        share = in_c.sum() ** (1.0 - balance)
        for k in classes:
            sel = in_c & (label == k)
            w[sel] = share / (len(classes) * sel.sum())
    return w / w.sum()


# --- augmentation ----------------------------------------------------------------------------------------------
def augment_mel(mel: np.ndarray, rng: np.random.Generator, cfg: EmotionConfig) -> np.ndarray:
    """A randomly perturbed copy of a log-Mel (time stretch, VTLP warp, noise, gain)."""
    out = mel
    if cfg.stretch > 0:
        r = rng.uniform(1 - cfg.stretch, 1 + cfg.stretch)
        n = max(MEL_PER_FRAME, int(round(len(mel) / r)) // MEL_PER_FRAME * MEL_PER_FRAME)
        out = interp_rows(out, np.linspace(0, len(mel) - 1, n), axis=0, dtype=np.float32)
    if cfg.vtlp > 0:
        a = rng.uniform(1 - cfg.vtlp, 1 + cfg.vtlp)
        out = interp_rows(out, np.arange(out.shape[1]) * a, axis=1, dtype=np.float32)
    if cfg.gain_db > 0:
        out = out + rng.uniform(-cfg.gain_db, cfg.gain_db) * np.log(10) / 10
    if rng.random() < cfg.noise_p:
        loud = np.quantile(out, 0.95)
        snr = rng.uniform(*cfg.noise_snr_db) * np.log(10) / 10
        tilt = rng.uniform(-1.5, 1.5) * np.linspace(-1, 1, out.shape[1])
        noise = loud - snr + tilt + rng.normal(0, 0.5, out.shape).astype(np.float32)
        out = np.logaddexp(out, noise)
    return out.astype(np.float32)


def spec_mask(x: np.ndarray, rng: np.random.Generator, cfg: EmotionConfig) -> np.ndarray:
    """SpecAugment-style masks on normalised windows (B, rows, F), in place: masked values are 0 (the mean)."""
    b, rows, f = x.shape
    for i in range(b):
        for _ in range(cfg.time_masks):
            w = rng.integers(0, cfg.time_mask_rows + 1)
            s = rng.integers(0, rows - w + 1)
            x[i, s:s + w] = 0.0
        for _ in range(cfg.coef_masks):
            w = rng.integers(0, cfg.coef_mask_width + 1)
            s = rng.integers(1, f - w + 1)
            x[i, :, s:s + w] = 0.0
    return x


def draw_windows(mels: Sequence[np.ndarray], labels: np.ndarray, probs: np.ndarray, n: int, rng: np.random.Generator,
                 cfg: EmotionConfig, out: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n augmented training windows (n, rows, F) and their labels, one random speech-centred window per draw;
    with ``out``, the windows are written to that ``.npy`` file, memory-mapped, instead of held in memory."""
    picks = rng.choice(len(mels), size=n, p=probs)
    x = None
    for j, k in enumerate(picks):
        feats, pad, mask = features_from_mel(augment_mel(mels[k], rng, cfg))
        speech = np.flatnonzero(speech_frames(mask))
        t_total = max(1, len(feats) // MEL_PER_FRAME)
        centre = rng.choice(speech) if len(speech) else rng.integers(0, t_total)
        w = windows(feats, pad, np.array([centre]))[0]
        if x is None:
            x = (np.lib.format.open_memmap(out, "w+", w.dtype, (n, *w.shape)) if out is not None
                 else np.empty((n, *w.shape), w.dtype))
        x[j] = w
    return spec_mask(x, rng, cfg), labels[picks]


def draw_epoch(folder: Path, world: World, mels: Sequence[np.ndarray], labels: np.ndarray, probs: np.ndarray, n: int,
               rng: np.random.Generator, cfg: EmotionConfig) -> tuple[np.ndarray, np.ndarray]:
    """The epoch's windows (:func:`draw_windows`), drawn once, by the main process, into a memory-mapped file that
    every process reads its batches from: memory does not grow with the data and the draw is not repeated per
    process. ``rng`` then continues on every process from where the draw left it."""
    folder.mkdir(parents=True, exist_ok=True)
    x_path, y_path, state = folder / "windows.npy", folder / "labels.npy", folder / "stream.json"
    if world.main:
        x, y = draw_windows(mels, labels, probs, n, rng, cfg, out=x_path)
        x.flush()
        np.save(y_path, y)
        state.write_text(json.dumps(rng.bit_generator.state))
    world.barrier()
    if not world.main:
        x, y = np.load(x_path, mmap_mode="r"), np.load(y_path)
        rng.bit_generator.state = json.loads(state.read_text())
    return x, y


def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for every float tensor (BatchNorm statistics too); counters copied."""
    with torch.no_grad():
        for e, m in zip(ema.state_dict().values(), model.state_dict().values()):
            if e.dtype.is_floating_point:
                e.mul_(decay).add_(m, alpha=1 - decay)
            else:
                e.copy_(m)


# --- evaluation ------------------------------------------------------------------------------------------------
def clip_probs(model: Sp2Emo | Sp2EmoEnsemble, feats: list[tuple], stride: int) -> np.ndarray:
    rec = EmotionRecognizer(model, stride=stride)
    out = np.stack([rec.clip_features(*f) for f in feats]) if feats else np.zeros((0, N_EMOTIONS))
    model.train()
    return out


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Accuracy, unweighted accuracy (mean recall over the classes present), confusion (rows: true)."""
    cm = np.zeros((N_EMOTIONS, N_EMOTIONS), int)
    for t, p in zip(y_true, y_pred):
        cm[t, p] += 1
    present = np.flatnonzero(cm.sum(axis=1))
    recall = {EMOTIONS[k]: float(cm[k, k] / cm[k].sum()) for k in present}
    return {"n": int(len(y_true)), "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
            "ua": float(np.mean(list(recall.values()))) if recall else 0.0, "recall": recall,
            "confusion": cm.tolist(), "classes": list(EMOTIONS)}


def per_corpus(items: list[SpeechItem], pred: np.ndarray) -> dict:
    y = np.array([it.emotion for it in items])
    out = {}
    for c in sorted({it.corpus for it in items}):
        sel = np.array([it.corpus == c for it in items])
        out[c] = scores(y[sel], pred[sel])
    return out


def val_metric(res: dict) -> float:
    """Model selection score: mean over corpora of UA (EmoDB-style imbalance-proof)."""
    return float(np.mean([r["ua"] for r in res.values()])) if res else 0.0


def clip_stats(mel: np.ndarray) -> np.ndarray:
    """Baseline features: mean and std of raw MFCC and their deltas over the speech rows."""
    from ..emotion.sp2emo import speech_rows
    m = mfcc(mel=mel)
    d = np.gradient(m, axis=0) if len(m) > 1 else np.zeros_like(m)
    mask = speech_rows(mel)
    m, d = m[mask], d[mask]
    return np.concatenate([m.mean(0), m.std(0), d.mean(0), d.std(0)])


def svm_baseline(train: list, val: list, test: list, mels: Callable[[list], Sequence[np.ndarray]], cfg: EmotionConfig,
                 refit_on_val: bool = False) -> dict:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    def xy(items):
        return np.stack([clip_stats(m) for m in mels(items)]), np.array([it.emotion for it in items])

    xtr, ytr = xy(train)
    xva, _ = xy(val)
    best = None
    for c in cfg.svm_c:
        clf = make_pipeline(StandardScaler(), SVC(C=c, kernel="rbf", gamma="scale", class_weight="balanced"))
        clf.fit(xtr, ytr)
        score = val_metric(per_corpus(val, clf.predict(xva)))
        if best is None or score > best[0]:
            best = (score, c, clf)
    score, c, clf = best
    xte, _ = xy(test)
    out = {"C": c, "val": score, "test": per_corpus(test, clf.predict(xte))}
    if refit_on_val:      # reference only: the same C refitted on train + val (as Sp2Emo with train_on_val)
        x_all, y_all = np.concatenate([xtr, xva]), np.concatenate([ytr, np.array([it.emotion for it in val])])
        clf = make_pipeline(StandardScaler(), SVC(C=c, kernel="rbf", gamma="scale", class_weight="balanced"))
        clf.fit(x_all, y_all)
        out["test_refit_train_val"] = per_corpus(test, clf.predict(xte))
    return out


# --- confusion-matrix images (OpenCV only) ---------------------------------------------------------------------
def draw_confusion(cm: list[list[int]], classes: list[str], title: str, path: Path) -> None:
    import cv2
    cm = np.asarray(cm)
    keep = np.flatnonzero(cm.sum(axis=1) + cm.sum(axis=0))
    cm, names = cm[np.ix_(keep, keep)], [classes[k] for k in keep]
    n, cell, left, top = len(names), 64, 110, 70
    img = np.full((top + n * cell + 90, left + n * cell + 20, 3), 255, np.uint8)
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    heat = cv2.applyColorMap((rows * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, title, (10, 25), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "rows: true, columns: predicted (colour: row share)", (10, 50), font, 0.4, (60, 60, 60), 1,
                cv2.LINE_AA)
    for i in range(n):
        for j in range(n):
            x0, y0 = left + j * cell, top + i * cell
            colour = tuple(int(v) for v in heat[i, j])
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), colour, -1)
            txt = str(int(cm[i, j]))
            ink = (0, 0, 0) if rows[i, j] > 0.6 else (255, 255, 255)
            (tw, th), _ = cv2.getTextSize(txt, font, 0.5, 1)
            cv2.putText(img, txt, (x0 + (cell - tw) // 2, y0 + (cell + th) // 2), font, 0.5, ink, 1, cv2.LINE_AA)
        cv2.putText(img, names[i], (5, top + i * cell + cell // 2 + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, names[i][:7], (left + i * cell + 2, top + n * cell + 20 + 18 * (i % 2)), font, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


# --- the stage -------------------------------------------------------------------------------------------------
def train_member(k: int, seed: int, cfg: EmotionConfig, opts: TrainOptions, folder: Path, train_mels: list,
                 train_y: np.ndarray, probs: np.ndarray, val: list, val_feats: list, n_in: int | None,
                 world: World = World()) -> Sp2Emo:
    """Train one Sp2Emo from ``seed`` (checkpoints and log in ``folder``); returns its final weights, in eval mode.

    The final weights are the moving average at the best (``select = "best"``) or last epoch.
    With ``--resume``, a member whose run is complete is loaded, an interrupted one continues.
    """
    seed_everything(seed)
    model = Sp2Emo(**({"n_in": n_in} if n_in else {}), channels=cfg.channels, emb_dim=cfg.emb_dim, dropout=cfg.dropout,
                   deltas=cfg.deltas)
    ema = copy.deepcopy(model) if cfg.ema > 0 else None
    if ema is not None:
        ema.requires_grad_(False)
    n_steps = 0
    net = world.wrap(model)            # under torchrun: each process trains on its slice of every batch
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, cfg.lr_halve_every), gamma=0.5)
    ckpt = Checkpointer(folder, mode="max", world=world)
    start = 0
    if opts.resume and (k == 0 or ckpt.last_path.is_file()):     # later members may not have started yet
        start, state = ckpt.resume(model, opt, sched)
        if ema is not None:
            ema.load_state_dict(state["extra"]["ema"])
            n_steps = int(state["extra"].get("ema_steps", 0))
    jlog = JsonlLog(folder / "log.jsonl", start_epoch=start, write=world.main)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    n_draw = max(cfg.batch_size, int(round(cfg.crops_per_clip * len(train_mels))))
    if opts.smoke:
        n_draw = min(n_draw, 2 * cfg.batch_size)

    for epoch in range(start, cfg.epochs):
        t0 = time.time()
        rng = np.random.default_rng([seed, epoch])
        x, y = draw_epoch(folder / "epoch", world, train_mels, train_y, probs, n_draw, rng, cfg)
        model.train()
        losses, correct = [], 0
        order = rng.permutation(len(x))
        for i in progress(range(0, len(x), cfg.batch_size), desc=f"member {k} epoch {epoch}"):
            idx = order[i:i + cfg.batch_size]
            xb, yb = torch.from_numpy(x[idx]), torch.from_numpy(y[idx]).long()
            if cfg.mixup > 0:
                lam = float(rng.beta(cfg.mixup, cfg.mixup))
                perm = torch.from_numpy(rng.permutation(len(idx)))
                xb, yb, ym = world.part(lam * xb + (1 - lam) * xb[perm], yb, yb[perm])
                _, logits = net(xb)
                loss = lam * loss_fn(logits, yb) + (1 - lam) * loss_fn(logits, ym)
            else:
                xb, yb = world.part(xb, yb)
                _, logits = net(xb)
                loss = loss_fn(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if ema is not None:
                n_steps += 1
                update_ema(ema, model, min(cfg.ema, (1 + n_steps) / (10 + n_steps)))
            losses.append(loss.item())
            correct += int((logits.argmax(1) == yb).sum())
        lr = opt.param_groups[0]["lr"]
        sched.step()
        res = per_corpus(val, clip_probs(model, val_feats, cfg.eval_stride).argmax(1)) if val else {}
        extra: dict = {"config": config_dict(model), "seed": seed}
        res_raw = None          # with weight averaging, ``res`` scores the averaged weights, this the raw ones
        if ema is not None:
            extra.update(ema=ema.state_dict(), ema_steps=n_steps)
            res, res_raw = (per_corpus(val, clip_probs(ema, val_feats, cfg.eval_stride).argmax(1)) if val else {}), res
        metric = val_metric(res)
        is_best = ckpt.save(epoch, model, opt, sched, metric if cfg.select == "best" else None, extra=extra)
        rec = jlog.write(epoch=epoch, train_loss=float(np.mean(losses)), train_window_acc=correct / len(x),
                         val={c: {"ua": r["ua"], "accuracy": r["accuracy"]} for c, r in res.items()},
                         val_metric=metric, best=is_best, lr=lr, epoch_s=round(time.time() - t0, 2),
                         **({"val_raw": {c: {"ua": r["ua"]} for c, r in res_raw.items()},
                             "val_metric_raw": val_metric(res_raw)} if res_raw is not None else {}))
        log.info("member %d epoch %d loss %.3f val %.3f%s", k, epoch, rec["train_loss"], metric,
                 " *" if is_best else "")
    if cfg.select == "last" and ckpt.last_path.is_file() and world.main:      # the fixed schedule's model is the chosen one
        shutil.copyfile(ckpt.last_path, ckpt.best_path)
    world.barrier()
    if world.main:
        shutil.rmtree(folder / "epoch", ignore_errors=True)       # the last epoch's windows: large, and done with
    best_state = ckpt.load_best(model)
    if ema is not None:
        model.load_state_dict(best_state["extra"]["ema"])
    model.best_epoch = best_state.get("epoch")
    return model.eval()


def run(opts: TrainOptions) -> dict:
    cfg = load_config(EmotionConfig, opts.config, epochs=opts.epochs)
    if opts.smoke:
        cfg.epochs = min(cfg.epochs, 2)
    if cfg.members < 1:
        raise ValueError(f"members must be at least 1, not {cfg.members}")
    threads = set_threads(cfg.threads)
    world = join(opts.device)
    out = Path(opts.out) / "emotion"
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    items = load_speech_items(Path(opts.data), cfg.corpora or None)
    if cfg.neutral_speech and cfg.neutral_share > 0:
        items += neutral_speech_items(Path(opts.data), cfg.neutral_speech)
    if opts.smoke:
        items = smoke_subset(items, cfg.smoke_clips)
    train, val, test = split_items(items, cfg)
    log.info("emotion: %d train, %d val, %d test clips", len(train), len(val), len(test))
    all_items = train + val + test
    paths = [str(it.path) for it in all_items]
    store = build(out / "store", all_items, lambda it: {"mel": log_mel(load_audio(it.path))},
                  fingerprint(paths=paths, stamps=stamp(*paths)), world, lambda it: progress(it, "features"))
    at = {it.path: k for k, it in enumerate(all_items)}

    def mels(items: list[SpeechItem]) -> Sequence[np.ndarray]:
        """The items' Mels, each read from the store (train/store.py) when asked for."""
        return store.subset([at[it.path] for it in items]).field("mel")

    t_feat = time.time() - t_start

    if cfg.select not in ("best", "last"):
        raise ValueError(f"select must be 'best' or 'last', not {cfg.select!r}")
    if cfg.train_on_val and cfg.select != "last":
        raise ValueError("train_on_val needs select = 'last' (the validation clips are training data then)")
    fit = train + val if cfg.train_on_val else train
    train_mels = mels(fit)
    train_y = np.array([it.emotion for it in fit])
    probs = sample_weights(fit, cfg.corpus_balance, cfg.neutral_share)
    val_feats, test_feats = Features(mels(val)), Features(mels(test))
    n_in = (val_feats or test_feats)[0][0].shape[1] if (val_feats or test_feats) else None

    # members from seeds seed, seed + 1, ...: member 0 alone is the single-net recipe
    t_train = time.time()
    nets = [train_member(k, opts.seed + k, cfg, opts, out / f"member{k}", train_mels, train_y, probs, val, val_feats,
                         n_in, world) for k in range(cfg.members)]
    t_train = time.time() - t_train
    model = Sp2EmoEnsemble(nets).eval()

    # --- final evaluation: the ensemble (and each member, for the record) ---
    test_probs = clip_probs(model, test_feats, cfg.eval_stride)
    val_res = per_corpus(val, clip_probs(model, val_feats, cfg.eval_stride).argmax(1)) if val else {}
    sp_test = per_corpus(test, test_probs.argmax(1)) if test else {}
    members = []
    for k, net in enumerate(nets):
        m_val = per_corpus(val, clip_probs(net, val_feats, cfg.eval_stride).argmax(1)) if val else {}
        m_test = per_corpus(test, clip_probs(net, test_feats, cfg.eval_stride).argmax(1)) if test else {}
        members.append({"seed": opts.seed + k, "best_epoch": net.best_epoch,
                        "val_ua": {c: r["ua"] for c, r in m_val.items()},
                        "test_ua": {c: r["ua"] for c, r in m_test.items()}})
    if not world.main:                 # the evaluation, the baseline and every file are the main process's
        return {"sp2emo": {"members": members}}
    svm = svm_baseline(train, val, test, mels, cfg, refit_on_val=cfg.train_on_val) if test and val else {}
    n_params = sum(p.numel() for p in model.parameters())
    metrics = {
        "sp2emo": {"test": sp_test, "val": val_res, "members": members, "params": n_params,
                   "selection": cfg.select, "ema": cfg.ema, "trained_on_val": cfg.train_on_val},
        "svm": svm,
        "summary": {
            "emodb_ua_sp2emo": sp_test.get("EmoDB", {}).get("ua"),
            "emodb_ua_svm": svm.get("test", {}).get("EmoDB", {}).get("ua"),
            "tess_acc_sp2emo": sp_test.get("TESS", {}).get("accuracy"),
            "tess_acc_svm": svm.get("test", {}).get("TESS", {}).get("accuracy"),
            **({"emodb_ua_svm_refit_train_val": svm["test_refit_train_val"].get("EmoDB", {}).get("ua")}
               if "test_refit_train_val" in svm else {}),
        },
        "data": {"train": len(train), "val": len(val), "test": len(test), "corpora": list(cfg.corpora),
                 "read_speech": sum(it.corpus == NEUTRAL_CORPUS for it in all_items),
                 "val_emodb_speakers": list(cfg.val_emodb_speakers), "val_tess_words": list(cfg.val_tess_words)},
        "config": asdict(cfg), "classes": list(EMOTIONS), "seed": opts.seed, "smoke": opts.smoke,
        "time_s": {"features": round(t_feat, 1), "train": round(t_train, 1), "total": round(time.time() - t_start, 1)},
        "threads": threads,
    }
    for name, res in (("sp2emo", sp_test), ("svm", svm.get("test", {}))):
        for corpus, r in res.items():
            draw_confusion(r["confusion"], r["classes"],
                           f"{name} {corpus} test: acc {r['accuracy']:.3f}, UA {r['ua']:.3f} (n={r['n']})",
                           out / f"confusion_{name}_{corpus}.png")
    metrics["time_s"]["total"] = round(time.time() - t_start, 1)
    write_json(out / "metrics.json", metrics)
    if opts.publish:
        from ..weights import publish
        path = publish("sp2emo", {"members": [{"config": config_dict(n), "state_dict": n.state_dict()} for n in nets],
                                  "metrics": metrics["summary"], "vocabulary": list(EMOTIONS),
                                  "features": "MFCC (ventriloquist.audio.mfcc) + per-utterance CMN and scale (sp2emo.normalise), 1-s windows"},
                       version="3", recipe=RECIPE)
        metrics["published"] = str(path)
        write_json(out / "metrics.json", metrics)
    return metrics
