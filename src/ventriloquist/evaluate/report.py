"""``ventriloquist evaluate``: lip sync, emotion, motion, identity and speed in one report.

Runs the shipped models and the baselines on the same held-out clips and writes
``metrics.json``, ``report.md`` and PNG plots. Talking-face clips go through the prepared
cache (built on first use, resumable), so a second run only pays for the models.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..config import FPS, MEL_PER_FRAME
from ..emotion.vocabulary import EMOTIONS, N_EMOTIONS
from ..errors import InputError
from ..face import topology
from . import baselines, metrics, plots

QUICK_CLIPS = 4                 # --quick: clips per set
RENDER_CLIPS = 6                # clips rendered for the upper bound, identity and sharpness
RESYNTH_CLIPS = 6               # clips per set re-synthesised from their first frame on the shared data
                                # (every clip of a user's folder)
OTHER_VOICES = "GRID test, other voices"


# --- data ----------------------------------------------------------------------------------------------------------
def _trim(c: dict) -> dict:
    t = min(len(c["shapes"]), len(c["mel"]) // MEL_PER_FRAME, len(c["energy"]))
    c.update(shapes=c["shapes"][:t], landmarks=c["landmarks"][:t], mel=c["mel"][: t * MEL_PER_FRAME],
             energy=c["energy"][:t])
    return c


def heard(c: dict, speech) -> np.ndarray | None:
    """What the generator reads beside a clip's Mel rows: the cached phones, and when G reads them the speech
    encoder's rows of the clip's recording (``c["speech"]`` when the clip carries its samples), made once."""
    g = speech.generator
    if not getattr(g, "n_enc", 0):
        return c.get("artic")
    if "extra" not in c:
        from ..audio import load_audio, num_frames
        from ..motion.speech import extra_rows
        y = c["speech"] if "speech" in c else load_audio(c["source"])
        c["extra"] = extra_rows(y, num_frames(len(y)), g.n_artic, g.n_enc)[: len(c["mel"])]
    return c["extra"]


def shared_layout(data: Path) -> bool:
    """A ``../shared/data``-style root (GRID, CREMA-D, MEAD), not a user's folder of videos."""
    return (data / "talking_face").is_dir() or (data / "emotion_video").is_dir()


def user_data_cache(data: Path) -> Path:
    """The cache of a user's folder or manifest: in the platform's cache folder, one per resolved path,
    so a same-named folder elsewhere never shares it."""
    import hashlib

    from ..data.cache import user_cache_dir
    where = hashlib.sha1(str(Path(data).resolve()).encode()).hexdigest()[:12]
    return user_cache_dir() / "evaluate" / f"{Path(data).stem}-{where}"


def talking_sets(data: Path, cache: Path, progress: bool) -> tuple[dict[str, list[dict]], list[dict]]:
    """Held-out talking-face sets with audio ({name: clips}) and training clips for the baselines."""
    from ..data.cache import iter_clips
    from ..data.prepare import prepare
    shared = shared_layout(data)
    target = cache if shared else user_data_cache(data)
    # a user's folder is measured with the face box following the picture between detections, as the rendered
    # videos are re-detected (:func:`~..face.track.track_video`); the training cache stays as its weights were made
    keys = set(prepare([data], target, progress=progress, carry_box=not shared)["keys"])
    clips = [_trim(c) for c in iter_clips(target, has_audio=True) if c["key"] in keys]
    if shared:
        sets = {"GRID test": [c for c in clips if c["corpus"] == "GRID" and c["split"] == "test"],
                "CREMA-D": [c for c in clips if c["corpus"] == "CREMA-D"]}
        train = [c for c in clips if c["corpus"] == "GRID" and c["split"] == "train"]
    else:
        sets = {data.name: clips}
        train = [_trim(c) for c in iter_clips(cache, split="train", has_audio=True)] if (cache / "index.csv").is_file() else []
    return {k: v for k, v in sets.items() if v}, train


def other_voices(clips: list[dict]) -> list[dict]:
    """The GRID test sentences said again by espeak-ng voices no model trained on, each word stretched onto the
    span s1 said it in: lips for an unheard voice scored against s1's real mouth. Their gap to ``GRID test``
    is what a new voice costs; within a word the timing is the voice's own, so part of it is timing."""
    from ..audio import energy, log_mel, num_frames
    from ..config import FPS, SAMPLE_RATE
    from ..phonetics import articulation
    from ..train.voices import ESPEAK_HELD_OUT, spoken_by
    out = []
    for i, c in enumerate(clips):
        if "words" not in c:
            continue
        t, voice = len(c["shapes"]), "+".join(ESPEAK_HELD_OUT[i % len(ESPEAK_HELD_OUT)])
        y = spoken_by(c["words"], c["word_times"], int(t * SAMPLE_RATE / FPS), voice)
        n = num_frames(len(y))
        out.append({**c, "mel": log_mel(y)[: t * MEL_PER_FRAME], "artic": articulation(y, n)[: t * MEL_PER_FRAME],
                    "speech": y,
                    "energy": energy(y)[:t]})
    return out


# --- lip sync and motion -------------------------------------------------------------------------------------------
def _clip_row(name: str, gen: np.ndarray, c: dict, mean_face: np.ndarray) -> dict:
    """Metrics of one generated canonical sequence against the clip's real landmarks.

    Stability and velocity use δk from one mean face for all methods (the paper's k̄), so a
    face that sits still away from the mean is told apart from one that moves around it.
    """
    real_frame, real_clip = c["shapes"], metrics.align_clip(c["landmarks"], per="clip")
    n = min(len(gen), len(real_frame))
    g = gen[:n]
    dk = metrics.deformations(g, mean_face)
    sync = metrics.sync(topology.mouth_aperture(g), c["energy"][:n])
    return {"method": name,
            "mouth_lmd": metrics.lmd_relative(g, real_clip[:n], align=False),
            "mouth_lmd_per_frame": metrics.lmd_relative(g, real_frame[:n]),
            "face_lmd": metrics.lmd_relative(g, real_frame[:n], idx=None),
            "aperture_corr": metrics.aperture_corr(g, real_frame[:n]),
            "sync_corr": sync["best_corr"], "sync_lag": sync["best_lag"],
            "stability": metrics.stability_ratio(dk), "velocity": metrics.velocity_energy(dk)}


def fit_baselines(train: list[dict]) -> tuple:
    """(ridge or None, energy jaw) fitted on the training clips (the jaw falls back to anatomy without any)."""
    return (baselines.RidgeMouth().fit(train) if train else None,
            baselines.fit_energy_jaw(train) if train else baselines.EnergyJaw())


def lip_section(sets: dict[str, list[dict]], train: list[dict], speech, out: Path, progress: bool,
                fitted: tuple, live=None) -> dict:
    """Ours (with and without the expression the voice asks for; ``live``: the live generator streamed) vs
    baselines on every held-out set."""
    from ..motion.stream import stream_shapes
    from ..train.common import progress as bar
    ridge, jaw = fitted
    result = {}
    kbar = np.mean(np.concatenate([c["shapes"] for c in train]), axis=0) if train else None
    for set_name, clips in sets.items():
        rows = []
        kbar = kbar if kbar is not None else np.mean(np.concatenate([c["shapes"] for c in clips]), axis=0)
        for i, c in enumerate(bar(clips, f"lip sync: {set_name}", enabled=progress)):
            mean = c["shapes"].mean(axis=0)
            t = len(c["shapes"])
            preds = {"static face": baselines.static_face(mean, t), "energy jaw": jaw.predict(c["energy"], mean)}
            if ridge is not None:
                preds["ridge (log-mel)"] = ridge.predict(c["mel"], mean, t)
            if speech is not None:
                preds["ours"], probs = speech.shapes(c["mel"], heard(c, speech))
                speech.emotion = False
                preds["ours, no expression"], _ = speech.shapes(c["mel"], heard(c, speech))
                speech.emotion = True
                gain = speech.generator.articulation
                if gain != 1.0:        # the default articulation is a typical speaker's, not the lip speaker's
                    own = replace(speech, articulation=1.0 / gain)
                    preds["ours, training speaker's articulation"], _ = own.shapes(c["mel"], heard(c, speech))
                if live is not None:
                    preds["ours, live (streamed, 120 ms look-ahead)"], _ = stream_shapes(live, c["mel"])
                if i == 0:
                    _clip_plots(out, set_name, c, preds["ours"], probs)
            real_dk = metrics.deformations(c["shapes"], kbar)
            rows += [_clip_row(k, v, c, kbar) for k, v in preds.items()]
            real_sync = metrics.sync(topology.mouth_aperture(c["shapes"]), c["energy"])
            rows.append({"method": "real video", "stability": metrics.stability_ratio(real_dk),
                         "velocity": metrics.velocity_energy(real_dk),
                         "sync_corr": real_sync["best_corr"], "sync_lag": real_sync["best_lag"]})
        result[set_name] = {"clips": len(clips), "methods": _mean_rows(rows)}
    return result


def _mean_rows(rows: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == name]
        keys = [k for k in sel[0] if k != "method"]
        out[name] = {k: float(np.nanmean([r[k] for r in sel])) for k in keys}
    return out


def _clip_plots(out: Path, set_name: str, c: dict, gen: np.ndarray, probs: np.ndarray) -> None:
    tag = set_name.lower().replace(" ", "_").replace("-", "").replace(",", "")
    t = np.arange(len(gen)) / FPS
    e = c["energy"][: len(gen)]
    plots.line_plot(out / f"{tag}_aperture_vs_energy.png",
                    {"real mouth": topology.mouth_aperture(c["shapes"][: len(gen)]),
                     "generated mouth": topology.mouth_aperture(gen),
                     "speech energy (scaled)": e / (e.max() + 1e-9) * 0.3},
                    x=t, title=f"{set_name}: mouth opening vs speech energy", xlabel="s", ylabel="IOD")
    plots.trajectory_plot(out / f"{tag}_trajectories.png", c["shapes"][: len(gen)], {"generated": gen},
                          title=f"{set_name}: landmark trajectories")
    plots.emotion_plot(out / f"{tag}_emotion_over_time.png", probs, list(EMOTIONS),
                       title=f"{set_name}: Sp2Emo over time")


# --- re-synthesis -------------------------------------------------------------------------------------------------
def resynthesis_section(sets: dict[str, list[dict]], speech, out: Path, fitted: tuple, limit: int | None,
                        progress: bool) -> dict:
    """Each clip re-made from its first frame and its own audio, compared with the real video (per clip and median)."""
    from .resynthesis import resynthesis
    ridge, jaw = fitted

    def canonical(c: dict) -> dict:
        mean, t = c["shapes"].mean(axis=0), len(c["shapes"])
        preds = {"energy_jaw": jaw.predict(c["energy"], mean)}
        if ridge is not None:
            preds["ridge"] = ridge.predict(c["mel"], mean, t)
        return preds
    return {name: resynthesis(clips[:limit], speech, out, canonical, progress) for name, clips in sets.items()}


# --- emotion ------------------------------------------------------------------------------------------------------
def emotion_section(data: Path, speech, out: Path, quick: bool, progress: bool) -> dict:
    """Sp2Emo on labelled test speech; Exp2Emo(generated face) agreement with and without the expression."""
    from ..audio import load_audio
    from ..data.speech import load_speech_items
    from ..train.common import progress as bar
    from ..train.expression import clip_windows
    from ..train.generator import load_exp2emo
    from ..motion.speech import emotion_features, mean_face
    import torch
    try:
        items = [i for i in load_speech_items(data) if i.split == "test"]
    except InputError:
        return {}
    if quick:
        items = items[:: max(1, len(items) // (QUICK_CLIPS * 4))]
    exp2emo = load_exp2emo()
    rows = []
    for it in bar(items, "emotion", enabled=progress):
        mel, artic = speech.features(load_audio(it.path))
        _, _, clip = emotion_features(speech.recognizer, mel)
        row = {"corpus": it.corpus, "label": it.emotion, "speech": int(np.argmax(clip))}
        for flag, key in ((True, "face"), (False, "face_no_expression")):
            speech.emotion = flag
            shapes, _ = speech.shapes(mel, artic)
            dk = (shapes - mean_face(speech.generator)).astype(np.float32)
            with torch.inference_mode():
                p = exp2emo(torch.from_numpy(clip_windows(dk, 25))).softmax(-1).mean(0).numpy()
            row[key] = int(np.argmax(p))
        speech.emotion = True
        rows.append(row)
    result = {}
    for corpus in sorted({r["corpus"] for r in rows}):
        sel = [r for r in rows if r["corpus"] == corpus]
        y, s = [r["label"] for r in sel], [r["speech"] for r in sel]
        cm = metrics.confusion(y, s, N_EMOTIONS)
        plots.confusion_plot(out / f"confusion_sp2emo_{corpus.lower()}.png", cm, list(EMOTIONS),
                             title=f"Sp2Emo on {corpus} test")
        result[corpus] = {
            "clips": len(sel), "sp2emo_accuracy": metrics.accuracy(y, s), "sp2emo_ua": metrics.unweighted_accuracy(y, s),
            "agreement_face_vs_speech": float(np.mean([r["face"] == r["speech"] for r in sel])),
            "agreement_face_vs_speech_no_expression": float(np.mean([r["face_no_expression"] == r["speech"] for r in sel])),
            "agreement_face_vs_label": float(np.mean([r["face"] == r["label"] for r in sel])),
            "agreement_face_vs_label_no_expression": float(np.mean([r["face_no_expression"] == r["label"] for r in sel])),
            "confusion": cm.tolist()}
    return result


# --- rendering: upper bound, identity, sharpness, speed --------------------------------------------------------------
def render_section(sets: dict[str, list[dict]], speech, out: Path, progress: bool) -> dict:
    """Render real and generated landmarks onto the demo face; re-detect landmarks on the frames."""
    from ..demo import demo_face
    from ..face.align import Retargeter
    from ..face.detect import face_landmarks, load_image
    from ..face.track import track_video
    from ..motion.sequence import LandmarkSequence, Motion
    from ..pipeline import Ventriloquist
    from ..config import GenerateConfig, RenderConfig
    from ..render.framing import make_canvas
    from ..train.common import progress as bar
    from ..video import read_frames
    clips = next(iter(sets.values()))[:RENDER_CLIPS]
    photo = load_image(demo_face())
    k0 = face_landmarks(photo)
    canvas = make_canvas(photo, k0, RenderConfig(size=256, crop="face"))
    rest = metrics.align_clip(canvas.map(k0)[None])[0]     # the photo's own face: δk's reference in both videos
    rows = []
    vt = Ventriloquist(GenerateConfig(render=RenderConfig(size=256, crop="face")), speech_motion=speech)
    with tempfile.TemporaryDirectory() as tmp:
        for i, c in enumerate(bar(clips, "rendering", enabled=progress)):
            # upper bound: the real landmarks through our renderer, re-detected on the frames
            m = Motion.from_sequence(LandmarkSequence(c["landmarks"], FPS, 1, 1))
            seq = Retargeter(canvas.map(k0))(m.shapes, m.rest, m.pose)
            npz = Path(tmp) / f"real{i}.npz"
            LandmarkSequence(seq.astype(np.float32), FPS, *canvas.size).save(npz)
            up = Path(tmp) / f"up{i}.mp4"
            vt.generate(demo_face(), up, landmarks=npz, progress=False)
            k_up, _, _ = track_video(up, progress=False)
            real_n = metrics.align_clip(seq)
            rows.append({"upper_bound_mouth_lmd": metrics.lmd_relative(metrics.align_clip(k_up), real_n),
                         "upper_bound_aperture_corr": metrics.aperture_corr(k_up, seq)})
            frames = list(read_frames(up))
            rows[-1].update(identity=metrics.identity_distance(photo, frames, every=10)["mean"],
                            mouth_sharpness_ratio=metrics.sharpness_ratio(frames[::10], k_up[::10], photo, k0))
            # motion as a viewer sees it: ours (speech -> video, blinks and all) and the real motion, both
            # through the same renderer and the same detector, so detector jitter counts alike on both sides
            ours = Path(tmp) / f"ours{i}.mp4"
            vt.generate(demo_face(), ours, audio=c["source"], progress=False)
            k_ours, _, _ = track_video(ours, progress=False)
            for tag, k in (("real", k_up), ("ours", k_ours)):
                dk = metrics.deformations(k, rest)
                rows[-1].update({f"redetected_{tag}_stability": metrics.stability_ratio(dk),
                                 f"redetected_{tag}_velocity": metrics.velocity_energy(dk),
                                 f"redetected_{tag}_blinks_per_min": metrics.blink_rate(k),
                                 f"redetected_{tag}_head_speed": metrics.head_motion_energy(k) / FPS})
            rows[-1]["source_head_speed"] = metrics.head_motion_energy(c["landmarks"]) / FPS     # the real video itself
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]} if rows else {}


def speed_section(seconds: tuple[int, ...] = (10, 60)) -> dict:
    """CPU seconds per second of video and peak RSS of ``ventriloquist generate`` (speech -> 512 px MP4),
    each run in a fresh process so nothing else this evaluation loaded is counted."""
    from ..bench import bench_generate
    return {f"{s}s": bench_generate(s) for s in seconds}


# --- driver ---------------------------------------------------------------------------------------------------------
def evaluate(data: Path, out: Path, quick: bool = False, progress: bool = True, cache: Path = Path("cache")) -> dict:
    """Evaluate the shipped models and the baselines; write metrics.json, report.md and plots into ``out``."""
    from ..motion.speech import SpeechMotion
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    data = Path(data)
    if not data.exists():
        raise InputError(f"evaluation data {data} does not exist; pass ../shared/data, a folder of videos or a CSV")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    speech = SpeechMotion.from_weights()
    live = SpeechMotion.from_weights(live=True)
    sets, train = talking_sets(data, cache, progress)
    if quick:
        sets = {k: v[:QUICK_CLIPS] for k, v in sets.items()}
        train = train[:: max(1, len(train) // 40)]
    report = {"data": str(data), "quick": quick}
    fitted = fit_baselines(train)
    lip_sets = dict(sets)
    if "GRID test" in sets:
        if shutil.which("espeak-ng"):
            lip_sets[OTHER_VOICES] = other_voices(sets["GRID test"])
        else:
            print(f"evaluate: '{OTHER_VOICES}' left out: it needs espeak-ng (apt-get install espeak-ng)", file=sys.stderr)
    report["lip_sync"] = lip_section(lip_sets, train, speech, out, progress, fitted, live) if sets else {}
    limit = QUICK_CLIPS if quick else (RESYNTH_CLIPS if shared_layout(data) else None)
    report["resynthesis"] = resynthesis_section(sets, speech, out, fitted, limit, progress) if sets else {}
    report["emotion"] = emotion_section(data, speech, out, quick, progress) if data.is_dir() else {}
    report["render"] = render_section(sets, speech, out, progress) if sets else {}
    report["speed"] = speed_section()
    report["seconds"] = round(time.time() - t0, 1)
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    print((out / "report.md").read_text())
    return report


def _f(v, digits: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def markdown(r: dict) -> str:
    lines = ["# ventriloquist evaluation", "", f"Data: `{r['data']}`{' (quick)' if r['quick'] else ''}; "
             f"{r['seconds']} s.", ""]
    for set_name, s in r["lip_sync"].items():
        lines += [f"## Lip sync and motion: {set_name} ({s['clips']} clips)", "",
                  "| method | mouth LMD ↓ | ×static | mouth LMD per-frame ↓ | ×static | ×ridge | face LMD ↓ | aperture r ↑ "
                  "| sync r | lag | stability | velocity |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]

        def ratio(m: dict, ref: str, key: str) -> float | None:
            den = s["methods"].get(ref, {}).get(key)
            return m[key] / den if den and m.get(key) is not None else None

        for name, m in s["methods"].items():
            lines.append(f"| {name} | {_f(m.get('mouth_lmd'), 4)} | {_f(ratio(m, 'static face', 'mouth_lmd'), 2)} | "
                         f"{_f(m.get('mouth_lmd_per_frame'), 4)} | {_f(ratio(m, 'static face', 'mouth_lmd_per_frame'), 2)} | "
                         f"{_f(ratio(m, 'ridge (log-mel)', 'mouth_lmd_per_frame'), 2)} | "
                         f"{_f(m.get('face_lmd'), 4)} | {_f(m.get('aperture_corr'))} | {_f(m.get('sync_corr'))} | "
                         f"{_f(m.get('sync_lag'), 1)} | {_f(m.get('stability'))} | {_f(m.get('velocity'), 4)} |")
        lines.append("")
    lines += resynthesis_markdown(r.get("resynthesis", {}))
    if r["emotion"]:
        lines += ["## Emotion", "", "| corpus | clips | Sp2Emo acc | Sp2Emo UA | face≈speech | face≈speech, no expression | face≈label | face≈label, no expression |",
                  "|---|---|---|---|---|---|---|---|"]
        for c, m in r["emotion"].items():
            lines.append(f"| {c} | {m['clips']} | {_f(m['sp2emo_accuracy'])} | {_f(m['sp2emo_ua'])} | "
                         f"{_f(m['agreement_face_vs_speech'])} | {_f(m['agreement_face_vs_speech_no_expression'])} | "
                         f"{_f(m['agreement_face_vs_label'])} | {_f(m['agreement_face_vs_label_no_expression'])} |")
        lines.append("")
    if r["render"]:
        m = r["render"]
        lines += ["## Rendering", "", f"- upper bound (real landmarks through our renderer, re-detected): mouth LMD "
                  f"{_f(m['upper_bound_mouth_lmd'], 4)}, aperture r {_f(m['upper_bound_aperture_corr'])}",
                  f"- identity distance photo vs frames: {_f(m['identity'])} (same person < 0.6)",
                  f"- mouth sharpness vs photo: {_f(m['mouth_sharpness_ratio'], 2)}"]
        if "redetected_ours_velocity" in m:
            lines += ["- motion re-detected on rendered video (same renderer, same detector): stability "
                      f"ours {_f(m['redetected_ours_stability'])} vs real {_f(m['redetected_real_stability'])}, "
                      f"velocity ours {_f(m['redetected_ours_velocity'], 4)} vs real {_f(m['redetected_real_velocity'], 4)}, "
                      f"blinks per minute ours {_f(m['redetected_ours_blinks_per_min'], 1)} vs real "
                      f"{_f(m['redetected_real_blinks_per_min'], 1)}"]
        if "redetected_ours_head_speed" in m:
            lines += ["- head speed (eye midpoint, IOD per frame): ours re-detected "
                      f"{_f(m['redetected_ours_head_speed'], 4)}, real motion through our renderer "
                      f"{_f(m['redetected_real_head_speed'], 4)}, the real videos {_f(m['source_head_speed'], 4)}"]
        lines.append("")
    lines += ["## Speed (speech -> 512 px MP4, whole process incl. start-up)", ""]
    for length, s in r["speed"].items():
        lines.append(f"- {length} of speech: {_f(s['compute_s_per_video_s'])} s of CPU per s of video, "
                     f"peak RSS {s['peak_rss_mb']:.0f} MB")
    lines.append("")
    return "\n".join(lines) + "\n"


RESYNTH_COLUMNS = (("ours", "ours (rendered, re-detected)"), ("upper_bound", "real landmarks rendered (ceiling)"),
                   ("opening_bound", "real opening, best shape (bound)"), ("ours_landmarks", "ours (landmarks)"),
                   ("energy_jaw", "energy jaw"), ("ridge", "ridge (log-mel)"))


def resynthesis_markdown(sets: dict) -> list[str]:
    """Per-clip and median re-synthesis tables: mouth-follow r at the best lag, amplitude, LMD vs static."""
    lines = []
    for set_name, res in sets.items():
        rows, med = res["clips"], res["median"]
        if not rows:
            continue
        cols = [(k, label) for k, label in RESYNTH_COLUMNS if k in rows[0]]
        lines += [f"## Re-synthesis: {set_name} ({len(rows)} clips; first frame + own audio vs the real video)", "",
                  "Mouth-follow r at the best lag (±3 frames) / amplitude ratio (std of opening, ours ÷ real) / "
                  "width-variation ratio (std of mouth width, ours ÷ real) / mouth LMD per frame ÷ a still face. "
                  "Rendered rows are re-detected on the video's frames. A clip whose real mouth does not follow "
                  "its own speech (r < 0.15 with its energy) is marked *not followable* and left out of the "
                  "medians.", "",
                  "| clip | " + " | ".join(label for _, label in cols) + " | identity max | face lost |",
                  "|---|" + "---|" * (len(cols) + 2)]

        def cell(m: dict) -> str:
            return (f"{_f(m['follow_r'], 2)} / {_f(m['amplitude_ratio'], 2)} / {_f(m.get('width_ratio'), 2)} / "
                    f"{_f(m['lmd_vs_static'], 2)}")
        for row in rows:
            name = row["clip"] if row.get("followable", True) else f"{row['clip']} (*not followable*)"
            lines.append(f"| {name} | " + " | ".join(cell(row[k]) for k, _ in cols)
                         + f" | {_f(row['identity_max'], 2)} | {100 * row['face_lost_share']:.0f} % |")
        lines.append("| **median** | " + " | ".join(cell(med[k]) for k, _ in cols)
                     + f" | {_f(med['identity_max'], 2)} (max) | {100 * med['face_lost_share_max']:.0f} % (max) |")
        if "closure_excess" in med["ours"]:
            lines += ["", "Closure: on frames heard as /m b p/ or silence the mouth is open "
                      f"{_f(med['ours']['closure_excess'], 3)} IOD more than the real one (median; the ceiling "
                      f"{_f(med['upper_bound'].get('closure_excess'), 3)})."]
        if "loud_closed" in med["ours"]:
            lines += ["", f"Loud speech: lips closed (opening < 0.03 IOD) in {100 * med['ours']['loud_closed']:.1f} % "
                      f"of its frames, the real speakers in {100 * med['ours']['loud_closed_real']:.1f} % (medians)."]
        if med.get("not_followable"):
            lines += ["", "Not followable (left out of the medians): " + ", ".join(med["not_followable"]) + "."]
        lines.append("")
    return lines
