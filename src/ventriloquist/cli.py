"""The ``ventriloquist`` command: thin argument parsing over the pipeline, bench and demo."""
from __future__ import annotations

import argparse
import sys
import threading
import warnings
from pathlib import Path

from . import __version__
from .config import (ARTICULATION_RANGE, FPS, FPS_RANGE, HEAD_MOTION_MAX, LOOPS, MAX_EXPRESSION, OPTIONS, VIDEO_ENDS,
                     GenerateConfig, generate_config)
from .emotion.vocabulary import EMOTION_CHOICES
from .errors import InputError, InputWarning, Terminated, VentriloquistError, unwind_on_sigterm


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 16:
        raise argparse.ArgumentTypeError("must be at least 16 pixels")
    return v


def _between(lo: float, hi: float):
    """An argparse type: a number in [lo, hi], else the range in the message."""
    def number(text: str) -> float:
        v = float(text)
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo:g} and {hi:g}")
        return v
    return number


def _add_render_args(p: argparse.ArgumentParser, live: bool = False) -> None:
    p.add_argument("--size", type=_positive_int, default=None,
                   help="longest output side in pixels (default 256)" if live else
                   "longest output side in pixels (default: the photo's, at most 512)")
    p.add_argument("--crop", choices=["full", "face"], default="full",
                   help="'full' keeps the whole photo (face pasted back), 'face' crops a square around the face")
    if not live:
        p.add_argument("--fps", type=_between(*FPS_RANGE), default=None,
                       help=f"output frame rate (default: a driving video's or landmark file's own, else {FPS})")
    p.add_argument("--seed", type=int, default=0, help="random seed for anything stochastic")
    p.add_argument("--device", default="cpu", help="torch device for the models (default cpu)")
    p.add_argument("--expression", type=_between(0, MAX_EXPRESSION), default=1.0, metavar="S",
                   help=f"strength of the expression heard in the voice, 0-{MAX_EXPRESSION:g} (default 1; "
                        f"0 = lips only, 0.5 = subtler, {MAX_EXPRESSION:g} = the strongest)")
    p.add_argument("--neutral", action="store_true", help="same as --expression 0: the speech drives the lips only")
    p.add_argument("--articulation", type=_between(*ARTICULATION_RANGE), default=1.0, metavar="A",
                   help=f"how wide the mouth moves, {ARTICULATION_RANGE[0]:g}-{ARTICULATION_RANGE[1]:g} (default 1: a "
                        "typical speaker; 0.7 restrained, 1.3 wide)")
    p.add_argument("--emotion", type=str.lower, choices=EMOTION_CHOICES, default="auto",
                   help="the emotion the face shows: auto (default) is what the voice says")
    p.add_argument("--emotion-intensity", type=_between(0, MAX_EXPRESSION), default=1.0, metavar="I",
                   help=f"how strongly that emotion shows, 0-{MAX_EXPRESSION:g} (default 1)")
    if not live:
        p.add_argument("--emotion-timeline", metavar="F",
                       help="a .json or .csv file of time ranges -> emotion (and intensity) that override --emotion; "
                            "changes are eased (see README)")
    p.add_argument("--head-motion", type=_between(0, HEAD_MOTION_MAX), default=1.0, metavar="H",
                   help=f"head sway and nods, 0-{HEAD_MOTION_MAX:g} (default 1; 0 = a still head)")
    p.add_argument("--face-index", type=int, default=None, metavar="N",
                   help="which face of a group photo talks, counted from the left from 0 (default: the largest)")
    if not live:
        p.add_argument("--loop", choices=LOOPS, default="pingpong",
                       help="--face is a video shorter than the speech: play it forward and back (pingpong, default) "
                            "or restart it (loop)")
        p.add_argument("--video-end", choices=VIDEO_ENDS, default="cut",
                       help="--face is a video longer than the speech: cut it at the speech's end (default) or keep "
                            "the rest with the mouth closed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _config(a: argparse.Namespace) -> GenerateConfig:
    return generate_config({"size": a.size, "crop": a.crop, "fps": getattr(a, "fps", None), "seed": a.seed,
                            "expression": 0.0 if a.neutral else a.expression, "articulation": a.articulation,
                            "emotion": a.emotion, "emotion_intensity": a.emotion_intensity,
                            "head_motion": a.head_motion, "face_index": a.face_index,
                            "loop": getattr(a, "loop", None), "video_end": getattr(a, "video_end", None)},
                           device=a.device, emotion_timeline=getattr(a, "emotion_timeline", None))


def _cmd_generate(a: argparse.Namespace) -> None:
    from .pipeline import Ventriloquist
    res = Ventriloquist(_config(a)).generate(a.face, a.out, audio=a.audio, driving_video=a.driving_video,
                                             landmarks=a.landmarks, export_landmarks=a.export_landmarks,
                                             export_emotions=a.export_emotions, progress=not a.quiet)
    print(f"wrote {res.path} ({res.frames} frames, {res.width}x{res.height}, {res.fps:g} fps)")


def _cmd_live(a: argparse.Namespace) -> None:
    from .live import run_live
    from .pipeline import Ventriloquist
    summary = run_live(Ventriloquist(_config(a)), a.face, audio=a.audio, mic=a.mic, realtime=a.realtime,
                       record=a.record, stats=a.stats, serve=not a.no_page, port=a.port, open_browser=a.open)
    print(f"live: {summary['frames']} frames for {summary['speech_s']:g} s of speech; latency p50 "
          f"{summary['latency_p50_ms']:g} ms, p95 {summary['latency_p95_ms']:g} ms; first frame after "
          f"{summary['first_frame_s']} s; CPU {100 * summary['cpu_share_of_one_core']:.0f} % of one core"
          + (f"; recorded {a.record}" if a.record else ""))


def _cmd_app(a: argparse.Namespace) -> None:
    from .serve.ui import launch
    launch(a.host, a.port, a.share)


def _cmd_serve(a: argparse.Namespace) -> None:
    from .serve.api import ServerConfig, serve
    serve(ServerConfig(host=a.host, port=a.port, workers=a.workers, max_queued=a.max_queued,
                       max_upload_mb=a.max_upload_mb, time_limit_s=a.time_limit, keep_s=a.keep,
                       workdir=a.workdir and Path(a.workdir), api_key=a.api_key))


def _cmd_batch(a: argparse.Namespace) -> None:
    from .batch import pair_folders, read_manifest, run_batch
    out = Path(a.out)
    if a.manifest and (a.faces or a.audio):
        raise VentriloquistError("pass either a manifest CSV or --faces and --audio, not both")
    if a.manifest:
        rows = read_manifest(Path(a.manifest), out)
    elif a.faces and a.audio:
        rows = pair_folders(Path(a.faces), Path(a.audio), out, every=a.every)
    else:
        raise VentriloquistError("nothing to do: pass a manifest CSV, or --faces DIR and --audio DIR")
    counts = run_batch(rows, out, workers=a.workers, progress=not a.quiet, engine=a.engine, address=a.address)
    if counts["failed"]:
        raise VentriloquistError(f"{counts['failed']} of {counts['rows']} rows failed; see {counts['summary']}")


def _cmd_demo(a: argparse.Namespace) -> None:
    from .demo import run_demo
    for path in run_demo(Path(a.out), _config(a), progress=not a.quiet):
        print(f"wrote {path}")


def _cmd_bench(a: argparse.Namespace) -> None:
    from .bench import run_bench, run_dub, run_lengths, run_startup
    if a.startup:
        run_startup(json_path=a.json)
    elif a.dub:
        run_dub(a.dub, size=a.sizes[-1], json_path=a.json)
    elif a.lengths:
        run_lengths(a.lengths, size=a.sizes[-1], json_path=a.json)
    else:
        run_bench(sizes=a.sizes, seconds=a.seconds, threads=a.threads, json_path=a.json)


def _cmd_train(a: argparse.Namespace) -> None:
    from .train import TrainOptions, run
    opts = TrainOptions(config=a.config and Path(a.config), data=Path(a.data), out=Path(a.out), epochs=a.epochs,
                        seed=a.seed, resume=a.resume, smoke=a.smoke, publish=a.publish, device=a.device)
    run(a.stage, opts)


def _cmd_prepare(a: argparse.Namespace) -> None:
    from .data.prepare import prepare
    prepare([Path(p) for p in a.inputs], Path(a.out), workers=a.workers, progress=not a.quiet, engine=a.engine,
            address=a.address, shards=a.shards)


def _cmd_evaluate(a: argparse.Namespace) -> None:
    from .evaluate import evaluate
    evaluate(Path(a.data), Path(a.out), quick=a.quick, progress=not a.quiet, cache=Path(a.cache))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ventriloquist",
                                description="One speech recording + one face photo -> a talking-head video, on the CPU.")
    p.add_argument("--version", action="version", version=f"ventriloquist {__version__}")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="face photo + speech or motion -> talking-head MP4")
    g.add_argument("--face", required=True, help="photo with one clearly visible face (JPEG/PNG), or a video of one to dub "
                   "(its every frame kept, its mouth speaking --audio)")
    g.add_argument("--audio", help="speech recording (wav, flac, mp3, m4a, ogg, or a video's audio)")
    g.add_argument("--driving-video", help="video of a talking face whose motion (and audio) drives the photo")
    g.add_argument("--landmarks", help="landmark sequence (.npz/.json, as written by --export-landmarks)")
    g.add_argument("--out", required=True, help="output .mp4")
    g.add_argument("--export-landmarks", help="also write the rendered landmarks to this .npz or .json")
    g.add_argument("--export-emotions", metavar="F",
                   help="also write the per-frame emotion that drove the video to this .csv or .json (a timeline)")
    _add_render_args(g)
    g.set_defaults(func=_cmd_generate)

    d = sub.add_parser("demo", help="render the bundled demo (shipped face + speech) and a frame strip")
    d.add_argument("--out", default="out", help="output folder (default ./out)")
    _add_render_args(d)
    # a portrait crop: in the full photo the face is small and the suit's mission patch looks face-like
    d.set_defaults(func=_cmd_demo, crop="face", size=512)

    lv = sub.add_parser("live", help="speech in, a talking face out, as it is spoken: a page on 127.0.0.1, an MP4, latencies")
    lv.add_argument("--face", required=True, help="photo with one clearly visible face (JPEG/PNG)")
    lv.add_argument("--mic", action="store_true", help="speech from the microphone (needs sounddevice)")
    lv.add_argument("--audio", help="speech from a file or URL, or - for raw 16-kHz mono s16le PCM on stdin; the "
                                    "session ends when it does")
    lv.add_argument("--realtime", action="store_true", help="play --audio FILE at its real pace (else as fast as it goes)")
    lv.add_argument("--record", metavar="OUT.mp4", help="also record the session (picture and sound, frame-exact)")
    lv.add_argument("--stats", metavar="F.json", help="write latency per frame, p50/p95 and CPU use here")
    lv.add_argument("--port", type=int, default=8765, help="the page's port on 127.0.0.1 (default 8765; 0: any free)")
    lv.add_argument("--no-page", action="store_true", help="serve no page (record and stats only)")
    lv.add_argument("--open", action="store_true", help="open the page in the browser")
    _add_render_args(lv, live=True)
    lv.set_defaults(func=_cmd_live, size=256)

    w = sub.add_parser("app", help="the web page: upload a face and speech, watch the video (Gradio)")
    w.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    w.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    w.add_argument("--share", action="store_true", help="also open a public Gradio share link (off by default)")
    w.set_defaults(func=_cmd_app)

    s = sub.add_parser("serve", help="the REST API: POST /v1/videos, poll, download (FastAPI; docs at /docs)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    s.add_argument("--workers", type=int, default=1, help="videos rendered at once (default 1; about a core each)")
    s.add_argument("--max-queued", type=int, default=16, help="waiting jobs beyond this get 429 (default 16)")
    s.add_argument("--max-upload-mb", type=float, default=50.0, help="larger requests get 413 (default 50)")
    s.add_argument("--time-limit", type=float, default=600.0, help="seconds a job may run (default 600)")
    s.add_argument("--keep", type=float, default=3600.0, help="seconds a finished video is kept (default 3600)")
    s.add_argument("--workdir", help="folder for job files (default: a temporary folder removed at exit)")
    s.add_argument("--api-key", help="require this key (X-API-Key or bearer); default: $VENTRILOQUIST_API_KEY")
    s.set_defaults(func=_cmd_serve)

    bt = sub.add_parser("batch", help="many videos: a manifest CSV, or a folder of faces and a folder of speech")
    bt.add_argument("manifest", nargs="?", help="CSV with columns face,audio[,out] and any of "
                                                f"{','.join(OPTIONS)},emotion_timeline (paths relative to the CSV)")
    bt.add_argument("--faces", help="folder of face photos")
    bt.add_argument("--audio", help="folder of speech files, paired with the faces by file name")
    bt.add_argument("--every", action="store_true", help="every face with every speech file instead")
    bt.add_argument("--out", required=True, help="output folder (finished videos are skipped on a rerun)")
    bt.add_argument("--workers", type=int, default=None,
                    help="processes, or CPUs of a local Ray runtime (default: one per CPU core)")
    bt.add_argument("--engine", choices=("local", "ray"), default="local",
                    help="local processes (default) or one pipeline per Ray actor (pip install 'ventriloquist[cluster]')")
    bt.add_argument("--address", default=None, help="with --engine ray: join this Ray cluster (e.g. HEAD:6379 or auto)")
    bt.add_argument("--quiet", action="store_true")
    bt.set_defaults(func=_cmd_batch)

    b = sub.add_parser("bench", help="render+encode speed (s of compute per s of video) and peak memory")
    b.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    b.add_argument("--seconds", type=float, default=10.0, help="video length per size")
    b.add_argument("--threads", type=int, default=1, help="CPU threads for OpenCV and the encoder (default 1)")
    b.add_argument("--lengths", type=float, nargs="+", metavar="S",
                   help="instead: whole `generate` runs on S seconds of speech each (fresh processes; e.g. 10 60 600): "
                        "s/s and peak memory by length (at the last --sizes)")
    b.add_argument("--dub", type=float, nargs="+", metavar="S",
                   help="instead: dubbing S-second talking videos (fresh processes; e.g. 10 120): wall s per s of video "
                        "and peak memory by length (at the last --sizes)")
    b.add_argument("--startup", action="store_true",
                   help="the start-up budget: where a fresh process's first generate spends its time, stage by stage")
    b.add_argument("--json", help="also write the results to this JSON file")
    b.set_defaults(func=_cmd_bench)
    from .train import DEFAULT_DATA, STAGES
    t = sub.add_parser("train", help="train a model stage (seeded, resumable); see docs/TRAINING.md")
    t.add_argument("stage", choices=STAGES)
    t.add_argument("--config", help="TOML file overriding the stage's defaults (e.g. configs/emotion.toml)")
    t.add_argument("--data", default=str(DEFAULT_DATA), help=f"data root (default {DEFAULT_DATA})")
    t.add_argument("--out", default="runs", help="checkpoints and logs go to OUT/STAGE (default runs)")
    t.add_argument("--epochs", type=int, help="override the configured number of epochs")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true", help="continue from OUT/STAGE/last.pt")
    t.add_argument("--smoke", action="store_true", help="a few steps on a tiny subset (for CI)")
    t.add_argument("--publish", action="store_true", help="install the best checkpoint as the package default")
    t.add_argument("--device", default="cpu")
    t.set_defaults(func=_cmd_train)

    pr = sub.add_parser("prepare", help="extract landmarks + audio features of videos or a corpus into a cache")
    pr.add_argument("inputs", nargs="+", help="video files, folders of videos, or a data root like ../shared/data")
    pr.add_argument("--out", required=True, help="cache folder")
    pr.add_argument("--workers", type=int, default=None,
                    help="processes (default 2), or CPUs of a local Ray runtime (default: all of this machine's)")
    pr.add_argument("--engine", choices=("local", "ray"), default="local",
                    help="local processes (default) or Ray tasks (pip install 'ventriloquist[cluster]')")
    pr.add_argument("--address", default=None, help="with --engine ray: join this Ray cluster (e.g. HEAD:6379 or auto)")
    pr.add_argument("--shards", type=int, default=0, metavar="N",
                    help="also pack the cache into WebDataset tar shards of N clips each, for streaming")
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=_cmd_prepare)

    e = sub.add_parser("evaluate", help="metrics, baselines, plots and a report on held-out clips")
    e.add_argument("--data", default=str(DEFAULT_DATA), help="data root, a folder of videos, or a manifest CSV")
    e.add_argument("--out", default="report", help="report folder (default ./report)")
    e.add_argument("--cache", default="cache", help="the prepared cache of a data root like ../shared/data "
                   "(default ./cache, the training cache); a folder of videos is cached in the user cache folder")
    e.add_argument("--quick", action="store_true", help="a few clips only (smoke test)")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=_cmd_evaluate)
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our input warnings as one plain line; anything else as Python shows it."""
    if issubclass(category, InputWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    if threading.current_thread() is threading.main_thread():
        unwind_on_sigterm()
    try:
        args.func(args)
    except VentriloquistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        print("error: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for details)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
