"""End to end: photo + motion source -> MP4, through the CLI as a user runs it."""
from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from ventriloquist.cli import main
from ventriloquist.config import FPS
from ventriloquist.face import align, topology
from ventriloquist.face.track import track_video
from ventriloquist.motion.sequence import LandmarkSequence


def _talking_sequence(k0: np.ndarray, n: int, w: int, h: int) -> LandmarkSequence:
    """The photo's own landmarks with the jaw opening and closing about twice a second."""
    kn, m = align.normalise(k0)
    opening = 0.22 * np.clip(np.sin(np.arange(n) * 2 * np.pi * 2.2 / FPS), 0, None)
    seq = np.repeat(kn[None], n, axis=0)
    lower = [5, 6, 7, 8, 9, 10, 11, 55, 56, 57, 58, 59, 65, 66, 67]
    seq[:, lower, 1] += opening[:, None] * np.linspace(0.6, 1.0, len(lower))[None]
    return LandmarkSequence(align.apply(align.invert(m), seq).astype(np.float32), float(FPS), w, h)


@pytest.fixture(scope="module")
def driving(tmp_path_factory, face_path, face_image, face_landmarks):
    """A short synthetic talking clip made from the shipped photo, with speech-like audio."""
    tmp = tmp_path_factory.mktemp("drive")
    h, w = face_image.shape[:2]
    seq = _talking_sequence(face_landmarks, 50, w, h)
    seq.save(tmp / "talk.npz")
    out = tmp / "driver.mp4"
    assert main(["generate", "--face", str(face_path), "--landmarks", str(tmp / "talk.npz"),
                 "--out", str(out), "--size", "256", "--quiet"]) == 0
    return out, seq


def _duration(path):
    with av.open(str(path)) as c:
        return float(c.duration / 1e6), [s.type for s in c.streams]


def test_landmarks_source_makes_a_video(driving):
    out, seq = driving
    dur, streams = _duration(out)
    assert sorted(streams) == ["audio", "video"]
    assert abs(dur - seq.duration) <= 1 / FPS + 0.03


def test_driving_video_round_trip(tmp_path, driving, face_path):
    """Reenacting the clip on the photo: the output mouth opens and closes with the driver's."""
    drv, _ = driving
    out = tmp_path / "reenact.mp4"
    exported = tmp_path / "out.json"
    assert main(["generate", "--face", str(face_path), "--driving-video", str(drv), "--out", str(out),
                 "--size", "256", "--crop", "face", "--export-landmarks", str(exported), "--quiet"]) == 0
    k_drv, _, _ = track_video(drv, progress=False)
    k_out, _, (w, h) = track_video(out, progress=False)
    assert (w, h) == (256, 256)
    a, b = topology.mouth_aperture(k_drv), topology.mouth_aperture(k_out)
    n = min(len(a), len(b))
    assert np.corrcoef(a[:n], b[:n])[0, 1] > 0.7
    assert b.max() - b.min() > 0.1
    seq = LandmarkSequence.load(exported)
    assert seq.landmarks.shape == (n, 68, 2) and seq.width == 256


def test_fps_and_size_options(tmp_path, face_path, driving):
    _, seq = driving
    npz = tmp_path / "s.npz"
    seq.save(npz)
    out = tmp_path / "o.mp4"
    assert main(["generate", "--face", str(face_path), "--landmarks", str(npz), "--out", str(out),
                 "--fps", "30", "--size", "128", "--quiet"]) == 0
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert round(float(v.average_rate)) == 30 and max(v.codec_context.width, v.codec_context.height) == 128
    assert abs(_duration(out)[0] - seq.duration) <= 1 / 30 + 0.03


def test_reenactment_keeps_the_driver_frame_rate(tmp_path, face_path, driving):
    """Without --fps, output frame i is the driver's frame i: same rate, same count (a 30 fps driver here)."""
    _, seq = driving
    npz = tmp_path / "s30.npz"
    LandmarkSequence(seq.landmarks, 30.0, seq.width, seq.height).save(npz)
    out = tmp_path / "o30.mp4"
    assert main(["generate", "--face", str(face_path), "--landmarks", str(npz), "--out", str(out),
                 "--size", "128", "--quiet"]) == 0
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert abs(float(v.average_rate) - 30.0) < 1e-6
        assert sum(1 for _ in c.decode(v)) == len(seq)


def _fails(capsys, args, out, needle):
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("error:") and "\n" not in err and needle in err
    assert not out.exists()
    assert not list(out.parent.glob(".*.mp4"))       # no temp file left behind


def test_bad_inputs_give_one_clear_line_and_no_output(tmp_path, capsys, face_path, driving, speech_wav):
    drv, _ = driving
    out = tmp_path / "out.mp4"
    _fails(capsys, ["generate", "--face", str(tmp_path / "nobody.jpg"), "--driving-video", str(drv),
                    "--out", str(out)], out, "nobody.jpg")
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 200, np.uint8))
    _fails(capsys, ["generate", "--face", str(blank), "--driving-video", str(drv), "--out", str(out)], out,
           "no face found in")
    corrupt = tmp_path / "speech.wav"
    corrupt.write_bytes(b"RIFF....WAVEfmt garbage" * 20)
    _fails(capsys, ["generate", "--face", str(face_path), "--audio", str(corrupt), "--out", str(out)], out,
           "speech.wav")
    bad_npz = tmp_path / "bad.npz"
    np.savez(bad_npz, landmarks=np.zeros((3, 5, 2)), fps=25, width=10, height=10)
    _fails(capsys, ["generate", "--face", str(face_path), "--landmarks", str(bad_npz), "--out", str(out)], out,
           "bad.npz")
    _fails(capsys, ["generate", "--face", str(face_path), "--driving-video", str(speech_wav), "--out", str(out)],
           out, "speech.wav")


@pytest.mark.parametrize("option, value", [("--expression", "3"), ("--articulation", "3"), ("--articulation", "0"),
                                           ("--emotion-intensity", "2"), ("--head-motion", "-1"), ("--fps", "0")])
def test_strengths_outside_their_range_are_refused(tmp_path, capsys, face_path, speech_wav, option, value):
    out = tmp_path / "out.mp4"
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--face", str(face_path), "--audio", str(speech_wav), "--out", str(out), option, value])
    assert exc.value.code == 2 and option in capsys.readouterr().err
    assert not out.exists()


def test_one_pipeline_reports_progress_and_stops_cleanly(tmp_path, face_path, speech_wav):
    """The object every interface shares: a progress callback that rises to 1, and raising from it
    (a cancelled job) leaves no file behind; the emotion heard comes back with the result."""
    from ventriloquist.config import GenerateConfig, RenderConfig
    from ventriloquist.pipeline import Ventriloquist
    vt = Ventriloquist(GenerateConfig(render=RenderConfig(size=128, crop="face")))
    seen: list[float] = []
    res = vt.generate(face_path, tmp_path / "a.mp4", audio=speech_wav, progress=seen.append)
    assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) > 5
    assert res.emotions is not None and res.emotions.shape[1] == 7 and np.allclose(res.emotions.sum(1), 1, atol=1e-3)

    class Stop(Exception):
        pass

    def stop(share: float) -> None:
        if share > 0.5:
            raise Stop
    with pytest.raises(Stop):
        vt.generate(face_path, tmp_path / "b.mp4", audio=speech_wav, progress=stop)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]
    preview = vt.preview(face_path)
    assert preview.shape == (128, 128, 3) and (preview[..., 1] > 250).sum() > 30     # the 68 points, in green


def test_the_video_carries_the_input_sound_as_it_was(tmp_path, face_path, speech_wav):
    """44.1-kHz stereo speech comes out at 44.1 kHz in two channels, in time with the input; the
    models still hear their 16-kHz mono copy."""
    import av
    import librosa
    import soundfile as sf

    from ventriloquist.audio import load_audio
    y = librosa.resample(load_audio(speech_wav), orig_sr=16000, target_sr=44100)
    left, right = y, 0.5 * np.roll(y, 2000)                            # two different channels
    wav = tmp_path / "stereo.wav"
    sf.write(wav, np.stack([left, right], axis=1), 44100)
    out = tmp_path / "o.mp4"
    assert main(["generate", "--face", str(face_path), "--audio", str(wav), "--out", str(out), "--size", "96",
                 "--quiet"]) == 0
    with av.open(str(out)) as f:
        a = f.streams.audio[0]
        assert a.rate == 44100 and a.channels == 2
        video_s = float(f.streams.video[0].frames / f.streams.video[0].average_rate)
        chunks = [fr.to_ndarray() for fr in f.decode(a)]
    got = np.concatenate(chunks, axis=1)
    assert abs(got.shape[1] / 44100 - video_s) < 0.1                 # the sound lasts as long as the picture
    n = min(len(left), got.shape[1]) - 2000
    for ch, ref in ((0, left), (1, right)):
        lags = range(-1764, 1765, 4)                                   # +-40 ms: within a frame
        r = [np.corrcoef(got[ch, 2000 + d: 2000 + d + n - 2000], ref[2000: n])[0, 1] for d in lags]
        assert max(r) > 0.9, (ch, max(r))                              # each channel is its own input channel,
        assert abs(lags[int(np.argmax(r))]) / 44100 < 0.01             # in time (AAC priming removed on decode)
    assert np.corrcoef(got[0, :n], got[1, :n])[0, 1] < 0.5             # and the two stay two


def test_aac_speech_is_copied_into_the_video_unchanged(tmp_path, face_path, speech_wav):
    """An AAC track (an .m4a, a phone's video) goes into the video packet for packet, not re-encoded, and in time."""
    import av
    import librosa

    from ventriloquist.audio import load_audio
    y = librosa.resample(load_audio(speech_wav), orig_sr=16000, target_sr=48000)
    m4a = tmp_path / "voice.m4a"
    with av.open(str(m4a), "w") as c:
        s = c.add_stream("aac", rate=48000)
        s.layout = "stereo"
        for i in range(0, len(y), 1024):
            block = np.stack([y[i:i + 1024], 0.5 * y[i:i + 1024]]).astype(np.float32)
            f = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            f.sample_rate, f.pts = 48000, i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    out = tmp_path / "o.mp4"
    assert main(["generate", "--face", str(face_path), "--audio", str(m4a), "--out", str(out), "--size", "96",
                 "--quiet"]) == 0

    def packets_and_sound(path):
        with av.open(str(path)) as c:
            a = c.streams.audio[0]
            packets = [bytes(p) for p in c.demux(a) if p.size]
        with av.open(str(path)) as c:
            sound = np.concatenate([fr.to_ndarray() for fr in c.decode(c.streams.audio[0])], axis=1)
        return packets, sound

    src_packets, src = packets_and_sound(m4a)
    got_packets, got = packets_and_sound(out)
    assert len(got_packets) >= len(src_packets) - 2 and got_packets == src_packets[: len(got_packets)]
    n = min(src.shape[1], got.shape[1]) - 4800
    lags = range(-1920, 1921, 8)
    r = [np.corrcoef(got[0, 2400 + d: 2400 + d + n - 2400], src[0, 2400: n])[0, 1] for d in lags]
    assert max(r) > 0.99 and abs(lags[int(np.argmax(r))]) / 48000 < 0.01


COLD_RUN = """
import sys
import ventriloquist.motion.apart as apart
from ventriloquist.errors import InputError
from ventriloquist.pipeline import Ventriloquist
started = []
class Counted(apart.Apart):
    def __init__(self, *a):
        started.append(a)
        super().__init__(*a)
apart.Apart = Counted
face, wav, out = sys.argv[1:4]
vt = Ventriloquist()
try:
    vt.generate(face, out, audio=wav, progress=False, export_landmarks=out + ".npz")
except InputError as e:
    print("InputError", e)
print("children", len(started), "loaded here", vt._speech is not None, "scipy here", "scipy" in sys.modules)
"""


def test_a_cold_run_hears_the_speech_beside_finding_the_face(tmp_path, face_path, speech_wav):
    """A cold process (a CLI run) hears the speech in a child interpreter while it loads the face models and
    finds the face (motion.apart); a pipeline with its models loaded hears it itself: same video motion. A
    face that is not found stops the child with the run, and nothing is written."""
    import subprocess
    import sys

    from ventriloquist.pipeline import Ventriloquist as V

    def cold(face, out) -> str:
        res = subprocess.run([sys.executable, "-c", COLD_RUN, str(face), str(speech_wav), str(out)],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        return res.stdout
    said = cold(face_path, tmp_path / "a.mp4")
    assert "children 1 loaded here False" in said                 # the child heard it, not this process ...
    assert "scipy here False" in said                              # ... which did not import SciPy either (0.3 s)
    loaded = V()
    loaded.speech_motion
    b = loaded.generate(face_path, tmp_path / "b.mp4", audio=speech_wav, progress=False)
    a = LandmarkSequence.load(tmp_path / "a.mp4.npz")
    np.testing.assert_allclose(a.landmarks, b.landmarks.landmarks, atol=1e-3)
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    said = cold(blank, tmp_path / "c.mp4")
    assert "InputError" in said and "children 1" in said
    assert not (tmp_path / "c.mp4").exists()
