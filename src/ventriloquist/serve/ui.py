"""``ventriloquist app``: the web page (Gradio) over the one pipeline, models loaded once.

Upload a face (or pick the bundled example), upload or record speech, choose the options the
CLI has, check the landmarks found on the photo, then render: a progress bar while it works,
the video with a download button, and the emotion heard over time. Errors show as one clear
message in the page.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..config import ARTICULATION_RANGE, HEAD_MOTION_MAX, MAX_EXPRESSION, generate_config
from ..emotion.vocabulary import EMOTION_CHOICES
from ..errors import VentriloquistError

TITLE = "ventriloquist: a face that speaks"


def _emotion_png(probs: np.ndarray, path: Path) -> Path:
    from ..emotion.vocabulary import EMOTIONS
    from ..evaluate.plots import emotion_plot
    return emotion_plot(path, probs, list(EMOTIONS), title="emotion over time")


def build(speech_motion=None, workdir: Path | None = None):
    """The Gradio Blocks app; ``speech_motion`` shares already loaded models (else they load once here)."""
    import gradio as gr

    from ..demo import DEMO_SPEECH, demo_face
    from ..pipeline import Ventriloquist
    speech = speech_motion if speech_motion is not None else Ventriloquist().speech_motion
    out_dir = Path(workdir or tempfile.mkdtemp(prefix="ventriloquist-app-"))
    out_dir.mkdir(parents=True, exist_ok=True)

    def options(size, crop, expression, articulation, emotion, intensity, head, seed, which) -> dict:
        return {"size": size, "crop": crop, "expression": expression, "articulation": articulation,
                "emotion": emotion, "emotion_intensity": intensity, "head_motion": head, "seed": seed,
                "face_index": which}

    def preview(face, size, crop, which):
        if not face:
            return None
        try:
            return Ventriloquist(generate_config({"size": size, "crop": crop, "face_index": which})).preview(face)
        except VentriloquistError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    def render(face, audio, size, crop, expression, articulation, emotion, intensity, timeline, head, seed, which,
               progress=gr.Progress()):
        if not face:
            raise gr.Error("add a face photo first (or pick the example below)", print_exception=False)
        if not audio:
            raise gr.Error("add a speech recording first: upload a file or record with the microphone",
                           print_exception=False)
        try:
            cfg = generate_config(options(size, crop, expression, articulation, emotion, intensity, head, seed, which),
                                  emotion_timeline=timeline or None)
            vt = Ventriloquist(cfg, speech_motion=speech)
            out = Path(tempfile.mkstemp(suffix=".mp4", dir=out_dir)[1])
            out.unlink()
            track = out.with_suffix(".emotions.csv")
            progress(0.0, desc="listening")
            res = vt.generate(face, out, audio=audio, export_emotions=track,
                              progress=lambda share: progress(share, desc="rendering"))
        except VentriloquistError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        plot = _emotion_png(res.emotions, out.with_suffix(".png"))
        return str(out), str(plot), str(track)

    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# {TITLE}\nOne photo and one speech recording give a talking-head video; the expression "
                    "comes from the emotion heard in the voice.")
        with gr.Row():
            with gr.Column():
                with gr.Row():
                    face = gr.Image(type="filepath", label="face photo", sources=["upload", "clipboard", "webcam"],
                                    height=300, elem_id="face")
                    landmarks = gr.Image(label="landmarks found (what will move)", interactive=False, height=300,
                                         elem_id="landmarks")
                audio = gr.Audio(type="filepath", label="speech", sources=["upload", "microphone"], elem_id="audio")
            with gr.Column():
                with gr.Row():
                    size = gr.Slider(128, 1024, value=512, step=32, label="size (longest side, px)")
                    crop = gr.Radio(["face", "full"], value="face", label="crop")
                with gr.Row():
                    expression = gr.Slider(0.0, MAX_EXPRESSION, value=1.0, step=0.05,
                                           label="expression strength (0 = lips only)")
                    articulation = gr.Slider(ARTICULATION_RANGE[0], ARTICULATION_RANGE[1], value=1.0, step=0.05,
                                             label="articulation (1 = a typical speaker)")
                with gr.Row():
                    emotion = gr.Dropdown(list(EMOTION_CHOICES), value="auto", label="emotion (auto = the voice's)")
                    intensity = gr.Slider(0.0, MAX_EXPRESSION, value=1.0, step=0.05, label="emotion intensity")
                timeline = gr.File(label="emotion timeline (.json or .csv, optional)", file_types=[".json", ".csv"],
                                   type="filepath", height=110, elem_id="timeline")
                with gr.Row():
                    head = gr.Slider(0.0, HEAD_MOTION_MAX, value=1.0, step=0.1, label="head motion (0 = still)")
                    seed = gr.Number(value=0, precision=0, label="seed (blinks, head motion)")
                    which = gr.Number(value=None, precision=0, minimum=0, label="face in a group photo "
                                      "(0 = leftmost; empty = the largest)")
                go = gr.Button("Generate", variant="primary", elem_id="generate")
                video = gr.Video(label="video", buttons=["download"], height=400, elem_id="video")
                emotions = gr.Image(label="emotion over time", interactive=False, height=200, elem_id="emotions")
                track = gr.File(label="emotion track (CSV, a timeline file)", interactive=False, height=80,
                                elem_id="track")
        gr.Examples([[str(demo_face()), str(DEMO_SPEECH)]], inputs=[face, audio], label="example: the bundled "
                    "portrait and speech", elem_id="examples")
        for trigger in (face.change, size.release, crop.change, which.change):
            trigger(preview, [face, size, crop, which], landmarks)
        go.click(render, [face, audio, size, crop, expression, articulation, emotion, intensity, timeline, head, seed,
                          which], [video, emotions, track])
    app.queue(default_concurrency_limit=1)
    return app


def launch(host: str = "127.0.0.1", port: int = 7860, share: bool = False) -> None:
    """Load the models, build the page and serve it until interrupted."""
    from ..demo import DEMO_SPEECH, demo_face
    app = build()
    print(f"open http://{host}:{port} in a browser", flush=True)
    app.launch(server_name=host, server_port=port, share=share, show_error=True, quiet=True,
               allowed_paths=[str(demo_face().parent), str(DEMO_SPEECH.parent)])
