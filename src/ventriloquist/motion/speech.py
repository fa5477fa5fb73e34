"""Speech -> face motion with the shipped models: Sp2Emo for the emotion, G for the landmarks.

G runs over 1-second windows (with real audio context on each side) that overlap by half;
the windows are cross-faded, so any length of speech gives one continuous sequence and
memory stays bounded. Both nets run on numpy here (no PyTorch import); G runs in torch only on
another device (``--device cuda``).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..audio import energy, log_mel, overlap_add, window_starts
from ..config import ARTICULATION_RANGE, FPS, HEAD_MOTION_MAX, LOG_EPS, MAX_EXPRESSION, MEL_PER_FRAME, WINDOW_FRAMES, WINDOW_STRIDE
from ..face.topology import LOWER_FACE
from .. import phonetics
from ..weights import read_checkpoint
from .generator import Generator, normalise_mel, soft_limit, soft_range
from .life import apply_blinks, blink_track, head_motion
from .sequence import Motion

EMOTION_SMOOTH_S = 0.4      # expression changes slower than phonemes
EXPRESSION_HOLD_S = 0.75    # the expression outlasts the voice by this much, then relaxes to the rest face
FEATURES_SHARE = 0.65      # of the time speech takes to become motion, hearing it (Mel, phones) takes this
SILENCE_LEVEL = -34.0       # dB of summed Mel power in a row: white noise at -60 dBFS; below it nothing is heard
EMOTION_OPENING_S = 0.25    # an emotion's extra opening follows the speech's opening smoothed over this (Gaussian sigma)
LIP_HOLD_FRAMES = 2         # the lips leave their rest this many frames before a sound and return as long after


def release_freed_memory() -> None:
    """Hand memory freed by the last stage back to the system (glibc's ``malloc_trim``).

    glibc keeps what torch's threads and numpy's temporaries freed in its arenas, so on a
    10-minute speech each stage grew the process by what the one before had left (+200 MB in all);
    trimmed between stages, the peak stays near that of a short clip. A no-op off glibc.
    """
    import ctypes
    import ctypes.util
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def load_generator(folder: Path | None = None, device: str = "cpu", name: str = "generator"):
    """G with its shipped weights (``name``: "generator", or "generator_live", the causal one of live mode): on numpy (:class:`~.generator.Generator`) for the CPU, else the torch
    module on ``device``; ``g.limits`` is the per-landmark reach used at inference, and so on."""
    ckpt = read_checkpoint(name, folder)
    cfg = ckpt["config"]
    dims = dict(emo_dim=cfg["emo_dim"], n_artic=cfg.get("n_artic", 0), mel_bottleneck=cfg.get("mel_bottleneck", 0),
                causal=cfg.get("causal", False), lookahead=cfg.get("lookahead", 0),
                n_enc=cfg.get("n_enc", 0), enc_bottleneck=cfg.get("enc_bottleneck", 0))
    if device == "cpu":
        g = Generator(ckpt["state_dict"], dilations=tuple(cfg["dilations"]), **dims)
    else:
        import torch

        from .generator_net import EmotiveGenerator
        g = EmotiveGenerator(np.asarray(ckpt["mean_face"]), np.asarray(ckpt["expr_basis"]), hidden=cfg["hidden"],
                             dilations=tuple(cfg["dilations"]), dropout=0.0,
                             lips_basis=ckpt["state_dict"].get("lips_basis"), **dims)
        g.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ckpt["state_dict"].items()})
        g = g.eval().to(device)
    g.limits = np.asarray(ckpt["deform_limit"], np.float32)
    rest = ckpt.get("rest_deformation")          # absent in weights published before version 2.1: no lip gate
    g.rest = None if rest is None else np.asarray(rest, np.float32)
    span = ckpt.get("deform_range")              # absent before version 3.1: the magnitude limit alone
    g.range = None if span is None else np.asarray(span, np.float32)
    g.articulation = float(ckpt.get("articulation_gain", 1.0))   # the training speaker -> a typical speaker (4.0)
    prior = ckpt.get("mel_prior")                # the live G's: where its running normalisation starts
    g.mel_prior = None if prior is None else np.asarray(prior, np.float64)
    return g


def mean_face(g) -> np.ndarray:
    """G's mean face k̄ (68, 2) as float64 numpy, whichever form G takes."""
    m = g.mean_face
    return np.asarray(m if isinstance(m, np.ndarray) else m.detach().cpu().numpy(), np.float64)


class ExtraRows:
    """What G reads beside each Mel row of speech ``y`` (n_frames * MEL_PER_FRAME rows): the phonetic rows when
    ``n_artic``, then the speech encoder's rows when ``n_enc``; made a block of phonetics.BLOCK_ROWS at a time,
    when G's windows reach it, and let go once they have passed it.

    A 10-minute speech's encoder rows are 90 MB; held a block or two at a time, a long dub's memory stays
    flat. Sliced like an array (forward in time; an earlier block already let go is made again from the
    start, since each block's phones go on from the one before); ``np.asarray`` makes them all at once.
    """

    def __init__(self, y: np.ndarray, n_frames: int, n_artic: int, n_enc: int) -> None:
        self.y, self.n_artic, self.n_enc = y, n_artic, n_enc
        self.shape = (n_frames * MEL_PER_FRAME, n_artic + n_enc)
        self._held: dict[int, np.ndarray] = {}
        self._phones = None                  # phonetics.phone_blocks over y, and the block it yields next
        self._next = 0

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, rows: slice) -> np.ndarray:
        first, end, step = rows.indices(len(self))
        if step != 1:
            raise IndexError("ExtraRows are read in contiguous row ranges")
        size = phonetics.BLOCK_ROWS
        blocks = range(first // size, (max(first, end) - 1) // size + 1)
        for b in [b for b in self._held if b < blocks.start]:
            del self._held[b]
        if not blocks or end <= first:
            return np.zeros((0, self.shape[1]), np.float32)
        part = np.concatenate([self._block(b) for b in blocks]) if len(blocks) > 1 else self._block(blocks[0])
        off = blocks.start * size
        return part[first - off:end - off]

    def _block(self, b: int) -> np.ndarray:
        if b in self._held:
            return self._held[b]
        size = phonetics.BLOCK_ROWS
        first, end = b * size, min(len(self), (b + 1) * size)
        out = np.zeros((end - first, self.shape[1]), np.float32)          # filled in place: no joined copy
        if self.n_artic:
            out[:, :self.n_artic] = phonetics.articulation_rows(self._phones_of(b), first, end)
        if self.n_enc:
            from .. import speech_encoder
            speech_encoder.encode(self.y, len(self) // MEL_PER_FRAME, out=out[:, self.n_artic:], span=(first, end))
        self._held[b] = out
        return out

    def _phones_of(self, b: int) -> list:
        if self._phones is None or b < self._next:
            self._phones, self._next = phonetics.phone_blocks(self.y), 0
        heard: list = []
        while self._next <= b:
            heard = next(self._phones, [])
            self._next += 1
        return heard


def extra_rows(y: np.ndarray, n_frames: int, n_artic: int, n_enc: int, lazy: bool = False
               ) -> ExtraRows | np.ndarray | None:
    """What G reads beside each Mel row of speech ``y``: (n_frames * MEL_PER_FRAME, n_artic + n_enc) rows
    (:class:`ExtraRows`, made as they are read when ``lazy``, else an array); None when G reads neither."""
    if not n_artic and not n_enc:
        return None
    rows = ExtraRows(y, n_frames, n_artic, n_enc)
    return rows if lazy else rows[:]


def emotion_features(recognizer, mel: np.ndarray,
                     clip: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Sp2Emo on an utterance: smoothed per-frame embedding (T, E), per-frame and clip distributions.

    Training and inference both get G's emotion input from here, so they see the same signal.
    The clip distribution costs a second pass over the speech; ``clip=False`` skips it (None).
    """
    from scipy.ndimage import gaussian_filter1d

    from ..emotion.sp2emo import features_from_mel
    feats, pad, mask = features_from_mel(mel)
    emb, probs = recognizer.per_frame_features(feats, pad)
    sigma = EMOTION_SMOOTH_S * FPS
    return (gaussian_filter1d(emb, sigma, axis=0, mode="nearest").astype(np.float32),
            gaussian_filter1d(probs, sigma, axis=0, mode="nearest"),
            recognizer.clip_features(feats, pad, mask) if clip else None)


def _eased(on: np.ndarray, hold: int, sigma: float) -> np.ndarray:
    """A per-frame 0/1 mask held ``hold`` frames either side, then eased (Gaussian, ``sigma`` frames) into [0, 1]."""
    from scipy.ndimage import gaussian_filter1d, maximum_filter1d
    if not len(on):
        return on.astype(np.float32)
    held = maximum_filter1d(on.astype(np.float64), size=2 * hold + 1, mode="nearest")
    return np.clip(gaussian_filter1d(held, sigma, mode="nearest"), 0.0, 1.0).astype(np.float32)


def voiced_frames(mel: np.ndarray) -> np.ndarray:
    """Per-frame bool (T,): a voice is heard (loud rows of speech; digital silence never counts)."""
    from ..emotion.sp2emo import loud_rows, speech_frames
    signal = mel.max(axis=1, initial=-np.inf) > np.log(LOG_EPS) + 0.1      # digital silence has none
    return speech_frames(loud_rows(mel) & signal)


def expression_gate(mel: np.ndarray) -> np.ndarray:
    """Per-frame weight (T,) in [0, 1] of the expression: 1 while the voice is heard and for
    EXPRESSION_HOLD_S around it, easing to 0 in longer silences.

    Sp2Emo has nothing to hear in silence and its distribution there is diffuse, so without this a
    long pause (or a silent file) kept a faint, arbitrary expression; short pauses keep the face's mood.
    """
    return _eased(voiced_frames(mel), int(round(EXPRESSION_HOLD_S * FPS)), 0.2 * FPS)


def lip_gate(mel: np.ndarray) -> np.ndarray:
    """Per-frame weight (T,) in [0, 1] of G's jaw and lips: 0 where nothing at all is heard.

    G reads Mel normalised per utterance, so a file of digital silence or faint hiss became the
    same input as an average speech frame and opened the mouth wide; where no row reaches
    SILENCE_LEVEL the lips rest instead. Any audible recording is left to G.
    """
    t = len(mel) // MEL_PER_FRAME
    level = 10 * np.log10(np.maximum(np.exp(mel[: t * MEL_PER_FRAME]) - LOG_EPS, 0.0).sum(axis=1) + 1e-30)
    return _eased((level.reshape(t, MEL_PER_FRAME) >= SILENCE_LEVEL).any(axis=1), LIP_HOLD_FRAMES, 1.0)


def run_windows(g, mel: np.ndarray, q_emo: np.ndarray, emotion: bool = True,
                strength: float | np.ndarray = 1.0, artic: np.ndarray | None = None) -> np.ndarray:
    """δk (T, 68, 2) for a whole utterance (raw log-Mel, and its phonetic rows when G reads them) through
    overlapping 1-s windows with context; ``strength`` scales the expression, as one number or per frame (T,).
    ``g``: the numpy :class:`~.generator.Generator`, or a torch ``EmotiveGenerator`` (training, other devices)."""
    if g.n_extra and artic is None:
        raise ValueError("this generator reads rows beside the Mel rows: pass artic (extra_rows)")
    # normalised once for the whole utterance; the rows beside it are joined per window (ExtraRows: made as
    # the windows reach them)
    norm = normalise_mel(mel)
    extra = None if not g.n_extra else artic if isinstance(artic, ExtraRows) else np.asarray(artic, np.float32)
    t_total = len(q_emo)
    ctx = g.receptive_field
    starts = window_starts(t_total, WINDOW_FRAMES, WINDOW_STRIDE)
    per_frame = isinstance(strength, np.ndarray)
    if per_frame:
        strength = np.ascontiguousarray(strength, np.float32)[None]
    forward = g if isinstance(g, Generator) else _torch_forward(g)

    def chunks():                           # one window at a time, added in as it comes
        for s in starts:
            a, b = max(0, s - ctx), min(t_total, s + WINDOW_FRAMES + ctx)
            st = strength[:, a:b] if per_frame else strength
            rows = norm[a * MEL_PER_FRAME:b * MEL_PER_FRAME]
            if extra is not None:
                rows = np.concatenate([rows, extra[a * MEL_PER_FRAME:b * MEL_PER_FRAME]], axis=1)
            yield forward(rows[None], q_emo[None, a:b], emotion, st)[0][s - a: s - a + min(WINDOW_FRAMES, t_total)]
    return overlap_add(chunks(), starts, t_total)


def _torch_forward(g):
    """A torch G called as the numpy one: arrays in, an array out, on G's device, without gradients."""
    import torch
    dev = g.mean_face.device

    def forward(mel: np.ndarray, q: np.ndarray, emotion: bool, strength) -> np.ndarray:
        st = torch.from_numpy(strength).to(dev) if isinstance(strength, np.ndarray) else strength
        with torch.inference_mode():
            return g(torch.from_numpy(np.ascontiguousarray(mel)).to(dev), torch.from_numpy(np.ascontiguousarray(q)).to(dev),
                     emotion=emotion, strength=st).cpu().numpy()
    return forward


def check_settings(strength: float, articulation: float, emotion: str = "auto", intensity: float = 1.0,
                   head: float = 1.0) -> None:
    """Raise InputError for a setting out of its range (before any long work starts)."""
    from ..emotion.vocabulary import emotion_weights
    from ..errors import InputError
    emotion_weights(emotion, " (--emotion)")
    if not 0.0 <= head <= HEAD_MOTION_MAX:
        raise InputError(f"head motion {head:g} is outside 0-{HEAD_MOTION_MAX:g}; 0 keeps the head still")
    if not 0.0 <= intensity <= MAX_EXPRESSION:
        raise InputError(f"emotion intensity {intensity:g} is outside 0-{MAX_EXPRESSION:g}; 1 is as trained")
    if not 0.0 <= strength <= MAX_EXPRESSION:
        raise InputError(f"expression strength {strength:g} is outside 0-{MAX_EXPRESSION:g}; "
                         "0 moves the lips only, 1 is the trained expression")
    if not ARTICULATION_RANGE[0] <= articulation <= ARTICULATION_RANGE[1]:
        raise InputError(f"articulation {articulation:g} is outside {ARTICULATION_RANGE[0]:g}-"
                         f"{ARTICULATION_RANGE[1]:g}; 1 is a typical speaker")


@dataclass
class SpeechMotion:
    """Both networks, loaded once; call with samples at SAMPLE_RATE."""

    generator: Generator                # or a torch EmotiveGenerator on another device
    recognizer: object                  # emotion.sp2emo.EmotionRecognizer
    seed: int = 0
    emotion: bool = True                # False disables the emotion branch (ablation)
    strength: float = 1.0               # expression strength: 0 = lips only, 1 = as trained, up to MAX_EXPRESSION
    articulation: float = 1.0           # how wide the mouth moves: 1 = a typical speaker, <1 restrained, >1 wider
    chosen: str = "auto"                # the emotion shown: "auto" (the voice's) or a class of emotion.vocabulary
    intensity: float = 1.0              # how strongly the chosen (or heard) emotion shows
    timeline: tuple = ()                # emotion.timeline.Segment ranges overriding ``chosen``
    head: float = 1.0                   # head motion: 0 = still, 1 = as a speaker moves, up to HEAD_MOTION_MAX
    patterns: object = None             # .expression.ExpressionPatterns: what each emotion does to a face

    @classmethod
    def from_weights(cls, seed: int = 0, emotion: bool = True, folder: Path | None = None,
                     device: str = "cpu", strength: float = 1.0, articulation: float = 1.0,
                     live: bool = False) -> "SpeechMotion":
        """Load the shipped (or ``folder``'s) weights; G runs on ``device``, the small Sp2Emo on the CPU.
        ``live``: the causal live generator (``generator_live``, for :mod:`.stream`) instead of the offline one."""
        from ..emotion.sp2emo import EmotionRecognizer
        from ..errors import InputError
        if device != "cpu":
            import torch
            try:
                torch.empty(0, device=torch.device(device))
            except (RuntimeError, AssertionError) as exc:
                raise InputError(f"device {device!r} is not usable here ({exc}); use --device cpu") from None
        check_settings(strength, articulation)
        from .expression import ExpressionPatterns
        g = load_generator(folder, device, "generator_live" if live else "generator")
        return cls(g, EmotionRecognizer.from_weights(folder), seed, emotion, strength,
                   articulation, patterns=ExpressionPatterns.from_weights(folder))

    def with_settings(self, seed: int, strength: float, articulation: float, chosen: str = "auto",
                      intensity: float = 1.0, timeline: tuple = (), head: float = 1.0) -> "SpeechMotion":
        """A light copy sharing the loaded networks, with one video's settings (checked); strength 0
        also turns the emotion branch off."""
        check_settings(strength, articulation, chosen, intensity, head)
        return replace(self, seed=seed, emotion=strength > 0, strength=strength, articulation=articulation,
                       chosen=chosen, intensity=intensity, timeline=tuple(timeline), head=head)

    @property
    def controlled(self) -> bool:
        """Whether the user chose the emotion or its intensity (else the voice decides alone)."""
        return self.chosen != "auto" or self.intensity != 1.0 or bool(self.timeline)

    def expression(self, probs: np.ndarray, voiced: np.ndarray, gate: np.ndarray, track=None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """The emotion distribution the face stands for (T, 7) and the expression weights (T, 7) of
        :class:`~.expression.ExpressionPatterns`, from what the voice says (Sp2Emo's ``probs``, ``voiced``
        frames, silence ``gate``) and the user's choice.

        The voice's own emotion is held back when unsure (:class:`~.expression.ExpressionTrack`; ``track``
        carries its state between calls, as live mode needs; without one the whole speech is known and evidence
        is gathered both ways); a chosen emotion shows at its intensity from the first frame and holds through
        pauses.
        """
        from .expression import NEUTRAL, ExpressionTrack
        heard = (track or ExpressionTrack(both_ways=True))(probs, voiced, gate)
        if not self.emotion:
            return probs, np.zeros_like(heard)
        if not self.controlled:
            return probs, (self.strength * heard).astype(np.float32)
        from ..emotion.timeline import emotion_track
        auto, w, level = emotion_track(len(probs), self.chosen, self.intensity, self.timeline)
        weights = level[:, None] * (auto[:, None] * heard + w)
        weights[:, NEUTRAL] = 0.0
        probs = auto[:, None] * probs + w
        return probs, np.minimum(self.strength * weights, MAX_EXPRESSION).astype(np.float32)

    def features(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """What G hears in speech samples: the log-Mel and, when G reads them, the rows beside it
        (:class:`ExtraRows`: phones, speech-encoder rows, made as G reads them)."""
        mel = log_mel(y)
        g = self.generator
        return mel, extra_rows(y, len(mel) // MEL_PER_FRAME, g.n_artic, getattr(g, "n_enc", 0), lazy=True)

    def shapes(self, mel: np.ndarray, artic: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Canonical landmarks (T, 68, 2) for an utterance's log-Mel and phonetic rows (:meth:`features`;
        no blinks, no head motion), and the per-frame emotion distribution that shaped them."""
        g = self.generator
        emb, probs, _ = emotion_features(self.recognizer, mel, clip=False)
        release_freed_memory()
        n = min(len(emb), len(mel) // MEL_PER_FRAME)
        gate = expression_gate(mel)[:n]          # one value per whole video frame of mel, so never short
        probs, weights = self.expression(probs[:n], voiced_frames(mel)[:n], gate)
        # G's own emotion branch stays off: expressions come from the real actors' patterns (.expression)
        dk = run_windows(g, mel[: n * MEL_PER_FRAME], emb[:n], False, 1.0, artic)
        release_freed_memory()
        return self.finish(dk, lip_gate(mel)[:n], weights), probs[:n]

    def finish(self, dk: np.ndarray, lips: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Canonical landmarks (T, 68, 2) from G's raw δk (T, 68, 2): the jaw and lips eased to their closed
        rest where nothing is heard (``lips``, :func:`lip_gate`), the articulation gain, the reach and range,
        then the expression of per-frame emotion ``weights`` (T, 7) (:meth:`expression`): its landmark pattern
        and its gain on the speech's opening."""
        g = self.generator
        limits, span = g.limits, g.range
        shown = weights is not None and self.patterns is not None and np.any(weights)
        if g.rest is not None:
            rest = g.rest[LOWER_FACE]
            lips = np.asarray(lips)[:, None, None]
            dk[:, LOWER_FACE] = lips * dk[:, LOWER_FACE] + (1 - lips) * rest
            # a wider (or narrower) articulation moves jaw and lips further from their closed rest, and
            # their reach and range grow with it, so the closure stays exact
            base = g.articulation * self.articulation
            top = max(base, 1.0)
            if shown:
                # an emotion's wider speech opens the mouth more over a phrase, not faster from frame to frame:
                # the gain acts on the opening smoothed over EMOTION_OPENING_S (a real face's steps stay real)
                from scipy.ndimage import gaussian_filter1d
                extra = (self.patterns.gain(weights) - 1.0)[:, None, None]
                slow = gaussian_filter1d(dk[:, LOWER_FACE] - rest, EMOTION_OPENING_S * FPS, axis=0, mode="nearest")
                dk[:, LOWER_FACE] = dk[:, LOWER_FACE] + extra * slow
                top = max(top, base * (1.0 + float(extra.max(initial=0.0))))
            if base != 1.0:
                dk[:, LOWER_FACE] = rest + base * (dk[:, LOWER_FACE] - rest)
            if top != 1.0:
                limits = limits.copy()
                limits[LOWER_FACE] *= top
                if span is not None:
                    span = span.copy()
                    span[:, LOWER_FACE] = rest + top * (span[:, LOWER_FACE] - rest)
        dk = soft_limit(dk, limits)
        if span is not None:
            dk = soft_range(dk, span, LOWER_FACE)
        if shown:
            dk = dk + self.patterns.offsets(weights)
        return mean_face(g) + dk

    def __call__(self, y: np.ndarray, progress=None) -> tuple[Motion, np.ndarray]:
        """Motion at the model rate and the per-frame emotion distribution that shaped it; ``progress``
        (optional) is called with the share of the work done after each stage."""
        mel, artic = self.features(y)
        release_freed_memory()
        if progress:
            progress(FEATURES_SHARE)
        shapes, probs = self.shapes(mel, artic)
        release_freed_memory()
        n = len(shapes)
        rest = mean_face(self.generator)
        voiced = voiced_frames(mel)[:n]
        # seeded by the speech too: with the seed alone every video blinked on one schedule, in step
        rng = np.random.default_rng([self.seed, zlib.crc32(np.packbits(voiced).tobytes()) ^ n])
        shapes = apply_blinks(shapes, blink_track(n, rng, voiced=voiced))
        pose = head_motion(energy(y)[:n], rng, scale=self.head)
        return Motion(shapes, rest, pose, float(FPS)), probs[:n]
