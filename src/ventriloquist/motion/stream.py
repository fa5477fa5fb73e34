"""Speech -> face motion as the speech arrives: live mode's half of the pipeline.

The offline path hears a whole utterance (per-utterance normalisation, 1.1 s of context either
side of a frame, phones once the utterance is over). Here every piece is causal: log-Mel rows as
soon as their window is complete, running normalisation, the causal live generator
(``generator_live``: a frame hears 120 ms of what follows it), the emotion from the last second
of speech averaged over the time the offline path smooths it by, and the lip and expression gates
from what was heard so far. :meth:`StreamingMotion.push` takes samples and returns every frame they complete.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..audio import _mel_power
from ..config import FPS, HOP_LENGTH, LOG_EPS, MEL_PER_FRAME, N_FFT, N_MELS, SAMPLES_PER_FRAME, WINDOW_FRAMES
from .expression import ExpressionTrack
from .life import apply_blinks, blink_track, head_drive, head_sway
from .speech import EMOTION_SMOOTH_S, EXPRESSION_HOLD_S, SpeechMotion, lip_gate, voiced_frames

NORM_S = 20.0                  # the running Mel normalisation remembers about this many seconds ...
PRIOR_S = 3.0                  # ... and starts from the training speech's statistics, worth this many seconds
EMOTION_CONTEXT_S = 4.0        # Sp2Emo's window (the last second) is normalised over this many seconds
HORIZON_S = 3600.0             # blinks and head sway are drawn for this long, then repeat
GATE_PAST_FRAMES = 8           # the lip gate (speech.lip_gate) is computed over this many frames before one


@dataclass
class Frame:
    """One video frame of live motion: canonical landmarks, head pose and the emotion heard."""

    index: int
    shape: np.ndarray          # (68, 2) canonical landmarks, blinks applied
    pose: np.ndarray           # (6,) relative head pose (align.POSE_COLUMNS)
    probs: np.ndarray          # (7,) emotion distribution that shaped it


class MelStream:
    """log-Mel rows of a growing signal, equal to :func:`ventriloquist.audio.log_mel`'s rows of the whole.

    Row r of log_mel analyses N_FFT samples centred half a hop into its 10-ms step; here it is made as
    soon as the last of them has arrived.
    """

    def __init__(self) -> None:
        # log_mel drops the first half hop and pads N_FFT / 2 zeros in front: row r spans buf[r*hop : r*hop + N_FFT]
        self.buf = np.zeros(N_FFT // 2, np.float32)
        self.skip = HOP_LENGTH // 2
        self.rows = 0

    def push(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, np.float32)
        cut, self.skip = min(self.skip, len(y)), self.skip - min(self.skip, len(y))
        self.buf = np.concatenate([self.buf, y[cut:]])
        n = max(0, 1 + (len(self.buf) - N_FFT) // HOP_LENGTH)
        if n == 0:
            return np.zeros((0, N_MELS), np.float32)
        out = np.log(_mel_power(self.buf[: (n - 1) * HOP_LENGTH + N_FFT], center=False).T + LOG_EPS)
        self.rows += n
        self.buf = self.buf[n * HOP_LENGTH:]
        return out.astype(np.float32)

    def flush(self, total_samples: int) -> np.ndarray:
        """The rows still missing once the signal has ended (log_mel pads the end with zeros)."""
        missing = max(1, int(round(total_samples / SAMPLES_PER_FRAME))) * MEL_PER_FRAME - self.rows
        if missing <= 0:
            return np.zeros((0, N_MELS), np.float32)
        return self.push(np.zeros(missing * HOP_LENGTH + N_FFT, np.float32))[:missing]


class RunningNorm:
    """Per-band mean and standard deviation of Mel rows over about the last NORM_S seconds, as the
    offline path normalises by the whole utterance's (:func:`~.generator.normalise_mel`): running
    averages, exponentially forgetting once older than that. ``prior`` (2, N_MELS): the mean and
    standard deviation they start from, counted as PRIOR_S seconds of rows (without it, the first
    words were normalised by the silence before them: GRID mouth LMD 0.0236 instead of 0.0197)."""

    def __init__(self, prior: np.ndarray | None = None) -> None:
        self.n = 0.0 if prior is None else PRIOR_S * FPS * MEL_PER_FRAME
        self.mean = np.zeros(N_MELS) if prior is None else np.array(prior[0], np.float64)
        self.sq = np.zeros(N_MELS) if prior is None else np.asarray(prior[1], np.float64) ** 2 + self.mean ** 2
        self.cap = NORM_S * FPS * MEL_PER_FRAME

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty_like(rows)
        for i, r in enumerate(rows.astype(np.float64)):
            self.n = min(self.n + 1, self.cap)
            w = 1.0 / self.n
            self.mean += w * (r - self.mean)
            self.sq += w * (r * r - self.sq)
            out[i] = (r - self.mean) / (np.sqrt(np.maximum(self.sq - self.mean ** 2, 0.0)) + 0.1)
        return out


class StreamingMotion:
    """Live motion from speech samples (SAMPLE_RATE), frame by frame, ``lookahead`` frames behind the speech.

    ``speech``: a :class:`SpeechMotion` holding the causal live generator
    (``SpeechMotion.from_weights(live=True)``); its settings (articulation, expression strength, chosen
    emotion and intensity, head motion, seed) apply as offline. Memory stays bounded: only the rows the
    context and the emotion window still need are kept.
    """

    def __init__(self, speech: SpeechMotion) -> None:
        g = speech.generator
        if not getattr(g, "causal", False) or g.n_extra:
            raise ValueError("live motion needs the causal live generator, which reads the log-Mel alone "
                             "(SpeechMotion.from_weights(live=True))")
        if speech.timeline:
            raise ValueError("an emotion timeline needs the whole speech; live mode takes --emotion and --emotion-intensity")
        self.speech, self.g = speech, g
        self.lookahead = g.lookahead
        self.keep = max(g.receptive_field, int(EMOTION_CONTEXT_S * FPS))      # frames of history kept
        self.mel, self.norm = MelStream(), RunningNorm(getattr(g, "mel_prior", None))
        self.rows = np.zeros((0, N_MELS), np.float32)        # raw log-Mel of frames [first, ...)
        self.x = np.zeros((0, N_MELS), np.float32)           # G's input rows (normalised), the same rows
        self.first = 0
        self.samples, self.emitted = 0, 0
        self.pcm = np.zeros(0, np.float32)                   # samples of the frame not yet complete
        self.energy: dict[int, float] = {}
        self.heard, self.probs = False, np.full(7, 1 / 7, np.float32)   # Sp2Emo has heard a window yet; its belief
        self.gate = self.level = 0.0
        self.voiced_at = -10 ** 9                            # the last frame a voice was heard
        self.track = ExpressionTrack()                       # the voice's emotion, held back when unsure
        self.loud = 1e-3
        rng = np.random.default_rng(speech.seed)
        horizon = int(HORIZON_S * FPS)
        self.blinks = blink_track(horizon, rng)
        self.sway = head_sway(horizon, rng) * speech.head

    def _rows(self, t0: int, t1: int) -> np.ndarray:
        return self.rows[max(0, (t0 - self.first) * MEL_PER_FRAME): max(0, (t1 - self.first) * MEL_PER_FRAME)]

    # --- per frame ---------------------------------------------------------------------------------------------
    def _emotion(self, t: int) -> None:
        """Sp2Emo on the second of speech ending with frame ``t`` (normalised over the seconds before), every
        few frames, averaged over about EMOTION_SMOOTH_S."""
        from ..emotion.sp2emo import features_from_mel, windows
        rec = self.speech.recognizer
        if self.heard and t % rec.stride:
            return
        mel = self._rows(t + 1 - int(EMOTION_CONTEXT_S * FPS), t + 1)
        feats, pad, _ = features_from_mel(mel)
        frames = len(mel) // MEL_PER_FRAME
        centre = max(frames // 2, frames - (WINDOW_FRAMES - WINDOW_FRAMES // 2))     # the window ends at frame t
        _, p = rec._forward(windows(feats, pad, np.array([centre])))
        a = min(1.0, rec.stride / (EMOTION_SMOOTH_S * FPS)) if self.heard else 1.0
        self.heard = True
        self.probs = ((1 - a) * self.probs + a * p[0]).astype(np.float32)

    def _gates(self, t: int) -> tuple[float, float, bool]:
        """(expression gate, lip gate, voiced) of frame ``t``, from what was heard up to it and its lookahead."""
        a = max(self.first, t - GATE_PAST_FRAMES)
        lips = float(lip_gate(self._rows(a, t + 1 + self.lookahead))[t - a])     # the offline gate, on what is known
        context = self._rows(t + 1 - int(EMOTION_CONTEXT_S * FPS), t + 1)
        voiced = bool(len(context) >= MEL_PER_FRAME and voiced_frames(context)[-1])
        if voiced:
            self.voiced_at = t
        held = t - self.voiced_at <= EXPRESSION_HOLD_S * FPS          # the expression outlasts the voice, then relaxes
        self.gate += ((1.0 if held else 0.0) - self.gate) / (0.2 * FPS)
        return self.gate, lips, voiced

    def _pose(self, t: int) -> np.ndarray:
        """The head's pose at frame ``t``: the sway, driven by the speech level so far (the loud level decays)."""
        e = self.energy.pop(t, 0.0)
        self.loud = max(0.999 * self.loud, e)
        self.level += (e / (self.loud + 1e-9) - self.level) / (0.5 * FPS)
        return self.sway[t % len(self.sway)] * head_drive(np.array([self.level]))[0]

    # --- the stream --------------------------------------------------------------------------------------------
    def push(self, y: np.ndarray, final: bool = False) -> list[Frame]:
        """Feed samples; the frames they complete (every remaining one when ``final``: the speech has ended)."""
        y = np.asarray(y, np.float32)
        frame0 = self.samples // SAMPLES_PER_FRAME
        self.samples += len(y)
        self.pcm = np.concatenate([self.pcm, y])
        while len(self.pcm) >= SAMPLES_PER_FRAME or (final and len(self.pcm)):
            seg = self.pcm[:SAMPLES_PER_FRAME].astype(np.float64)
            self.energy[frame0] = float(np.sqrt(np.mean(seg ** 2)))
            self.pcm, frame0 = self.pcm[SAMPLES_PER_FRAME:], frame0 + 1
        new = self.mel.push(y)
        if final:
            new = np.concatenate([new, self.mel.flush(self.samples)])
        return self.push_rows(new, final, max(1, int(round(self.samples / SAMPLES_PER_FRAME))))

    def push_rows(self, new: np.ndarray, final: bool = False, frames: int | None = None) -> list[Frame]:
        """Feed log-Mel rows (as :class:`MelStream` makes them) instead of samples: :meth:`push` without
        its sound (the head sways as in silence); the frames they complete. ``frames``: with ``final``,
        how many the whole stream has (as offline, the speech's length rounded to frames)."""
        if len(new):
            self.rows = np.concatenate([self.rows, new])
            self.x = np.concatenate([self.x, self.norm(new)])
        ready = self.first + len(self.rows) // MEL_PER_FRAME
        end = (ready if frames is None else min(ready, frames)) if final else ready - self.lookahead
        if end <= self.emitted:
            return []
        frames = self._frames(self.emitted, end, ready)
        self.emitted = end
        self._trim()
        return frames

    def _frames(self, t0: int, t1: int, ready: int) -> list[Frame]:
        sp = self.speech
        probs, gates, lips, poses, voiced = [], [], [], [], []
        for t in range(t0, t1):
            self._emotion(min(t + self.lookahead, ready - 1))
            gate, lip, heard = self._gates(t)
            probs.append(self.probs)
            gates.append(gate)
            lips.append(lip)
            voiced.append(heard)
            poses.append(self._pose(t))
        prob, weights = sp.expression(np.stack(probs), np.array(voiced), np.array(gates, np.float32), self.track)
        a = max(self.first, t0 - self.g.receptive_field)
        x = self.x[(a - self.first) * MEL_PER_FRAME:(ready - self.first) * MEL_PER_FRAME]     # whole frames only
        out = self.g(x[None], None, False)[0][t0 - a: t1 - a]        # G's emotion branch off, as offline
        shapes = apply_blinks(sp.finish(out.copy(), np.array(lips), weights),
                              self.blinks[np.arange(t0, t1) % len(self.blinks)])
        return [Frame(t, shapes[i], poses[i], prob[i]) for i, t in enumerate(range(t0, t1))]

    def _trim(self) -> None:
        """Drop the rows and inputs no frame to come still needs (the context and the emotion window)."""
        drop = self.emitted - self.keep - self.first
        if drop > 4 * self.keep:
            self.rows, self.x = self.rows[drop * MEL_PER_FRAME:], self.x[drop * MEL_PER_FRAME:]
            self.first += drop


def stream_shapes(speech: SpeechMotion, mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical landmarks (T, 68, 2) and emotion (T, 7) of a whole utterance's log-Mel streamed a frame at
    a time through the live motion: what live mode would have shown, for comparison with the offline path."""
    motion = StreamingMotion(speech)
    frames = []
    for i in range(0, len(mel), MEL_PER_FRAME):
        frames += motion.push_rows(mel[i:i + MEL_PER_FRAME])
    frames += motion.push_rows(np.zeros((0, N_MELS), np.float32), final=True)
    return np.stack([f.shape for f in frames]), np.stack([f.probs for f in frames])
