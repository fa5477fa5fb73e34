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

from ..config import ARTICULATION_RANGE, HEAD_MOTION_MAX, LOOPS, MAX_EXPRESSION, VIDEO_ENDS, generate_config
from ..emotion.vocabulary import EMOTION_CHOICES
from ..errors import VentriloquistError

TITLE = "ventriloquist: a face that speaks"
LANDMARKS = "landmarks found (what will move)"
FIELDS = {"--face-index": "face in a group photo", "--emotion-intensity": "emotion intensity",
          "--emotion-timeline": "emotion timeline", "--emotion": "emotion", "--expression": "expression strength",
          "--articulation": "articulation", "--head-motion": "head motion", "--size": "size", "--crop": "crop",
          "--seed": "seed", "--face": "face photo", "--audio": "speech"}    # the CLI's options by the page's names


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

    def shown(exc: Exception | str, *uploads) -> gr.Error:
        """One message as the page words it: the uploads by their own names, not the server's temporary
        paths, and the page's field names for the CLI's options; it stays until it is closed."""
        text = str(exc)
        for path in uploads:
            if path:
                text = text.replace(str(path), Path(path).name)
        for flag, field in FIELDS.items():
            text = text.replace(flag, field)
        return gr.Error(text, duration=None, print_exception=False)

    def preview(face, size, crop, which):
        """The landmarks found, or why there are none in the image's own label (Generate says it once)."""
        if not face:
            return gr.update(value=None, label=LANDMARKS)
        try:
            image = Ventriloquist(generate_config({"size": size, "crop": crop, "face_index": which})).preview(face)
            return gr.update(value=image, label=LANDMARKS)
        except VentriloquistError as exc:
            return gr.update(value=None, label=f"{LANDMARKS}: {shown(exc, face).message}")

    def render(face, audio, size, crop, expression, articulation, emotion, intensity, timeline, head, seed, which,
               face_video, loop, video_end, progress=gr.Progress()):
        face = face_video or face                  # a video to dub, when one is given
        if not face:
            raise shown("add a face photo or a video to dub first (or pick the example below)")
        if not audio:
            raise shown("add a speech recording first: upload a file or record with the microphone")
        try:
            opts = options(size, crop, expression, articulation, emotion, intensity, head, seed, which)
            if face_video:
                opts = {**opts, "face_index": None, "loop": loop, "video_end": video_end}
            cfg = generate_config(opts, emotion_timeline=timeline or None)
            vt = Ventriloquist(cfg, speech_motion=speech)
            # the download is named after the photo and the speech, in a folder of its own
            out = Path(tempfile.mkdtemp(dir=out_dir)) / f"{Path(face).stem}_{Path(audio).stem}.mp4"
            track = out.with_suffix(".emotions.csv")
            progress(0.0, desc="listening")
            res = vt.generate(face, out, audio=audio, export_emotions=track,
                              progress=lambda share: progress(share, desc="rendering"))
        except VentriloquistError as exc:
            raise shown(exc, face, audio, timeline) from None
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
                    landmarks = gr.Image(label=LANDMARKS, interactive=False, height=300, elem_id="landmarks")
                audio = gr.Audio(type="filepath", label="speech", sources=["upload", "microphone"], elem_id="audio")
                with gr.Accordion("or dub a video: its every frame kept, its mouth speaking the speech", open=False):
                    face_video = gr.Video(label="face video (replaces the photo)", sources=["upload"], height=240,
                                          elem_id="face_video")
                    with gr.Row():
                        loop = gr.Radio(list(LOOPS), value="pingpong", label="video shorter than the speech")
                        video_end = gr.Radio(list(VIDEO_ENDS), value="cut", label="video longer than the speech")
            with gr.Column():
                with gr.Row():
                    size = gr.Slider(128, 1024, value=512, step=32, label="size (longest side, px)")
                    crop = gr.Radio(["full", "face"], value="full", label="crop (full photo, or a square around the face)")
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
                    which = gr.Textbox(value="", label="face in a group photo (0 = leftmost; empty = the largest)",
                                       placeholder="the largest", elem_id="which")
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
                          which, face_video, loop, video_end], [video, emotions, track])
    app.queue(default_concurrency_limit=1)
    return app


def launch(host: str = "127.0.0.1", port: int = 7860, share: bool = False) -> None:
    """Load the models, build the page and serve it until interrupted."""
    from ..demo import DEMO_SPEECH, demo_face
    from .net import check_port
    check_port(host, port)
    app = build()
    print(f"open http://{host}:{port} in a browser", flush=True)
    app.launch(server_name=host, server_port=port, share=share, show_error=True, quiet=True,
               allowed_paths=[str(demo_face().parent), str(DEMO_SPEECH.parent)])
