"""The motion models: shapes, masks, seamless windowing, life (blinks, head), losses."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ventriloquist.audio import log_mel
from ventriloquist.config import MEL_PER_FRAME, N_MELS, SAMPLE_RATE
from ventriloquist.face import topology
from ventriloquist.motion import losses
from ventriloquist.motion.generator_net import EmotiveGenerator, SequenceDiscriminator
from ventriloquist.motion.life import apply_blinks, blink_track, head_motion
from ventriloquist.motion.speech import mean_face, run_windows

EMB = 16


def _generator(seed: int = 0) -> EmotiveGenerator:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    g = EmotiveGenerator(rng.normal(size=(68, 2)).astype(np.float32), rng.normal(0, 0.05, (4, 68, 2)).astype(np.float32),
                         EMB, hidden=32, dilations=(1, 2, 4), dropout=0.0)
    for p in g.parameters():              # break the near-zero output init so differences show
        torch.nn.init.normal_(p, std=0.2) if p.ndim > 1 else None
    return g.eval()


def test_generator_shapes_and_branch_masks():
    g = _generator()
    t = 30
    mel = torch.randn(2, t * MEL_PER_FRAME, N_MELS)
    q = torch.randn(2, t, EMB)
    with torch.no_grad():
        full = g(mel, q)
        ling = g(mel, q, emotion=False)
    assert full.shape == (2, t, 68, 2)
    upper = np.setdiff1d(np.arange(68), np.concatenate([topology.JAW, topology.MOUTH]))
    assert torch.all(ling[:, :, upper] == 0)                 # speech alone moves only jaw and lips
    assert (full - ling)[:, :, upper].abs().max() > 0        # the emotion branch moves the rest


def test_expression_strength_scales_the_emotion_branch_only():
    g = _generator()
    t = 30
    mel, q = torch.randn(1, t * MEL_PER_FRAME, N_MELS), torch.randn(1, t, EMB)
    with torch.no_grad():
        ling = g(mel, q, emotion=False)
        outs = {s: g(mel, q, strength=s) for s in (0.0, 0.5, 1.0, 1.5)}
    torch.testing.assert_close(outs[0.0], ling)              # strength 0 is the lips-only face
    reach = [float((outs[s] - ling).abs().mean()) for s in (0.5, 1.0, 1.5)]
    assert reach[0] < reach[1] < reach[2]                     # stronger, never different in kind
    lower = np.concatenate([topology.JAW, topology.MOUTH])
    upper = np.setdiff1d(np.arange(68), lower)
    ratio = (outs[0.5] - ling)[:, :, upper].abs().sum() / (outs[1.0] - ling)[:, :, upper].abs().sum()
    assert 0.4 < float(ratio) < 0.6                           # nearly linear inside the deformation bound


def test_per_frame_strength_turns_the_expression_off_frame_by_frame():
    g = _generator()
    t = 20
    mel, q = torch.randn(1, t * MEL_PER_FRAME, N_MELS), torch.randn(1, t, EMB)
    gate = torch.ones(1, t)
    gate[:, 12:] = 0.0
    with torch.no_grad():
        torch.testing.assert_close(g(mel, q, strength=torch.ones(1, t)), g(mel, q))
        gated, full, ling = g(mel, q, strength=gate), g(mel, q), g(mel, q, emotion=False)
    torch.testing.assert_close(gated[:, :12], full[:, :12])
    torch.testing.assert_close(gated[:, 12:], ling[:, 12:])


def test_expression_relaxes_in_long_silence(speech_wav):
    """Voice -> full expression; more than EXPRESSION_HOLD_S of silence -> the rest face's (gate 0)."""
    from ventriloquist.audio import load_audio
    from ventriloquist.config import FPS, SAMPLE_RATE
    from ventriloquist.motion.speech import EXPRESSION_HOLD_S, expression_gate
    y = load_audio(speech_wav)
    tail = 3.0
    gate = expression_gate(log_mel(np.concatenate([y, np.zeros(int(tail * SAMPLE_RATE), np.float32)])))
    speech_end = len(y) / SAMPLE_RATE
    assert gate[: int(speech_end * FPS) - 5].mean() > 0.9
    assert np.all(gate[int((speech_end + EXPRESSION_HOLD_S + 0.6) * FPS):] < 0.02)
    assert np.all(np.abs(np.diff(gate)) < 0.2)                 # it eases, it does not snap
    assert not expression_gate(log_mel(np.zeros(2 * SAMPLE_RATE, np.float32))).any()


def test_generator_reads_only_its_share_of_a_wider_embedding():
    """G trained on the first net's embedding of an Sp2Emo ensemble ignores the other nets' values."""
    g = _generator()
    t = 20
    mel, q = torch.randn(1, t * MEL_PER_FRAME, N_MELS), torch.randn(1, t, EMB)
    wide = torch.cat([q, torch.randn(1, t, 2 * EMB)], dim=2)
    with torch.no_grad():
        torch.testing.assert_close(g(mel, wide), g(mel, q))


def test_windows_stitch_without_seams():
    """Windowed inference over a long utterance equals one pass over all of it."""
    g = _generator()
    t = 160
    mel = np.random.default_rng(1).normal(size=(t * MEL_PER_FRAME, N_MELS)).astype(np.float32)
    q = np.random.default_rng(2).normal(size=(t, EMB)).astype(np.float32)
    from ventriloquist.motion.generator import normalise_mel
    with torch.no_grad():
        whole = g(torch.from_numpy(normalise_mel(mel))[None], torch.from_numpy(q)[None])[0].numpy()
    np.testing.assert_allclose(run_windows(g, mel, q), whole, atol=1e-4)
    short = run_windows(g, mel[: 7 * MEL_PER_FRAME], q[:7])       # shorter than one window
    assert short.shape == (7, 68, 2)


def test_discriminator_scores_each_sequence():
    d = SequenceDiscriminator()
    assert d(torch.randn(3, 40, 68, 2)).shape == (3,)


def test_losses():
    x = torch.randn(2, 20, 68, 2) * 0.05
    assert losses.mouth_l1(x, x) == 0 and losses.energy_loss(x, x) == 0 and losses.mouth_distance(x, x) == 0
    assert losses.energy_loss(torch.zeros_like(x), x) > 0          # a static face is penalised
    p = torch.tensor([[0.1, 3.0, 0, 0, 0, 0, 0]])
    assert losses.emotion_agreement(p * 100, torch.nn.functional.one_hot(torch.tensor([1]), 7).float()) < 1e-3
    assert losses.d_loss(torch.ones(4), torch.zeros(4)) == 0


def test_relative_energy_loss_reads_the_same_in_any_unit():
    x = torch.randn(2, 20, 68, 2) * 0.01                          # inter-ocular units, as G's output
    slow = 0.5 * x
    rel = losses.energy_loss(slow, x, relative=True)
    assert rel > 0.05                                              # half the real motion is a clear gap ...
    assert losses.energy_loss(100 * slow, 100 * x, relative=True) == pytest.approx(rel.item(), rel=1e-5)
    assert losses.energy_loss(slow, x) < 1e-3                      # ... that the absolute form barely sees


def test_upper_face_energy_loss_leaves_the_lip_branch_alone():
    g = _generator()
    mel, q = torch.randn(2, 30 * MEL_PER_FRAME, N_MELS), torch.randn(2, 30, EMB)
    real = torch.randn(2, 30, 68, 2) * 0.05
    grads = {}
    for name, points in losses.ENERGY_POINTS.items():
        g.zero_grad()
        losses.energy_loss(g(mel, q), real, relative=True, points=points).backward()
        grads[name] = (g.ling_out.weight.grad.abs().sum().item(), g.emo_out.weight.grad.abs().sum().item())
    assert grads["upper"][0] == 0 and grads["upper"][1] > 0       # only the emotion branch answers
    assert grads["not_lips"][0] > 0                                # the jaw outline is the lip branch's


def test_blinks_are_human_paced_and_close_the_eyes(face_landmarks):
    rng = np.random.default_rng(0)
    closure = blink_track(25 * 60, rng)
    onsets = np.sum((closure[1:] > 0.5) & (closure[:-1] <= 0.5))
    assert 6 <= onsets <= 24                                  # blinks per minute in the human range
    from ventriloquist.face.align import normalise
    kn, _ = normalise(face_landmarks)
    shut = apply_blinks(np.stack([kn, kn]), np.array([0.0, 1.0]))
    assert topology.eye_opening(shut[1]) < 0.2 * topology.eye_opening(shut[0])
    np.testing.assert_allclose(shut[0], kn)


def test_head_motion_is_small_smooth_and_seeded():
    e = np.abs(np.sin(np.arange(500) / 10))
    a = head_motion(e, np.random.default_rng(3))
    b = head_motion(e, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    from ventriloquist.face.align import POSE_COLUMNS
    assert a.shape == (500, len(POSE_COLUMNS)) and np.abs(a[:, 0]).max() < np.radians(15)   # tilts as real speakers'
    assert np.radians(2) < a[:, 0].std() < np.radians(6)       # re-detected roll spread of real speakers: 0.5-6 deg
    assert np.abs(a[:, 4:]).max() < np.radians(15)                      # turns and nods of a few degrees
    assert np.abs(np.diff(a[:, 0])).max() < 0.02 and np.abs(np.diff(a[:, 1:4], axis=0)).max() < 0.01  # tilts faster
    assert np.abs(np.diff(a[:, 4:], axis=0)).max() < 0.04


@pytest.mark.parametrize("n", [1, 3, 25, 50])
def test_short_clips_sway_no_more_than_long_ones(n):
    """A one-word clip is a slice of the usual sway, not one blown up to unit variance."""
    long = np.max([np.abs(head_motion(np.ones(500), np.random.default_rng(s))).max(0) for s in range(10)], 0)
    short = np.max([np.abs(head_motion(np.ones(n), np.random.default_rng(s))).max(0) for s in range(10)], 0)
    assert np.isfinite(short).all() and (short <= 1.5 * long).all()


def test_lips_rest_where_nothing_is_heard(speech_wav):
    """A silent file or faint hiss once opened the mouth wider than any syllable (per-utterance
    normalisation made it look like average speech); now the lips rest, and audible speech is
    left exactly to G."""
    from ventriloquist.audio import load_audio
    from ventriloquist.config import SAMPLE_RATE
    from ventriloquist.motion.speech import SpeechMotion, lip_gate
    sm = SpeechMotion.from_weights()
    speech = topology.mouth_aperture(sm.shapes(*sm.features(load_audio(speech_wav)))[0])
    rng = np.random.default_rng(5)
    for y in (np.zeros(2 * SAMPLE_RATE), 1e-4 * rng.standard_normal(2 * SAMPLE_RATE)):     # silence, -80 dBFS hiss
        quiet = topology.mouth_aperture(sm.shapes(*sm.features(y.astype(np.float32)))[0])
        # the closed rest: no wider than the speech's closures (G 5's bilabials close a little past it)
        assert quiet.mean() < np.percentile(speech, 25) and quiet.std() < 0.005
    assert speech.std() > 0.02
    loud = np.concatenate([np.zeros(SAMPLE_RATE), 0.1 * rng.standard_normal(SAMPLE_RATE), np.zeros(SAMPLE_RATE)])
    gate = lip_gate(log_mel(loud.astype(np.float32)))
    assert gate[:20].max() < 0.01 and gate[30:45].min() > 0.99 and gate[-20:].max() < 0.01
    assert np.all(np.abs(np.diff(gate)) < 0.5)                 # eased, not snapped


def test_articulation_widens_the_mouth_around_its_closed_rest(speech_wav):
    """--articulation scales how far jaw and lips move from the closed mouth: wider or more restrained
    speakers, the same timing, the same closures, the same upper face."""
    from ventriloquist.audio import load_audio
    from ventriloquist.errors import InputError
    from ventriloquist.motion.speech import SpeechMotion
    sm = SpeechMotion.from_weights()
    feats = sm.features(load_audio(speech_wav))
    shapes = {}
    for a in (0.5, 1.0, 1.5):
        sm.articulation = a
        shapes[a] = sm.shapes(*feats)[0]
    ap = {a: topology.mouth_aperture(k) for a, k in shapes.items()}
    assert ap[0.5].std() < 0.7 * ap[1.0].std() and ap[1.5].std() > 1.3 * ap[1.0].std()
    assert np.corrcoef(ap[0.5], ap[1.5])[0, 1] > 0.95
    rest = topology.mouth_aperture(mean_face(sm.generator) + sm.generator.rest)
    closed = ap[1.0] < rest + 0.01                                  # frames at (or near) the closed rest ...
    assert closed.any() and ap[1.5][closed].max() < rest + 0.03 and ap[0.5][closed].max() < rest + 0.02  # ... stay closed
    np.testing.assert_allclose(shapes[1.5][:, topology.UPPER_FACE], shapes[1.0][:, topology.UPPER_FACE], atol=1e-6)
    with pytest.raises(InputError, match="articulation"):
        SpeechMotion.from_weights(articulation=3.0)


def test_speech_features_feed_the_generator(speech_wav):
    import soundfile as sf
    y, sr = sf.read(str(speech_wav), dtype="float32")
    import librosa
    mel = log_mel(librosa.resample(y, orig_sr=sr, target_sr=SAMPLE_RATE))
    t = len(mel) // MEL_PER_FRAME
    out = run_windows(_generator(), mel, np.zeros((t, EMB), np.float32))
    assert out.shape == (t, 68, 2) and np.isfinite(out).all()


def test_no_input_can_turn_the_face_into_a_caricature():
    """However extreme the emotion embedding or the audio, deformations stay bounded."""
    from ventriloquist.motion.generator import DEFORM_LIMIT, EXPR_LIMIT
    g = _generator()
    t = 20
    with torch.no_grad():
        out = g(torch.randn(1, t * MEL_PER_FRAME, N_MELS) * 50, torch.full((1, t, EMB), 1e3))
    assert out.abs().max() <= DEFORM_LIMIT
    coef = []
    g.emo_out.register_forward_hook(lambda m, i, o: coef.append(o))
    with torch.no_grad():
        g(torch.randn(1, t * MEL_PER_FRAME, N_MELS), torch.full((1, t, EMB), 1e3))
    assert coef[0].abs().max() > EXPR_LIMIT        # the raw branch output was extreme, the face above was not


def test_jaw_and_lips_stay_in_the_range_real_faces_span():
    """Within the real range nothing changes; beyond it a coordinate eases to at most the margin past it."""
    from ventriloquist.motion.generator import RANGE_MARGIN, motion_range, soft_range
    rng = np.random.default_rng(0)
    real = [rng.normal(0, 0.05, (200, 68, 2)).astype(np.float32) for _ in range(5)]
    box = motion_range(real)
    assert box.shape == (2, 68, 2) and np.all(box[0] < 0) and np.all(box[1] > 0)
    inside = np.clip(real[0], box[0], box[1])
    lower = topology.LOWER_FACE
    np.testing.assert_allclose(soft_range(inside, box, lower), inside)
    wild = rng.normal(0, 1.0, (50, 68, 2)).astype(np.float32)       # 20x the real spread
    out = soft_range(wild, box, lower)
    margin = RANGE_MARGIN * (box[1] - box[0])
    assert np.all(out[:, lower] <= (box[1] + margin)[lower]) and np.all(out[:, lower] >= (box[0] - margin)[lower])
    upper = np.setdiff1d(np.arange(68), lower)
    np.testing.assert_array_equal(out[:, upper], wild[:, upper])        # brows and eyes are the emotion branch's
    ramp = np.linspace(-0.2, 0.2, 101, dtype=np.float32)[:, None, None] * np.ones((1, 68, 2), np.float32)
    assert np.all(np.diff(soft_range(ramp, box, lower)[:, 8, 1]) > 0)      # a smooth ease, not a hard clip


def test_the_shipped_generator_carries_the_real_range_of_jaw_and_lips():
    """The weights carry the jaw's real range, so a voice G has never heard cannot lift the chin into the nose."""
    from ventriloquist.motion.speech import load_generator
    g = load_generator()
    assert g.range is not None and g.range.shape == (2, 68, 2)
    chin_lo, chin_hi = g.range[:, 8, 1]
    assert chin_lo < g.rest[8, 1] < chin_hi             # the closed mouth lies inside the range
    assert chin_hi - chin_lo < 0.5                       # inter-ocular units: a real jaw's travel, not a box around anything


@pytest.mark.parametrize("text, voice", [("We will meet at the station at half past seven, and then go home.", "en-us"),
                                         ("I honestly cannot believe you would say something like that to me.", "en+f3")])
def test_the_shipped_lips_open_level_and_never_cross(tmp_path, espeak, text, voice):
    """The inner lips open about as much on the left as on the right, and the upper one does not pass below
    the lower one. Lips-only Gs moving each coordinate freely (no ``lips_basis``) twisted them: on these sentences
    their left and right openings differed by 0.02-0.04 IOD on average and they crossed in 14-37 % of the frames
    (G 5.0: 0.005-0.006, 0-3 %; G 6.0, in the lips basis: 0.004, 0 %)."""
    from ventriloquist.audio import load_audio
    from ventriloquist.face.topology import INNER_LIP_PAIRS
    from ventriloquist.motion.speech import SpeechMotion
    sp = SpeechMotion.from_weights()
    shapes, _ = sp.shapes(*sp.features(load_audio(espeak(text, tmp_path / "s.wav", voice))))
    upper, lower = np.array(INNER_LIP_PAIRS).T
    gaps = shapes[:, lower, 1] - shapes[:, upper, 1]                       # lower minus upper inner lip (y down)
    assert np.mean(np.abs(gaps[:, 0] - gaps[:, 2])) < 0.015
    assert np.mean((gaps < -0.01).any(axis=1)) < 0.1


def test_blinks_move_into_nearby_pauses():
    from ventriloquist.motion.life import pause_starts
    n = 25 * 60
    voiced = (np.arange(n) // 50) % 2 == 0                    # 2 s of speech, 2 s of pause, ...
    starts = pause_starts(voiced)
    closure = blink_track(n, np.random.default_rng(0), voiced=voiced)
    onsets = np.flatnonzero((closure[1:] > 0) & (closure[:-1] == 0)) + 1
    assert 8 <= len(onsets) <= 25
    near = np.abs(onsets[:, None] - starts[None]).min(1)
    free = blink_track(n, np.random.default_rng(0))
    free_onsets = np.flatnonzero((free[1:] > 0) & (free[:-1] == 0)) + 1
    assert np.mean(near == 0) > np.mean(np.abs(free_onsets[:, None] - starts[None]).min(1) == 0) + 0.3


SENTENCES = ["Put the blue box on the table, please.", "The weather is lovely today.",
             "Numbers one to ten, then back again.", "Would you like some more tea?",
             "She sells sea shells by the shore.", "My train leaves at half past nine.",
             "Open the window and let the air in.", "Nobody knows where the key went."]


def test_videos_of_different_speech_do_not_blink_in_step(tmp_path):
    """Seeded by the seed alone, every video blinked on one schedule (moved at most BLINK_SNAP_S to a
    pause), which a viewer of two of them sees; the speech now seeds it too, and the same speech
    still gives the same blinks."""
    import shutil
    import subprocess
    from ventriloquist.audio import load_audio
    from ventriloquist.config import FPS
    from ventriloquist.motion.life import BLINK_SNAP_S
    from ventriloquist.motion.speech import SpeechMotion
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it)")
    sm = SpeechMotion.from_weights()

    def first_blink(y: np.ndarray) -> int:
        e = topology.eye_opening(sm(y)[0].shapes)
        return int(np.argmax(e < 0.5 * np.median(e)))

    firsts = []
    for i, text in enumerate(SENTENCES):
        subprocess.run(["espeak-ng", "-w", str(tmp_path / f"{i}.wav"), text], check=True, capture_output=True)
        firsts.append(first_blink(np.tile(load_audio(tmp_path / f"{i}.wav"), 2)))
    assert max(firsts) - min(firsts) > 2 * BLINK_SNAP_S * FPS
    assert first_blink(np.tile(load_audio(tmp_path / "0.wav"), 2)) == firsts[0]


def test_the_head_nods_on_stressed_syllables_and_rests_in_silence():
    from ventriloquist.motion.life import NOD_S, stressed
    n = 250
    e = np.zeros(n)
    for start in (40, 110, 180):                              # three loud syllables
        e[start:start + 20] = 1.0
    peaks, strength = stressed(e)
    assert len(peaks) == 3 and np.all(np.abs(peaks - [40, 110, 180]) <= 2) and strength.min() > 0.5
    pose = head_motion(e, np.random.default_rng(0))
    still = head_motion(e, np.random.default_rng(0), scale=0.0)
    assert np.all(still == 0)
    mean = np.mean([head_motion(e, np.random.default_rng(s))[:, 5] for s in range(20)], axis=0)  # the turns average out
    dip = [mean[p:p + int(NOD_S * 25)].max() - mean[max(0, p - 5)] for p in peaks]
    assert min(dip) > 0.04                                    # the head tips down (pitch, radians) on each
    quiet = head_motion(np.zeros(n), np.random.default_rng(0))
    assert np.abs(np.diff(quiet, axis=0)).mean() < 0.5 * np.abs(np.diff(pose, axis=0)).mean()


def test_find_peaks_is_scipys():
    """life.find_peaks replaces scipy.signal.find_peaks (two seconds of import at every start) to the index,
    plateaus and equal heights included."""
    from scipy.signal import find_peaks as scipy_find_peaks

    from ventriloquist.motion.life import find_peaks
    rng = np.random.default_rng(0)
    for i in range(300):
        x = rng.normal(size=int(rng.integers(1, 300))) * 0.1
        x = np.round(x, 1) if i % 2 else x.astype(np.float32)
        for d in (1, 3, 10):
            assert np.array_equal(find_peaks(x, 0.04, d), scipy_find_peaks(x, height=0.04, distance=d)[0])
