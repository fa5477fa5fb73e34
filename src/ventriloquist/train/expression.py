"""Stage ``expression``: train Exp2Emo on landmark deformations of emotion videos (+ unlabelled talking faces).

Labelled clips (MEAD, CREMA-D, RAVDESS...) teach the classes; clips with audio are also
pulled towards the distribution the frozen Sp2Emo hears in their speech (cosine-embedding
agreement, the paper's objective), which is how unlabelled talking faces (GRID) enter.
There are few labelled actors, so the model is judged by leave-one-speaker-out
cross-validation; that also picks the epoch count of the final model, trained on all of them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.cache import cache_stamp, load_clip, load_index
from ..emotion.exp2emo import Exp2Emo
from ..emotion.vocabulary import EMOTIONS, INDEX, N_EMOTIONS
from ..errors import InputError
from ..evaluate.metrics import confusion, unweighted_accuracy
from ..face.topology import MIRROR
from ..weights import manifest
from ..motion.sequence import RestDeformations, speaker_key
from . import TrainOptions
from .common import (Checkpointer, JsonlLog, interp_rows, load_config, progress, seed_everything, set_threads,
                     write_json)
from .distributed import World, join
from .store import build, fingerprint


@dataclass
class ExpressionConfig:
    cache: str = "cache"             # prepared cache (built from --data when missing)
    window: int = 25                 # frames per training window (1 s)
    epochs: int = 40
    steps_per_epoch: int = 30
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hidden: int = 64
    dropout: float = 0.3
    unlabelled_clips: int = 80       # talking-face clips without labels, supervised by Sp2Emo only
    unlabelled_share: float = 0.25   # fraction of each batch drawn from them
    agreement_weight: float = 1.0
    cross_validate: bool = True


def ensure_cache(cache: Path, data: Path) -> Path:
    """The prepared cache, built from ``data`` on first use (resumable)."""
    if not (cache / "index.csv").is_file():
        if not data.is_dir():
            raise InputError(f"no prepared cache at {cache} and no data folder {data}; "
                             "pass --data pointing at a data root such as ../shared/data (see docs/DATA.md)")
        from ..data.prepare import prepare
        prepare([data], cache)
    return cache


@dataclass
class Item:
    deformations: RestDeformations   # the training set's deformations, each read when used (train/store.py)
    index: int                       # this clip's among them
    label: int                       # vocabulary index, -1 when unlabelled
    target: np.ndarray | None        # Sp2Emo distribution of the clip's speech
    speaker: str

    @property
    def dk(self) -> np.ndarray:
        """(T, 68, 2) deformation from the speaker's rest face."""
        return self.deformations[self.index]


def load_items(cache: Path, unlabelled: int, seed: int, folder: Path, smoke: bool = False,
               world: World = World()) -> list[Item]:
    """The labelled clips and ``unlabelled`` talking clips drawn with ``seed``, kept in a memory-mapped
    store in ``folder`` with each clip's Sp2Emo distribution (for clips with audio)."""
    from ..emotion.sp2emo import EmotionRecognizer, features_from_mel
    rows = load_index(cache)
    labelled = [r for r in rows if r["emotion"]]
    talking = [r for r in rows if r["split"] == "train" and r["has_audio"] and not r["emotion"]]
    rng = np.random.default_rng(seed)
    talking = [talking[i] for i in rng.permutation(len(talking))[:unlabelled]]
    if smoke:
        labelled, talking = labelled[:8], talking[:4]
    if not labelled:
        raise InputError(f"{cache} holds no emotion-labelled clips; prepare MEAD/CREMA-D/RAVDESS videos first")
    rec = EmotionRecognizer.from_weights()

    def make(r: dict) -> dict:
        c = load_clip(cache, r["key"])
        target = rec.clip_features(*features_from_mel(c["mel"])) if "mel" in c else None
        return {"shapes": c["shapes"], "corpus": r["corpus"], "speaker": r["speaker"], "emotion": r["emotion"],
                "target": target}

    clips = labelled + talking
    store = build(folder, clips, make, fingerprint(cache=cache_stamp(cache), rows=clips,
                                                     sp2emo=manifest()["sp2emo"]["sha256"]),
                  world, lambda it: progress(it, "clips"))
    dks = RestDeformations(store)
    return [Item(dks, k, INDEX[c["emotion"]] if c["emotion"] else -1, c.get("target"), speaker_key(c))
            for k, c in enumerate(store)]


def augment(dk: np.ndarray, rng: np.random.Generator, window: int) -> np.ndarray:
    """A random window with mirroring, scale, rotation, speed change and jitter."""
    speed = rng.uniform(0.8, 1.25)
    n = len(dk)
    span = min(n - 1, int(round(window * speed)))
    start = rng.integers(0, max(1, n - span))
    x = interp_rows(dk, np.linspace(start, start + span, window))
    if rng.random() < 0.5:
        x = x[:, MIRROR] * np.array([-1.0, 1.0])
    a = rng.normal(0, 0.05)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    x = (x @ rot.T) * rng.uniform(0.85, 1.15)
    return (x + rng.normal(0, 0.004, x.shape)).astype(np.float32)


def clip_windows(dk: np.ndarray, window: int) -> np.ndarray:
    """Non-augmented windows covering a clip (for evaluation)."""
    if len(dk) <= window:
        return np.pad(dk, ((0, window - len(dk)), (0, 0), (0, 0)), mode="edge")[None]
    starts = np.unique(np.linspace(0, len(dk) - window, max(2, len(dk) // (window // 2))).astype(int))
    return np.stack([dk[s:s + window] for s in starts])


def predict_clip(model: Exp2Emo, dk: np.ndarray, window: int) -> np.ndarray:
    """Exp2Emo distribution of a whole clip (mean over its windows)."""
    model.eval()
    with torch.inference_mode():
        return model(torch.from_numpy(clip_windows(dk, window))).softmax(-1).mean(0).numpy()


def _batch(items: list[Item], cfg: ExpressionConfig, rng: np.random.Generator):
    lab = [i for i in items if i.label >= 0]
    unl = [i for i in items if i.label < 0]
    n_unl = int(round(cfg.batch * cfg.unlabelled_share)) if unl else 0
    picks = [lab[j] for j in rng.integers(0, len(lab), cfg.batch - n_unl)]
    picks += [unl[j] for j in rng.integers(0, len(unl), n_unl)] if n_unl else []
    x = torch.from_numpy(np.stack([augment(i.dk, rng, cfg.window) for i in picks]))
    y = torch.tensor([i.label for i in picks])
    has_t = torch.tensor([i.target is not None for i in picks])
    t = torch.from_numpy(np.stack([i.target if i.target is not None else np.full(N_EMOTIONS, 1 / N_EMOTIONS, np.float32)
                                   for i in picks]))
    return x, y, t, has_t


def _loss(model: Exp2Emo, batch, cfg: ExpressionConfig, world: World = World()) -> torch.Tensor:
    """Cross-entropy on the labelled windows plus the Sp2Emo agreement on those with a target: means
    over the global ``batch``, of which this process scores its slice (``World.mean``)."""
    n_labelled, n_target = int((batch[1] >= 0).sum()), int(batch[3].sum())
    x, y, t, has_t = world.part(*batch)
    logits = model(x)
    lab = y >= 0
    loss = world.mean(F.cross_entropy(logits[lab], y[lab], reduction="none"), n_labelled) if lab.any() else logits.sum() * 0
    if has_t.any():
        agree = 1 - F.cosine_similarity(logits[has_t].softmax(-1), t[has_t], dim=-1)
        loss = loss + cfg.agreement_weight * world.mean(agree, n_target)
    return loss


def fit(items: list[Item], cfg: ExpressionConfig, seed: int, val: list[Item] | None = None,
        epochs: int | None = None, ckpt: Checkpointer | None = None, log: JsonlLog | None = None,
        resume: bool = False, world: World = World()) -> tuple[Exp2Emo, list[float]]:
    """Train one model; returns it and the validation UA after each epoch (empty without ``val``).
    Under torchrun (``world``) each process trains on its slice of every global batch."""
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    model = Exp2Emo(cfg.hidden, dropout=cfg.dropout)
    net = world.wrap(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = 0
    if resume and ckpt is not None:
        start, state = ckpt.resume(model, opt)
        rng.bit_generator.state = state["extra_rng"]
    curve = []
    for epoch in range(start, epochs or cfg.epochs):
        model.train()
        total = 0.0
        for _ in range(cfg.steps_per_epoch):
            loss = _loss(net, _batch(items, cfg, rng), cfg, world)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        ua = None
        if val:
            pred = [int(np.argmax(predict_clip(model, i.dk, cfg.window))) for i in val]
            ua = unweighted_accuracy([i.label for i in val], pred)
            curve.append(ua)
        if ckpt is not None:
            ckpt.save(epoch, model, opt, metric=ua if ua is not None else -total, rng=rng.bit_generator.state)
        if log is not None:
            log.write(epoch=epoch, loss=total / cfg.steps_per_epoch, val_ua=ua)
    return model, curve


def run(opts: TrainOptions) -> dict:
    set_threads()
    world = join(opts.device)
    cfg = load_config(ExpressionConfig, opts.config, epochs=opts.epochs)
    if opts.smoke:
        cfg.epochs, cfg.steps_per_epoch, cfg.batch = 2, 2, 8
    out = opts.out / "expression"
    cache = ensure_cache(Path(cfg.cache), opts.data)
    items = load_items(cache, cfg.unlabelled_clips, opts.seed, out / "store", opts.smoke, world)
    labelled = [i for i in items if i.label >= 0]
    speakers = sorted({i.speaker for i in labelled})

    # leave-one-speaker-out: an honest estimate, and the epoch count for the final model
    curves, fold_preds = [], {}
    if cfg.cross_validate and len(speakers) > 1:
        for spk in progress(speakers, "cross-validation"):
            held = [i for i in labelled if i.speaker == spk]
            model, curve = fit([i for i in items if i.speaker != spk], cfg, opts.seed, val=held, world=world)
            curves.append(curve)
            fold_preds[spk] = held
        mean_curve = np.mean(curves, axis=0)
        best_epochs = int(np.argmax(mean_curve)) + 1
    else:
        mean_curve, best_epochs = np.zeros(0), cfg.epochs

    ckpt = Checkpointer(out, mode="max", world=world)
    log = JsonlLog(out / "log.jsonl", start_epoch=0, write=world.main)
    model, _ = fit(items, cfg, opts.seed, epochs=best_epochs, ckpt=ckpt, log=log, resume=opts.resume, world=world)

    # per-clip CV predictions at the chosen epoch count, for the confusion matrix
    y_true, y_pred = [], []
    if fold_preds:
        for spk, held in fold_preds.items():
            m, _ = fit([i for i in items if i.speaker != spk], cfg, opts.seed, epochs=best_epochs, world=world)
            for i in held:
                y_true.append(i.label)
                y_pred.append(int(np.argmax(predict_clip(m, i.dk, cfg.window))))
    metrics = {
        "speakers": speakers, "clips_labelled": len(labelled), "clips_unlabelled": len(items) - len(labelled),
        "epochs": best_epochs, "cv_curve_ua": mean_curve.round(4).tolist(),
        "cv_ua": unweighted_accuracy(y_true, y_pred) if y_true else None,
        "cv_accuracy": float(np.mean(np.array(y_true) == np.array(y_pred))) if y_true else None,
        "chance": 1 / len(set(y_true)) if y_true else None,
        "confusion": confusion(y_true, y_pred, N_EMOTIONS).tolist() if y_true else None,
        "classes": list(EMOTIONS), "config": asdict(cfg),
    }
    if not world.main:
        return metrics
    write_json(out / "metrics.json", metrics)
    print(f"Exp2Emo leave-one-speaker-out UA {metrics['cv_ua']} (chance {metrics['chance']}), "
          f"{len(labelled)} labelled clips of {len(speakers)} speakers")
    if opts.publish:
        from ..weights import publish
        publish("exp2emo", {"state_dict": model.state_dict(), "config": {"hidden": cfg.hidden, "window": cfg.window},
                            "metrics": metrics, "vocabulary": list(EMOTIONS)},
                version="4", recipe="ventriloquist train expression --config configs/expression.toml --seed 0 --publish")
    return metrics
