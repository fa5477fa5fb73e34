"""Stage ``generator``: train the emotive generator G against the sequence discriminator D.

The emotion nets are trained first and frozen (the paper's schedule; joint training
collapses). Each step sees (a) talking-face clips with real landmarks (GRID): mouth L1,
motion-energy and adversarial losses, plus emotion agreement with what Sp2Emo hears, and
(b) emotional speech with no video at all (TESS, EmoDB): only the frozen Exp2Emo judges
whether G's face shows the emotion Sp2Emo hears — the semi-supervised part.
"""
from __future__ import annotations

import shutil
from collections.abc import Iterable
from itertools import chain
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..audio import load_audio, log_mel
from ..config import MEL_PER_FRAME, N_MELS
from ..data.cache import cache_stamp, load_clip, load_index
from ..emotion.exp2emo import Exp2Emo
from ..emotion.vocabulary import N_EMOTIONS
from ..errors import InputError
from ..evaluate.metrics import aperture_corr, lmd_relative
from ..face.align import closed_frames
from ..face.topology import LOWER_FACE
from ..motion import losses
from ..motion.generator import motion_limits, motion_range, speech_input
from ..motion.generator_net import EmotiveGenerator, SequenceDiscriminator
from .. import speech_encoder
from ..phonetics import N_ARTIC, articulation_of
from ..motion.sequence import RestDeformations
from ..motion.speech import emotion_features, extra_rows, run_windows
from ..weights import load_checkpoint, manifest
from . import TrainOptions
from .backgrounds import SNR_DB, background_pool, mix, silent_mel
from .common import (Checkpointer, JsonlLog, interp_rows, load_config, progress, seed_everything, set_threads,
                     write_json)
from .distributed import World, join
from .expression import ensure_cache
from .store import ClipStore, build, fingerprint
from .voices import voice_variants


@dataclass
class GeneratorConfig:
    cache: str = "cache"
    talking_corpus: str = "GRID"       # clips with real landmarks and audio ...
    other_corpora: tuple[str, ...] = ()  # ... and other talking-face corpora of the cache (e.g. "custom": the clips of
                                       # a clips.csv given to prepare, such as GRID's other speakers)
    other_share: float = 0.0           # share of talking-face segments drawn from speakers other than the main one
    speaker_norm: bool = False         # scale each speaker's jaw and lip motion to the main speaker's spread, so a
                                       # speaker's style is learned as relative motion (the main one's is unchanged)
    segment: int = 50                  # frames per training sequence (2 s)
    batch: int = 16
    emo_batch: int = 8                 # emotional-speech sequences per step
    epochs: int = 30
    steps_per_epoch: int = 100
    lr_g: float = 2e-3                 # peak of a one-cycle schedule
    lr_d: float = 4e-4
    weight_decay: float = 0.01
    hidden: int = 128
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 2)
    dropout: float = 0.3               # one speaker's 280 clips: regularise hard
    mel_gain: float = 0.2              # augmentation: random gain, noise and a masked band on the Mel input
    mel_noise: float = 0.1
    speed: float = 0.15                # augmentation: speech and landmarks played at 1 ± speed, together
    ema: float = 0.998                 # validate and ship an exponential moving average of G's weights
    background: float = 0.0            # share of talking-face segments mixed with synthetic music or noise
    background_only: float = 0.0       # share heard as background alone (or digital silence): the lips must rest
    background_pool: int = 96          # synthetic backgrounds made (seeded) at the start of training
    emotion_branch: bool = True        # G learns an emotion branch, reading Sp2Emo and judged by Exp2Emo (the paper's);
                                       # false: lips only, as inference uses G (expressions come from motion.expression),
                                       # and the recipe reads neither emotion net; alone its lips twisted, in lips_basis
                                       # they do not (docs/TRAINING.md).
                                       # The emotion-branch terms (w_emotion, w_energy, w_prototype) then do nothing
    lips_basis: int = 0                # > 0: jaw and lips move only in this many principal deformations of the
                                       # training clips' real motion (0: each coordinate on its own): real shapes
    expr_components: int = 8           # size of the expression basis of the emotion branch
    w_adv: float = 0.05                # the paper: 0.5; here D then dominated and val mouth LMD rose (docs/MODEL_CARD.md)
    w_emotion: float = 0.5             # the paper's loss weights from here on
    w_mouth: float = 3.0               # L1 on jaw + lips (the paper's L_mouth; 10 there, shared here with ...)
    w_mouth_distance: float = 10.0     # ... the Euclidean lip-point distance that mouth LMD measures
    w_energy: float = 10.0
    energy_relative: bool = False      # energies relative to the real ones (unit-free), see losses.energy_loss
    energy_points: str = "all"         # landmarks the energy loss sees: "all", "not_lips" (lips answer to the L1
                                       # terms alone) or "upper" (brows, nose, eyes: the emotion branch alone)
    energy_clean: bool = False         # measure G's motion energy on a pass without dropout: dropout's own
                                       # jitter otherwise pays the velocity term (brows 0.0088 vs 0.0043 IOD/frame)
    w_prototype: float = 0.1           # the emotion branch's mean expression vs real faces' for the heard emotion (ours)
    adv_start_epoch: int = 10          # D joins once G's lips already follow the speech
    val_fraction: float = 0.1
    select: str = "best"               # "best": the epoch with the lowest validation mouth LMD; "last": the last epoch
    train_on_val: bool = False         # also learn lips from the validation clips (needs select = "last": nothing
                                       # is left to select on); the schedule is fixed on runs without them
    emotion_corpora: tuple[str, ...] = ("TESS", "EmoDB")
    emo_members: int = 0               # G reads the embeddings of this many Sp2Emo nets (0: all of them)
    threads: int = 1                   # torch threads: the thread count changes the float sums, so the shipped
                                       # weights are reproduced bit for bit only with the count they were made with
    phonetic: bool = False             # G also reads the phonetic rows (ventriloquist.phonetics) beside the Mel rows
    encoder: bool = False              # G also reads Whisper tiny.en's encoder rows (ventriloquist.speech_encoder) ...
    enc_bottleneck: int = 64           # ... through this many values a frame
    w_width: float = 0.0               # mouth width and corner motion (spread, round) vs the real ones (losses.mouth_width_loss)
    voices: int = 0                    # augmented voices made per talking-face clip (train/voices.py; 0: none) ...
    voice_share: float = 0.5           # ... and the share of training segments heard in one of them
    voice_source: str = "world"        # "world": s1's own audio re-synthesised with another pitch and formants;
                                       # "espeak": the sentence said by espeak-ng voices, word-aligned to s1's
    mel_dropout: float = 0.0           # share of talking-face segments whose Mel rows are blanked: the lips must
                                       # then follow the phones alone, which carry over to other voices
    mel_bottleneck: int = 0            # a frame's Mel rows reach G through this many values (0: all 320)
    w_phonetic: float = 0.0            # on emotional speech (no video): the mouth opens as the phones heard do
                                       # (losses.phonetic_opening_loss; needs phonetic): lips for other voices
    articulation_gain: float = 1.0     # inference: jaw and lips move this much further from their closed rest than
                                       # the training speaker's (--articulation 1 = a typical speaker, not GRID s1)
    causal: bool = False               # a frame hears only the speech up to ``lookahead`` frames after it (live mode)
    lookahead: int = 0
    name: str = "generator"            # the weights it publishes (and its run folder): "generator_live" for live mode
    version: str = "4.0"               # the version it publishes as


# --- data --------------------------------------------------------------------------------------------------------
def _emotion_track(rec, mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sp2Emo's per-frame embedding (T, E) and clip distribution (7,); with no ``rec`` (a G without an
    emotion branch) empty rows and zeros, so the clip's arrays keep their shape."""
    if rec is None:
        return np.zeros((len(mel) // MEL_PER_FRAME, 0), np.float32), np.zeros(N_EMOTIONS, np.float32)
    emb, _, clip = emotion_features(rec, mel)
    return emb, clip


def _sp2emo_stamp(rec) -> str | None:
    """What a store built with ``rec`` depends on: the Sp2Emo weights' checksum (None without Sp2Emo)."""
    return None if rec is None else manifest()["sp2emo"]["sha256"]


def load_talking(cache: Path, cfg: GeneratorConfig, rec, smoke: bool, folder: Path,
                 world: World = World()) -> tuple[ClipStore, ClipStore, ClipStore]:
    """(train, val, test) talking-face clips with emotion tracks attached, as views of one memory-mapped
    store in ``folder`` (train/store.py): built once, each process its span of the clips."""
    corpora = {cfg.talking_corpus.lower(), *(c.lower() for c in cfg.other_corpora)}
    rows = [r for r in load_index(cache) if r["corpus"].lower() in corpora and r["has_audio"]]
    if smoke:
        rows = [r for r in rows if r["split"] == "train"][:6] + [r for r in rows if r["split"] == "test"][:2]
    if not rows:
        raise InputError(f"{cache} holds no {cfg.talking_corpus} clips with audio; prepare talking-face videos "
                         "first (ventriloquist prepare ../shared/data --out cache)")
    found = {r["corpus"].lower() for r in rows}
    missing = [c for c in cfg.other_corpora if c.lower() not in found]
    if missing and not smoke:            # else G trains on fewer speakers than the config says, without a word
        raise InputError(f"{cache} holds no {', '.join(missing)} clips with audio (other_corpora in the config); "
                         f"prepare them into it first (ventriloquist prepare ../shared/data "
                         f"../shared/data/talking_face/grid_others/clips.csv --out {cache}; docs/TRAINING.md)")
    train = sorted([r for r in rows if r["split"] == "train"], key=lambda r: r["key"])
    ordered = train + [r for r in rows if r["split"] == "test"]

    def make(r: dict) -> dict:
        c = load_clip(cache, r["key"])
        t = min(len(c["shapes"]), len(c["mel"]) // MEL_PER_FRAME)
        shapes, mel = c["shapes"][:t], c["mel"][: t * MEL_PER_FRAME]
        q, l = _emotion_track(rec, mel)
        artic = _extra(c, cfg, t)                        # None unless G reads phones or encoder rows
        # motion around the clip's own mean face: the clip's pose and identity offsets are not
        # predictable from speech and would only add noise to the mouth loss
        return {"key": r["key"], "source": c["source"], "split": r["split"], "speaker": r["speaker"],
                "shapes": shapes, "mel": mel, "artic": artic, "x": speech_input(mel, artic), "q_emo": q[:t],
                "l_emo": l, "dk": (shapes - shapes.mean(axis=0)).astype(np.float32)}

    store = build(folder, ordered, make, fingerprint(cache=cache_stamp(cache), rows=ordered,
                                                        phonetic=cfg.phonetic, encoder=cfg.encoder,
                                                        sp2emo=_sp2emo_stamp(rec)),
                  world, lambda it: progress(it, "emotion tracks"))
    n_val = max(1, int(round(len(train) * cfg.val_fraction)))
    return store[: len(train) - n_val], store[len(train) - n_val: len(train)], store[len(train):]


def voice_clips(cache: Path, train: ClipStore, source: str) -> list[dict]:
    """What train/voices.py needs of each training clip: its recording and, for espeak-ng voices, its word timings."""
    clips = [{"key": k, "source": src} for k, src in zip(train.scalar("key"), train.scalar("source"))]
    if source == "espeak":
        for c in clips:
            z = load_clip(cache, c["key"])
            if "words" not in z:
                raise InputError(f"cached clip {c['key']} has no word timings; espeak-ng voices need a corpus with "
                                 "alignments (GRID's .align files)")
            c["words"], c["word_times"] = [str(w) for w in z["words"]], z["word_times"]
    return clips


def mel_prior(utterances: Iterable[dict]) -> np.ndarray:
    """(2, N_MELS): the mean, over training utterances, of each one's per-band log-Mel mean and standard
    deviation. Live mode starts its running normalisation from it (a stream has no whole utterance yet),
    so the first words are heard as speech of an average recording, not against the silence before them."""
    stats = [(u["mel"].mean(axis=0), u["mel"].std(axis=0)) for u in utterances]       # one utterance read at a time
    return np.stack([np.mean([m for m, _ in stats], axis=0), np.mean([d for _, d in stats], axis=0)]).astype(np.float32)


def load_emotional_speech(data: Path, cfg: GeneratorConfig, rec, smoke: bool, folder: Path,
                          world: World = World(), split: str = "train") -> ClipStore:
    """Emotional speech with no video (mel, per-frame Sp2Emo embedding, Sp2Emo clip distribution, label),
    as a memory-mapped store in ``folder`` built once (without ``rec``: no Sp2Emo rows, as :func:`_emotion_track`)."""
    from ..data.cache import stamp
    from ..data.speech import load_speech_items
    items = [i for i in load_speech_items(data, cfg.emotion_corpora) if i.split == split]
    if smoke:
        items = items[:8]

    def make(it) -> dict:
        y = load_audio(it.path)
        mel = log_mel(y)
        if rec is None:
            (q, l), p = _emotion_track(None, mel), None
        else:
            q, p, l = emotion_features(rec, mel)
        artic = extra_rows(y, len(mel) // MEL_PER_FRAME, N_ARTIC if cfg.phonetic else 0,
                           speech_encoder.DIM if cfg.encoder else 0)
        return {"mel": mel, "artic": artic, "x": speech_input(mel, artic), "q_emo": q, "l_emo": l,
                "emotion": int(it.emotion), "corpus": it.corpus, **({} if p is None else {"p_emo": p})}

    paths = [str(i.path) for i in items]
    return build(folder, items, make, fingerprint(paths=paths, labels=[int(i.emotion) for i in items],
                                                    stamps=stamp(*paths), phonetic=cfg.phonetic, encoder=cfg.encoder,
                                                    sp2emo=_sp2emo_stamp(rec)),
                 world, lambda it: progress(it, f"emotional speech ({split})"))


def emotion_embeddings(speech: list[dict], dim: int) -> np.ndarray:
    """G's emotion input for each vocabulary class (N_EMOTIONS, dim): the Sp2Emo embedding of the
    voiced frames of the emotional speech labelled with it, each frame weighted by the square of
    Sp2Emo's belief in that class there (zeros for a class without clips).

    Shipped with G so that a user can ask for an emotion (``--emotion happy``) through the same input
    the voice drives, and the lips stay G's own. The weighting keeps the frames that sound like the
    label; a plain mean of all voiced frames gave weaker, less readable faces.
    """
    from ..emotion.vocabulary import N_EMOTIONS
    from ..motion.speech import voiced_frames
    sums, weights = np.zeros((N_EMOTIONS, dim)), np.zeros(N_EMOTIONS)
    for c in speech:
        k = c["emotion"]                         # an index into EMOTIONS (data.speech.SpeechItem)
        n = len(c["q_emo"])
        w = voiced_frames(c["mel"])[:n] * c["p_emo"][:n, k] ** 2
        sums[k] += (w[:, None] * c["q_emo"][:n, :dim]).sum(axis=0)
        weights[k] += w.sum()
    return (sums / np.maximum(weights, 1e-9)[:, None]).astype(np.float32)


def emotion_deformations(cache: Path, folder: Path, world: World = World()) -> tuple[RestDeformations, ClipStore]:
    """Deformations (T, 68, 2) of every emotion-labelled clip from its speaker's rest face, read as they are
    used, and the store of those clips (its ``emotion`` scalars are the labels)."""
    rows = [r for r in load_index(cache) if r["emotion"]]

    def make(r: dict) -> dict:
        c = load_clip(cache, r["key"])
        return {"shapes": c["shapes"], "corpus": r["corpus"], "speaker": r["speaker"], "emotion": r["emotion"]}

    store = build(folder, rows, make, fingerprint(cache=cache_stamp(cache), rows=rows), world,
                  lambda it: progress(it, "emotion clips"))
    return RestDeformations(store), store


def expression_prototypes(deformations: list[np.ndarray], labels: list[str], basis: np.ndarray) -> np.ndarray:
    """(7, K) basis coefficients of each emotion's mean real deformation (zero for an emotion no clip shows),
    bounded like the emotion branch's own coefficients."""
    from ..emotion.vocabulary import EMOTIONS, to_index
    from ..motion.generator import EXPR_LIMIT
    flat = basis.reshape(len(basis), -1).astype(np.float64)
    out = np.zeros((len(EMOTIONS), len(basis)), np.float32)
    for k in range(len(EMOTIONS)):
        sel = [d for d, lab in zip(deformations, labels) if to_index(lab) == k]
        if sel:
            mean = np.concatenate(sel).mean(axis=0).reshape(-1)
            out[k] = np.clip(flat @ mean / (flat * flat).sum(axis=1), -EXPR_LIMIT, EXPR_LIMIT)
    return out


def expression_basis(deformations: list[np.ndarray], k: int) -> np.ndarray:
    """Top-k principal deformations (k, 68, 2) of real emotional faces, scaled by their spread."""
    x = np.concatenate([d.reshape(len(d), -1) for d in deformations])
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    scale = s[:k] / np.sqrt(len(x))
    return (vt[:k] * scale[:, None]).reshape(k, 68, 2).astype(np.float32)


def lip_basis(dk: np.ndarray, k: int) -> np.ndarray:
    """Top-k principal deformations (k, 68, 2) of the jaw and lips (zero elsewhere) in real talking
    faces' motion ``dk`` (T, 68, 2), scaled by their spread: the shapes G's lips may take."""
    x = np.zeros_like(dk)
    x[:, LOWER_FACE] = dk[:, LOWER_FACE]
    return expression_basis([x], k)


def load_exp2emo() -> Exp2Emo:
    ckpt = load_checkpoint("exp2emo")
    m = Exp2Emo(ckpt["config"]["hidden"], dropout=0.0)
    m.load_state_dict(ckpt["state_dict"])
    for p in m.parameters():
        p.requires_grad_(False)
    return m.eval()


def closed_rest(clip: dict) -> np.ndarray:
    """A clip's mouth at rest as a deformation (68, 2): mean of ``dk`` over its most closed frames."""
    return clip["dk"][closed_frames(clip["shapes"])].mean(axis=0).astype(np.float32)


def _extra(c: dict, cfg: GeneratorConfig, t: int) -> np.ndarray | None:
    """A clip's rows beside its Mel rows (its first ``t`` frames): the cached phonetic rows when G reads them
    (a cache without them is refused), then the speech encoder's rows of the clip's recording when G reads them."""
    parts = []
    if cfg.phonetic:
        if "artic" not in c:
            raise InputError(f"cached clip {c['key']} has no phonetic rows; prepare the cache again with this "
                             "version (ventriloquist prepare ../shared/data --out cache)")
        parts.append(c["artic"][: t * MEL_PER_FRAME])
    if cfg.encoder:
        src = Path(str(c["source"]))
        if not src.is_file():
            raise InputError(f"{src} (the recording of cached clip {c['key']}) is missing, and G's speech encoder "
                             "reads the recording; restore it or prepare the cache again")
        parts.append(speech_encoder.encode(load_audio(src), t))
    if not parts:
        return None
    n = min(len(p) for p in parts)
    return np.concatenate([p[:n] for p in parts], axis=1).astype(np.float32)


def speaker_scales(train: ClipStore) -> dict[str, float]:
    """Per speaker, the factor that brings the spread of their jaw and lip motion to the main speaker's
    (the one with the most frames): 1 for the main speaker."""
    speakers = train.scalar("speaker")
    frames, spread = {}, {}
    for i, sp in enumerate(speakers):
        dk = train.read(i, "dk")[:, LOWER_FACE]
        frames[sp] = frames.get(sp, 0) + len(dk)
        spread.setdefault(sp, []).append(dk.reshape(len(dk), -1))
    rms = {sp: float(np.sqrt(np.mean(np.concatenate(v) ** 2))) for sp, v in spread.items()}
    main = max(frames, key=frames.get)
    return {sp: rms[main] / max(r, 1e-6) for sp, r in rms.items()}


def _segment(c: dict, seg: int, rng: np.random.Generator, cfg: GeneratorConfig | None = None,
             backgrounds: list[np.ndarray] | None = None, voices: list[dict] | None = None):
    """A ``seg``-frame training sequence; with ``cfg`` (training) sped up or slowed down and augmented.

    The speed change resamples speech and landmarks together, so the pairing stays exact: the
    model hears faster and slower talkers than the one speaker it learns lips from. With
    ``voices`` (the clip's augmented voices, train/voices.py), a share ``cfg.voice_share`` is heard
    in one of them. With ``backgrounds``, a share ``cfg.background_only`` is heard as background (or
    digital silence) alone with the clip's closed mouth as target, and a share ``cfg.background`` of
    the rest over music or noise. Short clips hold their last frame.
    """
    t = len(c["q_emo"])
    x, dk = c["x"], c.get("dk")
    mel, artic = c["mel"], c.get("artic")
    if voices and rng.random() < cfg.voice_share:
        v = voices[rng.integers(len(voices))]
        mel, artic, x = v["mel"][: len(c["mel"])], v["artic"][: len(c["mel"])] if cfg.phonetic else None, None
    if backgrounds and rng.random() < cfg.background_only:
        bg = backgrounds[rng.integers(len(backgrounds))] if rng.random() < 0.8 else silent_mel(len(mel))
        mel = np.tile(bg, (int(np.ceil(len(mel) / len(bg))), 1))[: len(mel)]
        artic = None if artic is None else np.tile(articulation_of("SIL"), (len(mel), 1))
        x, dk = None, np.repeat(closed_rest(c)[None], t, axis=0)
    elif backgrounds and rng.random() < cfg.background:
        bg = backgrounds[rng.integers(len(backgrounds))]
        mel, x = mix(mel, bg, rng.uniform(*SNR_DB), rng), None
    if x is None:
        x = speech_input(mel, artic)
    speed = rng.uniform(1 - cfg.speed, 1 + cfg.speed) if cfg is not None and cfg.speed > 0 else 1.0
    span = (seg - 1) * speed
    s = float(rng.integers(0, int(t - 1 - span) + 1)) if t - 1 > span else 0.0
    frames = s + np.arange(seg) * speed
    rows = s * MEL_PER_FRAME + np.arange(seg * MEL_PER_FRAME) * speed
    x = interp_rows(x, np.minimum(rows, t * MEL_PER_FRAME - 1)).astype(np.float32)
    out = {"mel": _augment_mel(x, cfg, rng) if cfg is not None else x,
           "q": interp_rows(c["q_emo"], frames).astype(np.float32), "l": c["l_emo"]}
    if dk is not None:
        out["dk"] = interp_rows(dk, frames).astype(np.float32)
    return out


def _augment_mel(x: np.ndarray, cfg: GeneratorConfig, rng: np.random.Generator) -> np.ndarray:
    """Gain, noise and a masked Mel band on the Mel columns of G's input rows (the phonetic ones are left
    as heard): the model must not rely on one recording's exact spectrum. ``mel_dropout`` blanks them all."""
    mel = x[:, :N_MELS]
    m = mel * rng.uniform(1 - cfg.mel_gain, 1 + cfg.mel_gain) + rng.normal(0, cfg.mel_noise, mel.shape)
    f0 = int(rng.integers(0, N_MELS - 10))
    m[:, f0:f0 + int(rng.integers(0, 10))] = 0.0
    if cfg.mel_dropout > 0 and rng.random() < cfg.mel_dropout:
        m[:] = 0.0
    return np.concatenate([m, x[:, N_MELS:]], axis=1).astype(np.float32)


def _stack(segs: list[dict]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.stack([s[k] for s in segs]).astype(np.float32)) for k in segs[0]}


def clean_pass(g: EmotiveGenerator, b: dict[str, torch.Tensor]) -> torch.Tensor:
    """G's output for a batch without dropout (what inference makes), with gradients."""
    g.eval()
    try:
        return g(b["mel"], b["q"])
    finally:
        g.train()


# --- evaluation --------------------------------------------------------------------------------------------------
def predict_shapes(g: EmotiveGenerator, c: dict, emotion: bool = True) -> np.ndarray:
    """Canonical landmarks (T, 68, 2) that G makes for a clip's speech."""
    g.eval()
    return g.mean_face.numpy() + run_windows(g, c["mel"], c["q_emo"].astype(np.float32), emotion, artic=c.get("artic"))


def lip_scores(g: EmotiveGenerator, clips: list[dict]) -> dict:
    """Mean mouth LMD (relative to each clip's mean face) and mouth-opening correlation vs the real video."""
    lmds, corrs = [], []
    for c in clips:
        pred = predict_shapes(g, c)
        lmds.append(lmd_relative(pred, c["shapes"]))
        corrs.append(aperture_corr(pred, c["shapes"]))
    return {"mouth_lmd": float(np.mean(lmds)), "aperture_corr": float(np.nanmean(corrs))}


# --- training ----------------------------------------------------------------------------------------------------
def run(opts: TrainOptions) -> dict:
    from ..emotion.sp2emo import EmotionRecognizer
    cfg = load_config(GeneratorConfig, opts.config, epochs=opts.epochs)
    if cfg.select not in ("best", "last"):
        raise InputError(f"select must be 'best' or 'last', not {cfg.select!r} ({opts.config})")
    if cfg.train_on_val and cfg.select != "last":
        raise InputError(f"train_on_val needs select = 'last': the validation clips are training data then ({opts.config})")
    if cfg.w_phonetic > 0 and not cfg.phonetic:
        raise InputError(f"w_phonetic needs phonetic = true: the phones heard are its target ({opts.config})")
    if cfg.voices and cfg.encoder:
        raise InputError(f"augmented voices carry no speech-encoder rows yet: set voices = 0 with encoder ({opts.config})")
    if cfg.energy_points not in losses.ENERGY_POINTS:
        raise InputError(f"energy_points must be one of {', '.join(losses.ENERGY_POINTS)}, "
                         f"not {cfg.energy_points!r} ({opts.config})")
    set_threads(cfg.threads)
    world = join(opts.device)
    if opts.smoke:
        cfg.epochs, cfg.steps_per_epoch, cfg.batch, cfg.emo_batch, cfg.adv_start_epoch = 2, 2, 4, 2, 1
    seed_everything(opts.seed)
    out = opts.out / cfg.name
    cache = ensure_cache(Path(cfg.cache), opts.data)
    branch = cfg.emotion_branch
    rec, exp2emo = (EmotionRecognizer.from_weights(), load_exp2emo()) if branch else (None, None)
    # every clip's arrays in memory-mapped files (train/store.py): a process holds offsets, not the data
    train, val, test = load_talking(cache, cfg, rec, opts.smoke, out / "store" / "talking", world)
    if cfg.train_on_val:
        train = train + val        # val is then scored for the log only, not held out
    emo_speech = load_emotional_speech(opts.data, cfg, rec, opts.smoke, out / "store" / "speech", world)
    sample = train.for_statistics("shapes")                       # every clip, unless the set is very large
    mean_face = np.mean(sample.rows("shapes"), axis=0).astype(np.float32)
    real_pool, real_clips = emotion_deformations(cache, out / "store" / "emotion", world)   # real sequences for D
    if branch:
        real_sample = real_clips.for_statistics("shapes")
        stat_pool = RestDeformations(real_sample, real_pool.rest)
        basis = expression_basis(stat_pool, cfg.expr_components)
        prototypes = torch.from_numpy(expression_prototypes(stat_pool, real_sample.scalar("emotion"), basis))
    else:
        basis = np.zeros((0, 68, 2), np.float32)

    backgrounds = (background_pool(cfg.background_pool, np.random.default_rng(opts.seed + 1))
                   if cfg.background > 0 or cfg.background_only > 0 else [])
    emb_dim = train[0]["q_emo"].shape[1]
    if cfg.emo_members:
        emb_dim = min(emb_dim, cfg.emo_members * rec.model.members[0].emb_dim)
    g = EmotiveGenerator(mean_face, basis, emb_dim, cfg.hidden, tuple(cfg.dilations), cfg.dropout,
                         n_artic=N_ARTIC if cfg.phonetic else 0, mel_bottleneck=cfg.mel_bottleneck,
                         causal=cfg.causal, lookahead=cfg.lookahead,
                         n_enc=speech_encoder.DIM if cfg.encoder else 0, enc_bottleneck=cfg.enc_bottleneck,
                         lips_basis=lip_basis(sample.rows("dk"), cfg.lips_basis) if cfg.lips_basis else None)
    voices = voice_variants(voice_clips(cache, train, cfg.voice_source), cfg.voices, cache, opts.seed,
                            source=cfg.voice_source) if cfg.voices else {}
    d = SequenceDiscriminator()
    net_g, net_d = world.wrap(g), world.wrap(d)        # under torchrun: each process trains on its slice of every batch
    ema = torch.optim.swa_utils.AveragedModel(g, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema))
    opt_g = torch.optim.AdamW(g.parameters(), lr=cfg.lr_g, weight_decay=cfg.weight_decay)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt_g, cfg.lr_g, total_steps=cfg.epochs * cfg.steps_per_epoch)
    ckpt = Checkpointer(out, mode="min", world=world)
    start = 0
    if opts.resume:
        start, state = ckpt.resume(g, opt_g, sched)
        d.load_state_dict(state["extra"]["d"])
        ema.load_state_dict(state["extra"]["ema"])
        opt_d.load_state_dict(state["extra"]["opt_d"])
    log = JsonlLog(out / "log.jsonl", start_epoch=start, write=world.main)

    def real_batch(streams: list[np.random.Generator]) -> torch.Tensor:
        segs = []
        for r in streams:
            if real_pool and r.random() < 0.3:
                x = real_pool[r.integers(len(real_pool))]
                s = int(r.integers(0, max(1, len(x) - cfg.segment + 1)))
                idx = np.minimum(np.arange(s, s + cfg.segment), len(x) - 1)
                segs.append(x[idx])
            else:
                segs.append(_segment(train[r.integers(len(train))], cfg.segment, r)["dk"])
        return torch.from_numpy(np.stack(segs))

    speakers = np.array(train.scalar("speaker"))
    scales = speaker_scales(train) if cfg.speaker_norm or cfg.other_share > 0 else {}
    main = max(scales, key=lambda sp: (speakers == sp).sum()) if scales else None
    mains, others = np.flatnonzero(speakers == main), np.flatnonzero(speakers != main)
    if world.main and scales:
        print("speakers (clips, motion scale to the main one's): "
              + ", ".join(f"{sp} ({(speakers == sp).sum()}, {v:.2f})" for sp, v in sorted(scales.items())))

    def talking_item(r: np.random.Generator) -> dict:
        if cfg.other_share > 0 and len(others):
            pool = others if r.random() < cfg.other_share else mains
            c = train[pool[r.integers(len(pool))]]
        else:
            c = train[r.integers(len(train))]
        if cfg.speaker_norm:
            c["dk"][:, LOWER_FACE] *= scales[c["speaker"]]
        return _segment(c, cfg.segment, r, cfg, backgrounds, voices.get(c["key"]))

    for epoch in range(start, cfg.epochs):
        g.train()
        sums: dict[str, float] = {}
        adv_on = epoch >= cfg.adv_start_epoch
        for i in progress(range(cfg.steps_per_epoch), f"epoch {epoch}"):
            # this process's items of the step's three global batches (talking, emotional, real for D)
            step = 3 * (epoch * cfg.steps_per_epoch + i)
            b = _stack([talking_item(r) for r in world.streams(opts.seed, step, cfg.batch)])
            e = _stack([_segment(emo_speech[r.integers(len(emo_speech))], cfg.segment, r, cfg)
                        for r in world.streams(opts.seed, step + 1, cfg.emo_batch)])
            fake, coef = net_g(b["mel"], b["q"], return_coef=True)
            fake_e, coef_e = net_g(e["mel"], e["q"], return_coef=True)
            parts = {"mouth": losses.mouth_l1(fake, b["dk"]), "mouth_distance": losses.mouth_distance(fake, b["dk"])}
            if branch:
                parts["energy"] = losses.energy_loss(clean_pass(g, b) if cfg.energy_clean else fake, b["dk"],
                                                     cfg.energy_relative, losses.ENERGY_POINTS[cfg.energy_points])
                parts["emotion"] = 0.5 * (losses.emotion_agreement(exp2emo(fake), b["l"])
                                          + losses.emotion_agreement(exp2emo(fake_e), e["l"]))
            if cfg.w_width > 0:
                parts["width"] = losses.mouth_width_loss(fake, b["dk"])
            if cfg.w_phonetic > 0:
                parts["phonetic"] = losses.phonetic_opening_loss(g.mean_face + fake_e, e["mel"][..., N_MELS:])
            if branch and cfg.w_prototype > 0:
                parts["prototype"] = 0.5 * (losses.prototype_loss(coef, b["l"], prototypes)
                                            + losses.prototype_loss(coef_e, e["l"], prototypes))
            loss = (cfg.w_mouth * parts["mouth"] + cfg.w_mouth_distance * parts["mouth_distance"]
                    + cfg.w_energy * parts.get("energy", 0.0) + cfg.w_emotion * parts.get("emotion", 0.0)
                    + cfg.w_prototype * parts.get("prototype", 0.0) + cfg.w_phonetic * parts.get("phonetic", 0.0)
                    + cfg.w_width * parts.get("width", 0.0))
            if adv_on:
                parts["adv"] = losses.g_adv_loss(torch.cat([d(fake), d(fake_e)]))
                loss = loss + cfg.w_adv * parts["adv"]
            opt_g.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(g.parameters(), 1.0)
            opt_g.step()
            sched.step()
            ema.update_parameters(g)
            if adv_on:
                fake_all = torch.cat([fake.detach(), fake_e.detach()])
                real = real_batch(world.streams(opts.seed, step + 2, cfg.batch + cfg.emo_batch))
                ld = losses.d_loss(net_d(real), net_d(fake_all))
                opt_d.zero_grad()
                ld.backward()
                opt_d.step()
                parts["d"] = ld
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v.item() / cfg.steps_per_epoch
        val_scores = lip_scores(ema.module, val)
        ckpt.save(epoch, g, opt_g, sched, metric=val_scores["mouth_lmd"] if cfg.select == "best" else None,
                  extra={"d": d.state_dict(), "opt_d": opt_d.state_dict(), "ema": ema.state_dict()})
        log.write(epoch=epoch, **{f"loss_{k}": v for k, v in sums.items()}, **{f"val_{k}": v for k, v in val_scores.items()},
                  lr=sched.get_last_lr()[0])
        if world.main:
            print(f"epoch {epoch}: " + " ".join(f"{k}={v:.4f}" for k, v in sums.items())
                  + f" | val mouth LMD {val_scores['mouth_lmd']:.4f} corr {val_scores['aperture_corr']:.3f}")

    if cfg.select == "last" and ckpt.last_path.is_file() and world.main:      # the fixed schedule's model is the chosen one
        shutil.copyfile(ckpt.last_path, ckpt.best_path)
    world.barrier()
    chosen = ckpt.load_best(g)
    ema.load_state_dict(chosen["extra"]["ema"])
    g = ema.module.eval()
    test_scores = lip_scores(g, test) if test else {}
    metrics = {"best_epoch": chosen["epoch"], "selection": cfg.select, "trained_on_val": cfg.train_on_val,
               "val": lip_scores(g, val), "test": test_scores,
               "train_clips": len(train), "val_clips": len(val), "test_clips": len(test),
               "emotional_speech_clips": len(emo_speech), "config": asdict(cfg)}
    if not world.main:
        return metrics
    write_json(out / "metrics.json", metrics)
    if opts.publish:
        from ..weights import publish
        dk = sample.rows("dk")
        publish(cfg.name, {"state_dict": g.state_dict(), "mean_face": mean_face, "expr_basis": basis,
                              "deform_limit": motion_limits([dk]), "deform_range": motion_range([dk]),
                              "rest_deformation": np.mean([c["shapes"].mean(axis=0) + closed_rest(c) - mean_face
                                                           for c in train], axis=0).astype(np.float32),
                              "config": {"emo_dim": emb_dim, "hidden": cfg.hidden, "dilations": list(cfg.dilations),
                                         "n_artic": g.n_artic, "mel_bottleneck": g.mel_bottleneck,
                                         "n_enc": g.n_enc, "enc_bottleneck": g.enc_bottleneck,
                                         **({"causal": True, "lookahead": g.lookahead} if g.causal else {})},
                              "articulation_gain": float(cfg.articulation_gain),
                              **({"emotion_embeddings": emotion_embeddings(emo_speech, emb_dim)} if branch else {}),
                              "metrics": metrics, **({"mel_prior": mel_prior(chain(train, emo_speech))} if g.causal else {})},
                version=cfg.version,
                recipe=f"ventriloquist train generator --config {opts.config or 'configs/generator.toml'} --seed {opts.seed} --publish")
    return metrics
