"""The one pipeline: face photo + motion source (+ speech) -> landmarks -> frames -> MP4.

Rendering streams: one frame is warped, encoded and dropped before the next, so memory
stays flat however long the input is.
"""
from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .audio import load_audio, num_frames
from .config import FPS, SAMPLE_RATE, SILENCE_PEAK, GenerateConfig
from .errors import InputError, OutputError
from .face.align import Retargeter
from .face.detect import face_landmarks, load_image, models_loaded, seat_inner_lips
from .face.track import track_video
from .motion.sequence import LandmarkSequence, Motion
from .render import Renderer
from .render.framing import make_canvas
from .video import VideoWriter, ahead, check_output, frames_in_order, is_video, video_info, write_beside

DECODED_SHARE = 0.02         # progress reported once the sound is decoded ...
MOTION_SHARE = 0.3           # ... and once the motion exists; rendering is the rest
DUB_TRACK_SHARE = 0.3        # dubbing: following the face through the video takes this share of the work
DUB_EXPRESSION = 0.3         # dubbing: the voice's (or chosen) expression at this share: the video's face already acts


@dataclass
class Result:
    path: Path
    frames: int
    fps: float
    width: int
    height: int
    landmarks: LandmarkSequence = field(repr=False)
    emotions: np.ndarray | None = field(default=None, repr=False)   # (T, 7) that drove the face, per model frame
    faceless: int = 0                      # dubbing: frames without a face, shown unchanged


@dataclass
class FaceRig:
    """One photo made ready to animate: the canvas the video shows, the face's landmarks on it, the
    retargeting of canonical motion onto this face, and the renderer."""

    canvas: object                       # render.framing.Canvas
    landmarks: np.ndarray                # (68, 2) on the canvas
    retarget: Retargeter
    renderer: Renderer

    @property
    def size(self) -> tuple[int, int]:
        return self.canvas.size

    def place(self, shapes: np.ndarray, rest: np.ndarray, pose: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Canonical shapes (T, 68, 2) with their rest and head pose (T, 6) -> canvas landmarks (T, 68, 2)
        and the irises' gaze shift (T, 2)."""
        target = self.retarget(shapes, rest, pose).astype(np.float32)
        return target, self.retarget.gaze(pose, len(shapes))

    def render(self, landmarks: np.ndarray, gaze: np.ndarray | None = None) -> np.ndarray:
        """One RGB frame (H, W, 3) uint8 of the face at these canvas landmarks."""
        return self.renderer.render(landmarks, gaze)


Progress = Callable[[float], None]     # called with the share done (0-1); raising from it stops the render


@contextmanager
def _moved_in_after():
    """A list for (temporary, final) paths of exports written beside their names: each is moved into place when
    the block (the video's writing) ends well, and removed when it does not, so no half of a result remains."""
    staged: list[tuple[Path, Path]] = []
    try:
        yield staged
        for tmp, final in staged:
            os.replace(tmp, final)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def _sound_source(path: str | Path) -> Path | None:
    """The file whose own sound the video carries (streamed by the writer), or None, with a warning,
    where it cannot be read again as a sound track (the video then carries the models' 16-kHz copy)."""
    import warnings

    from .audio import sound_format
    from .errors import InputWarning
    try:
        sound_format(path)
        return Path(path)
    except Exception as exc:
        warnings.warn(f"could not keep the original sound of {path} ({type(exc).__name__}); the video carries "
                      "the 16-kHz mono copy the models heard", InputWarning, stacklevel=3)
        return None


def dub_speech(cfg: GenerateConfig, speech: np.ndarray | str, timeline: tuple, speech_motion=None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A dub's new mouth: the canonical landmarks (T, 68, 2) ``speech`` (samples, or a file to read them
    from) drives with ``cfg``'s settings and the expression at DUB_EXPRESSION, the per-frame emotion (T, 7),
    the mean face (68, 2) they are offsets of, and the model's closed mouth (68, 2), which each shot's own
    closed mouth stands for. ``speech_motion``: the loaded models (loaded here when None, as in
    :mod:`.motion.apart`'s child process)."""
    from .motion.speech import mean_face
    if isinstance(speech, str):
        speech = load_audio(speech)
    vt = Ventriloquist(cfg, speech_motion)
    base = vt._configured(vt.speech_motion, timeline)
    sm = replace(base, strength=base.strength * DUB_EXPRESSION, emotion=base.emotion and base.strength > 0)
    shapes, emotions = sm.shapes(*sm.features(speech))
    g = sm.generator
    rest = mean_face(g)
    closed = rest + (g.rest if getattr(g, "rest", None) is not None else 0.0)
    return shapes, emotions, rest, closed


def photo_speech(cfg: GenerateConfig, audio: str, timeline: tuple) -> tuple[Motion, np.ndarray]:
    """A photo's speech-driven motion and per-frame emotion (:meth:`Ventriloquist.motion_from_audio` with
    ``cfg``), the speech read from the file ``audio``: what :mod:`.motion.apart`'s child process works out
    while a cold ``generate`` loads the face models and finds the face."""
    return Ventriloquist(cfg).motion_from_audio(load_audio(audio), timeline)


class Ventriloquist:
    """Turns a face photo and a motion source into a talking-head video.

    One object loads the models once; the CLI, the web app, the server and batch mode all call
    :meth:`generate` on it. ``speech_motion`` shares already loaded models between pipelines whose
    settings differ (each applies its own ``cfg`` to a light copy).
    """

    def __init__(self, cfg: GenerateConfig | None = None, speech_motion=None) -> None:
        self.cfg = cfg or GenerateConfig()
        self._speech = speech_motion
        self._live = None

    @property
    def speech_motion(self):
        """The loaded Sp2Emo + generator (:class:`~ventriloquist.motion.speech.SpeechMotion`), loaded on first use."""
        if self._speech is None:
            from .motion.speech import SpeechMotion
            self._speech = SpeechMotion.from_weights(device=self.cfg.device, articulation=self.cfg.articulation,
                                                     strength=self.cfg.expression)
        return self._speech

    def motion_from_audio(self, audio: np.ndarray, timeline: tuple | None = None,
                          progress: Progress | None = None) -> tuple[Motion, np.ndarray]:
        """Speech -> motion and the per-frame emotion that drove it, with this pipeline's settings
        (``timeline``: its segments when already read; ``progress``: called with the share done)."""
        return self._configured(self.speech_motion, self.timeline() if timeline is None else timeline)(audio, progress)

    def _speech_settings(self) -> tuple[float, float, str, float, float]:
        """This pipeline's settings of the speech's motion (expression strength, articulation, emotion, its
        intensity, head motion), in :func:`~.motion.speech.check_settings`' order: their one list."""
        c = self.cfg
        return c.expression, c.articulation, c.emotion, c.emotion_intensity, c.head_motion

    def _configured(self, speech, timeline: tuple):
        """``speech`` (a loaded SpeechMotion) with this pipeline's settings."""
        strength, articulation, emotion, intensity, head = self._speech_settings()
        return speech.with_settings(self.cfg.seed, strength, articulation, emotion, intensity, timeline, head)

    def live_motion(self):
        """A :class:`~ventriloquist.motion.stream.StreamingMotion` with this pipeline's settings, on the
        causal live generator (loaded once per pipeline): live mode's motion."""
        from .motion.speech import SpeechMotion
        from .motion.stream import StreamingMotion
        if self._live is None:
            self._live = SpeechMotion.from_weights(device=self.cfg.device, live=True)
        return StreamingMotion(self._configured(self._live, self.timeline()))

    def rig(self, face: str | Path, photo: np.ndarray | None = None, landmarks: np.ndarray | None = None) -> FaceRig:
        """``face`` (a photo file; or its image and 68 landmarks when already read) ready to animate."""
        canvas, face_k = self._canvas(face, photo, landmarks)
        r = self.cfg.render
        # a chosen emotion is shown relative to a neutral face: the photo's own smile is taken out first
        chosen = self.cfg.emotion != "auto" or bool(self.cfg.emotion_timeline)
        return FaceRig(canvas, face_k, Retargeter(face_k, neutral=chosen),
                       Renderer(canvas.image, face_k, mouth_interior=r.mouth_interior, feather=r.feather))

    def _canvas(self, face: str | Path, photo: np.ndarray | None = None, landmarks: np.ndarray | None = None):
        """The canvas the video shows for ``face`` and the face's 68 landmarks on it."""
        photo = load_image(face) if photo is None else photo
        k = face_landmarks(photo, str(face), self.cfg.face_index) if landmarks is None else landmarks
        canvas = make_canvas(photo, k, self.cfg.render)
        return canvas, seat_inner_lips(canvas.image, canvas.map(k))

    def timeline(self) -> tuple:
        """The emotion timeline's segments (empty without one); read and checked on every call."""
        from .emotion.timeline import load_timeline
        return tuple(load_timeline(self.cfg.emotion_timeline)) if self.cfg.emotion_timeline else ()

    def preview(self, face: str | Path) -> np.ndarray:
        """The canvas the video will show (RGB), with the 68 landmarks found on the face drawn on it:
        what will be animated, checked before anything is rendered."""
        import cv2
        canvas, face_k = self._canvas(face)
        img = canvas.image.copy()
        r = max(1, round(max(img.shape[:2]) / 256))
        for x, y in face_k:
            cv2.circle(img, (int(round(x)), int(round(y))), r, (60, 255, 60), -1, cv2.LINE_AA)
        return img

    def generate(self, face: str | Path, out: str | Path, audio: str | Path | None = None,
                 driving_video: str | Path | None = None, landmarks: str | Path | None = None,
                 export_landmarks: str | Path | None = None, export_emotions: str | Path | None = None,
                 progress: bool | Progress = True) -> Result:
        """Render ``face`` driven by exactly one motion source; speech comes from ``audio`` or the driving video.

        ``progress``: True for a progress bar, False for none, or a :data:`Progress` callback.
        """
        if is_video(face):
            if driving_video is not None or landmarks is not None:
                raise InputError(f"{face} is a video, which is dubbed with --audio; --driving-video and --landmarks "
                                 "move a photo")
            if export_landmarks is not None:
                raise InputError("--export-landmarks is for a photo; a dubbed video keeps the video's own face")
            return self.dub(face, out, audio, progress, export_emotions)
        report = progress if callable(progress) else None
        bar = progress is True
        if sum(x is not None for x in (driving_video, landmarks)) > 1:
            raise InputError("pass only one of --driving-video and --landmarks")
        inputs = (face, audio, driving_video, landmarks, self.cfg.emotion_timeline)
        out = check_output(out, inputs)
        if export_landmarks is not None:
            check_output(export_landmarks, inputs + (out,), "--export-landmarks", (".npz", ".json"))
        if export_emotions is not None:
            check_output(export_emotions, inputs + (out,), "--export-emotions", (".csv", ".json"))
            if export_landmarks is not None and Path(export_emotions).resolve() == Path(export_landmarks).resolve():
                raise OutputError(f"--export-landmarks and --export-emotions both name {export_emotions}; "
                                  "give each its own file")
            if audio is None or driving_video is not None or landmarks is not None:
                raise InputError("--export-emotions needs speech-driven motion: pass --audio without "
                                 "--driving-video or --landmarks")
        timeline = self.timeline()
        heard = None
        if (audio is not None and driving_video is None and landmarks is None and self._speech is None
                and not models_loaded()):
            # a cold process (a CLI run): the speech's motion is worked out in a second interpreter while this one
            # loads the face models, finds the face and meshes it (each gets a core, see motion.apart). Where the
            # face models are loaded already, a child's own start would cost more than it overlaps
            from .motion.apart import Apart
            try:
                heard = Apart(photo_speech, self.cfg, str(audio), timeline)
            except OSError:
                heard = None
        try:
            if heard is not None:
                from .motion.speech import check_settings
                check_settings(*self._speech_settings())     # now, not once the face is found
            photo = load_image(face)
            source_k = face_landmarks(photo, str(face), self.cfg.face_index)
            speech = load_audio(audio) if audio is not None else None
            if report:
                report(DECODED_SHARE)
            if speech is not None and float(np.abs(speech).max()) < SILENCE_PEAK:
                import warnings

                from .errors import InputWarning
                warnings.warn(f"{audio} is silent; the face will not speak", InputWarning, stacklevel=2)
            rig = self.rig(face, photo, source_k)
        except BaseException:
            if heard is not None:
                heard.cancel()
            raise
        emotions = None

        if driving_video is not None:
            info = video_info(driving_video)
            if speech is None and info["has_audio"]:
                speech = load_audio(driving_video)
            k, fps, (w, h) = track_video(driving_video, progress=bar)
            motion = Motion.from_sequence(LandmarkSequence(k, fps, w, h))
        elif landmarks is not None:
            motion = Motion.from_sequence(LandmarkSequence.load(landmarks))
        elif heard is not None:
            motion, emotions = heard.result()
        elif speech is not None:
            motion, emotions = self.motion_from_audio(
                speech, timeline, report and (lambda share: report(DECODED_SHARE + share * (MOTION_SHARE - DECODED_SHARE))))
        else:
            raise InputError("nothing drives the face: pass --audio, --driving-video or --landmarks")
        if report:
            report(MOTION_SHARE)
        # unless asked otherwise, a reenactment keeps its driver's frame rate (output frame i is
        # driver frame i); speech-driven motion comes at the model's FPS
        fps = float(self.cfg.video.fps or motion.fps)
        if speech is not None and audio is not None:
            n = num_frames(len(speech), fps)          # the speech sets the length
        else:
            # the motion sets the length; a driving video's own track (AAC adds priming
            # samples when decoded) is trimmed or padded to it
            n = max(1, int(round(len(motion.shapes) / motion.fps * fps)))
            want = int(round(n / fps * SAMPLE_RATE))
            speech = np.zeros(want, np.float32) if speech is None else np.pad(speech[:want], (0, max(0, want - len(speech))))
        motion = motion.retimed(fps, n)
        target, gaze = rig.place(motion.shapes, motion.rest, motion.pose)
        seq = LandmarkSequence(target, fps, *rig.size)
        from tqdm.auto import tqdm
        every = max(1, n // 100)
        source = audio if audio is not None else (driving_video if driving_video is not None and info["has_audio"] else None)
        sound = _sound_source(source) if source is not None else None     # the viewer hears the original
        with _moved_in_after() as staged:            # exports written beside their names, moved in with the video
            with VideoWriter(out, *rig.size, cfg=replace(self.cfg.video, fps=fps),
                             audio=speech if sound is None else None, sound=sound) as writer:
                for i, k in enumerate(tqdm(target, desc="render", unit="frame", disable=not bar, leave=False)):
                    writer.write(rig.render(k, gaze[i]))
                    if report and i % every == 0:
                        report(min(1.0, MOTION_SHARE + (1 - MOTION_SHARE) * (i + 1) / n))
                if export_landmarks is not None:
                    staged.append(write_beside(export_landmarks, seq.save))
                if export_emotions is not None:
                    staged.append(self._emotion_track(export_emotions, emotions, timeline))
        if report:
            report(1.0)
        return Result(out, n, fps, rig.size[0], rig.size[1], seq, emotions)

    def _emotion_track(self, path: str | Path, emotions: np.ndarray, timeline: tuple) -> tuple[Path, Path]:
        """The per-frame emotion and intensity that drove a video, written beside ``path`` (--export-emotions):
        (temporary, final) path, moved in with the video."""
        from .emotion.timeline import emotion_track, export_emotions
        level = emotion_track(len(emotions), self.cfg.emotion, self.cfg.emotion_intensity, timeline)[2]
        return write_beside(path, lambda tmp: export_emotions(tmp, emotions, level))

    def dub(self, video: str | Path, out: str | Path, audio: str | Path | None,
            progress: bool | Progress = True, export_emotions: str | Path | None = None) -> Result:
        """``video`` speaking ``audio``: every frame of the video kept (its head, eyes, hands, background, size
        and frame rate), its jaw and lips moved by the speech, the speech as the sound.

        The face is followed through the video (:func:`~.face.track.follow_face`); each frame's own mouth is
        closed to rest first, so the old words do not show through, then given the new one, its opening filled
        with the person's own teeth and tongue where the video shows them (:class:`~.render.mouth.VideoInteriors`).
        Frames without a face pass through unchanged (counted, with a warning). Speech longer than the video plays the video
        forward and back (``cfg.loop = "pingpong"``) or again from the start (``"loop"``); shorter speech cuts
        the video at its end, or keeps the rest with the mouth closed (``cfg.video_end = "keep"``). The emotion
        (the voice's, or ``--emotion``) shows at DUB_EXPRESSION of its strength. Frames are decoded, warped
        and encoded one at a time: memory does not grow with the video's length.
        """
        from concurrent.futures import ThreadPoolExecutor

        from tqdm.auto import tqdm

        from .face.track import follow_face
        from .motion.apart import Apart
        from .motion.speech import check_settings
        from .render import DubRenderer, RestCollector
        report = progress if callable(progress) else None
        bar = progress is True
        if audio is None:
            raise InputError(f"{video} is a video to dub: pass the new speech with --audio")
        if self.cfg.face_index is not None:
            raise InputError("--face-index picks a face in a photo; a dubbed video follows its largest face")
        out = check_output(out, (video, audio, self.cfg.emotion_timeline))
        if export_emotions is not None:
            check_output(export_emotions, (video, audio, self.cfg.emotion_timeline, out), "--export-emotions",
                         (".csv", ".json"))
        timeline = self.timeline()
        speech = load_audio(audio)
        samples = len(speech)
        sound = _sound_source(audio)                        # the viewer hears the new speech as recorded
        from .render.mouth import VideoInteriors
        own = VideoInteriors()                 # the person's own mouth interiors, gathered as the face is followed,
        shut = RestCollector()                 # and each shot's lips at rest, which close the frames that must close

        def learn(frame: np.ndarray, k: np.ndarray, shot: int, index: int) -> None:
            if self.cfg.render.mouth_interior:
                own.add(frame, k)
            shut.add(frame, k, shot, index)
        # the speech's motion is worked out while the face is followed: in a second interpreter where this one
        # has not loaded the models yet (a CLI run: each gets a core, see motion.apart), else in a thread
        check_settings(*self._speech_settings())       # now, not after the video has been followed
        heard = None
        if self._speech is None:
            try:
                # the child reads the speech itself: a long one is not held twice, nor pickled across
                heard = Apart(dub_speech, self.cfg, str(audio), timeline)
            except OSError:
                heard = None
        with ExitStack() as stack:
            if heard is None:
                pool = stack.enter_context(ThreadPoolExecutor(1))
                heard = pool.submit(dub_speech, self.cfg, speech, timeline, self.speech_motion)
            if sound is not None:
                speech = None                               # the writer streams the sound from its file
            try:
                track = follow_face(video, progress=bar, on_face=learn)
            except BaseException:
                heard.cancel()
                raise
            if report:
                report(DUB_TRACK_SHARE)
            shapes, emotions, rest, closed = heard.result()
        fps = float(track.fps)
        n_speech = num_frames(samples, fps)
        n_video = len(track.found)
        n = max(n_speech, n_video) if self.cfg.video_end == "keep" else n_speech
        motion = Motion(shapes, rest, np.zeros((len(shapes), 4)), float(FPS)).retimed(fps, n_speech)
        if report:
            report(MOTION_SHARE)

        def source(j: int) -> int:
            if j < n_video:
                return j
            if self.cfg.loop == "loop" or n_video < 2:
                return j % n_video
            p = j % (2 * n_video - 2)
            return p if p < n_video else 2 * n_video - 2 - p

        order = [source(j) for j in range(n)]
        # each shot's mouth at rest (its most closed frames, in canonical space); every frame's chin and lips
        # are set to it before the new speech moves them, so the old words do not show through
        from .face.align import normalise, reference_shape
        rest_of = {}
        for s_id in np.unique(track.shot[track.found]):
            sel = np.flatnonzero((track.shot == s_id) & track.found)
            rest_of[int(s_id)] = reference_shape(np.stack([normalise(track.landmarks[i])[0] for i in sel]))
        w, h = track.size
        w2, h2 = w - w % 2, h - h % 2                       # H.264 in yuv420p needs even sides
        renderer = DubRenderer(self.cfg.render.mouth_interior, self.cfg.render.feather, own.interiors(),
                               shut.rests(track.landmarks))
        targets = np.full((n, 68, 2), np.nan, np.float32)
        every = max(1, n // 100)
        with _moved_in_after() as staged:
            with VideoWriter(out, w2, h2, cfg=replace(self.cfg.video, fps=fps), sound=sound,
                             audio=speech if sound is None else None) as writer:
                for j, frame in enumerate(tqdm(ahead(frames_in_order(video, order, track.times)), total=n, desc="dub",
                                               unit="frame", disable=not bar, leave=False)):
                    i = order[j]
                    if track.found[i]:
                        k = track.landmarks[i]
                        shape = motion.shapes[j] if j < n_speech else closed
                        t = Retargeter(k, mouth_rest=rest_of[int(track.shot[i])])(shape[None], closed)[0]
                        targets[j] = t
                        frame = renderer.render(frame, k, t, int(track.shot[i]))
                    writer.write(np.ascontiguousarray(frame[:h2, :w2]))
                    if report and j % every == 0:
                        report(min(1.0, MOTION_SHARE + (1 - MOTION_SHARE) * (j + 1) / n))
                if export_emotions is not None:
                    staged.append(self._emotion_track(export_emotions, emotions, timeline))
        missing = int((~track.found[np.array(order)]).sum())
        if missing:
            import warnings

            from .errors import InputWarning
            warnings.warn(f"{video}: no face in {missing} of {n} frame(s); they are shown unchanged", InputWarning,
                          stacklevel=2)
        if report:
            report(1.0)
        return Result(out, n, fps, w2, h2, LandmarkSequence(targets, fps, w2, h2), emotions, missing)
