"""Training-time sequence sampling for G: speed augmentation keeps speech and landmarks paired."""
import numpy as np
import pytest
import torch

from ventriloquist.config import MEL_PER_FRAME, N_MELS
from ventriloquist.phonetics import N_ARTIC
from ventriloquist.train.generator import GeneratorConfig, _segment


def _ramp_clip(t: int = 120, artic: bool = False) -> dict:
    """A clip whose every Mel row, phonetic row (``artic``) and landmark carry their own time stamp (in frames)."""
    rows = np.arange(t * MEL_PER_FRAME, dtype=np.float32) / MEL_PER_FRAME
    mel = np.repeat(rows[:, None], N_MELS, axis=1)
    ph = np.repeat(rows[:, None], N_ARTIC, axis=1) if artic else None
    return {"x": mel if ph is None else np.concatenate([mel, ph], axis=1), "mel": mel, "artic": ph,
            "dk": np.repeat(np.arange(t, dtype=np.float32)[:, None, None], 68, axis=1).repeat(2, axis=2),
            "q_emo": np.arange(t, dtype=np.float32)[:, None].repeat(4, axis=1), "l_emo": np.ones(7, np.float32) / 7}


@pytest.mark.parametrize("speed", [0.0, 0.3])
def test_segment_keeps_speech_and_landmarks_in_step(speed):
    cfg = GeneratorConfig(speed=speed, mel_gain=0.0, mel_noise=0.0)
    rng = np.random.default_rng(0)
    clip = _ramp_clip()
    rates = []
    for _ in range(20):
        s = _segment(clip, 50, rng, cfg)
        assert s["mel"].shape == (50 * MEL_PER_FRAME, N_MELS) and s["dk"].shape == (50, 68, 2)
        frame_time = s["dk"][:, 0, 0]
        # the first Mel row of frame j was recorded at frame j's time (columns not hit by the band mask)
        mel_time = np.median(s["mel"][::MEL_PER_FRAME], axis=1)
        np.testing.assert_allclose(mel_time, frame_time, atol=1e-4)
        np.testing.assert_allclose(s["q"][:, 0], frame_time, atol=1e-4)
        rates.append(np.diff(frame_time).mean())
    if speed:
        assert min(rates) < 0.9 and max(rates) > 1.1 and max(rates) <= 1.3 + 1e-6
    else:
        np.testing.assert_allclose(rates, 1.0)


def test_segment_of_a_short_clip_holds_its_last_frame():
    cfg = GeneratorConfig(speed=0.2, mel_gain=0.0, mel_noise=0.0)
    s = _segment(_ramp_clip(30), 50, np.random.default_rng(1), cfg)
    assert s["dk"][-1, 0, 0] == 29 and s["dk"].shape[0] == 50


def test_phonetic_rows_ride_with_the_speech_and_escape_its_augmentation():
    """Gain, noise, band masks and Mel dropout touch the Mel columns only; the phones stay as heard."""
    cfg = GeneratorConfig(speed=0.2, mel_gain=0.2, mel_noise=0.1, phonetic=True, mel_dropout=1.0)
    rng = np.random.default_rng(0)
    clip = _ramp_clip(artic=True)
    for _ in range(5):
        s = _segment(clip, 50, rng, cfg)
        assert s["mel"].shape == (50 * MEL_PER_FRAME, N_MELS + N_ARTIC)
        assert not s["mel"][:, :N_MELS].any()                      # dropout 1: the Mel rows are blank ...
        frame_time = s["dk"][:, 0, 0]
        np.testing.assert_allclose(s["mel"][::MEL_PER_FRAME, N_MELS], frame_time, atol=1e-4)   # ... the phones not
    cfg.mel_dropout = 0.0
    assert _segment(clip, 50, rng, cfg)["mel"][:, :N_MELS].any()


def test_voice_segments_hear_one_of_the_clips_voices():
    """With voice_share 1 every segment's speech comes from an augmented voice, landmarks unchanged."""
    from ventriloquist.motion.generator import speech_input
    cfg = GeneratorConfig(speed=0.0, mel_gain=0.0, mel_noise=0.0, phonetic=True, voice_share=1.0)
    clip = _ramp_clip(artic=True)
    voice = {"mel": clip["mel"] * 3.0 + 7.0, "artic": np.ones_like(clip["artic"])}
    s = _segment(clip, 50, np.random.default_rng(0), cfg, voices=[voice])
    start = int(s["dk"][0, 0, 0])
    want = speech_input(voice["mel"], voice["artic"])[start * MEL_PER_FRAME:(start + 50) * MEL_PER_FRAME]
    np.testing.assert_allclose(s["mel"][:, N_MELS:], 1.0)
    # the band mask may blank a few Mel columns; the rest is the voice's own (normalised) speech
    kept = np.abs(s["mel"][:, :N_MELS]).sum(axis=0) > 0
    np.testing.assert_allclose(s["mel"][:, :N_MELS][:, kept], want[:, :N_MELS][:, kept], atol=1e-5)
    np.testing.assert_allclose(s["dk"][:, 0, 0], start + np.arange(50), atol=1e-5)


def test_a_new_voice_keeps_the_words_and_their_timing(speech_wav):
    """Pitch moves by the drawn number of semitones; the loudness envelope (the timing) stays."""
    import librosa

    from ventriloquist.audio import energy, load_audio
    from ventriloquist.train.voices import variant
    y = load_audio(speech_wav)
    out, info = variant(y, np.random.default_rng(3))
    again, info2 = variant(y, np.random.default_rng(3))
    assert info == info2 and np.array_equal(out, again)           # seeded
    assert out.shape == y.shape and out.dtype == np.float32 and np.abs(out).max() <= 1.0

    def f0(z):
        f, voiced, _ = librosa.pyin(z, fmin=60, fmax=600, sr=16000, frame_length=1024)
        return np.nanmedian(f[voiced])
    np.testing.assert_allclose(np.log2(f0(out) / f0(y)) * 12, info["semitones"], atol=1.5)
    assert np.corrcoef(energy(out), energy(y))[0, 1] > 0.6


def test_voice_variants_are_made_once_and_read_back(speech_wav, tmp_path, monkeypatch):
    from ventriloquist.train import voices
    clip = {"key": "clip0", "source": str(speech_wav)}
    first = voices.voice_variants([clip], 2, tmp_path, seed=0, progress=False)["clip0"]
    assert len(first) == 2 and first[0]["mel"].shape[0] == first[0]["artic"].shape[0]
    assert not np.array_equal(first[0]["mel"], first[1]["mel"])
    monkeypatch.setattr(voices, "variant", lambda *a: pytest.fail("made again instead of read back"))
    again = voices.voice_variants([clip], 2, tmp_path, seed=0, progress=False)["clip0"]
    assert all(np.array_equal(a["mel"], b["mel"]) for a, b in zip(first, again))


def _needs_espeak():
    import shutil
    if shutil.which("espeak-ng") is None:
        if __import__("os").environ.get("CI"):
            pytest.fail("espeak-ng is not installed; run scripts/setup.sh")
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it)")


def test_an_espeak_voice_says_each_word_inside_its_span():
    """Word-aligned synthesis: speech inside the .align spans, silence in the gaps, a slow word stretched to fit."""
    from ventriloquist.audio import energy
    from ventriloquist.train.voices import spoken_by
    _needs_espeak()
    times = np.array([[0.2, 0.5], [0.5, 0.7], [1.2, 2.4]])
    y = spoken_by(["bin", "t", "please"], times, 48000, "en-us+f3")
    assert y.shape == (48000,) and y.dtype == np.float32
    e = energy(y)
    inside = np.zeros(len(e), bool)
    for a, b in times:
        inside[int(a * 25):int(np.ceil(b * 25))] = True
    assert e[~inside].max() < 0.02 * e.max()                      # the pauses stay silent
    assert (e[30:60] > 0.05 * e.max()).mean() > 0.5               # "please" fills most of its 1.2 s


def test_espeak_voice_variants_are_drawn_per_clip_and_need_word_timings(speech_wav, tmp_path):
    from ventriloquist.errors import InputError
    from ventriloquist.train import voices
    _needs_espeak()
    clip = {"key": "clip0", "source": str(speech_wav), "words": ["put", "the", "blue", "box"],
            "word_times": np.array([[0.1, 0.4], [0.4, 0.55], [0.55, 0.9], [0.9, 1.4]])}
    made = voices.voice_variants([clip], 2, tmp_path, seed=0, progress=False, source="espeak")["clip0"]
    assert len(made) == 2 and not np.array_equal(made[0]["mel"], made[1]["mel"])
    assert made[0]["artic"].shape == (made[0]["mel"].shape[0], N_ARTIC)
    assert voices.ESPEAK_HELD_OUT and not {a for a, _ in voices.ESPEAK_HELD_OUT} & set(voices.ESPEAK_ACCENTS)
    with pytest.raises(InputError, match="voice source"):
        voices.voice_variants([clip], 1, tmp_path, seed=0, progress=False, source="tts")


def test_expression_prototypes_recover_each_emotions_mean_face():
    """Clips built from known basis coefficients give those coefficients back, per emotion; a missing
    emotion gets the neutral (zero) expression; the loss is zero when G makes exactly the prototype."""
    import torch

    from ventriloquist.emotion.vocabulary import INDEX
    from ventriloquist.motion.losses import prototype_loss
    from ventriloquist.train.generator import expression_prototypes
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(136, 3)))
    basis = (q.T * np.array([0.2, 0.1, 0.05])[:, None]).reshape(3, 68, 2).astype(np.float32)
    truth = {"angry": np.array([0.5, -0.2, 0.0]), "sad": np.array([-0.3, 0.4, 0.1])}
    defs, labels = [], []
    for emotion, c in truth.items():
        for _ in range(3):
            wobble = rng.normal(0, 0.05, (40, 3))
            wobble -= wobble.mean(axis=0)          # zero-mean over time: the clip's mean is exact
            defs.append(np.einsum("tk,kpc->tpc", c + wobble, basis))
            labels.append(emotion)
    protos = expression_prototypes(defs, labels, basis)
    np.testing.assert_allclose(protos[INDEX["angry"]], truth["angry"], atol=1e-5)
    np.testing.assert_allclose(protos[INDEX["sad"]], truth["sad"], atol=1e-5)
    assert not protos[INDEX["happy"]].any()
    heard = torch.zeros(2, 7)
    heard[0, INDEX["angry"]], heard[1, INDEX["sad"]] = 1.0, 1.0
    coef = torch.from_numpy(np.stack([protos[INDEX["angry"]], protos[INDEX["sad"]]]))[:, None].repeat(1, 10, 1)
    assert float(prototype_loss(coef, heard, torch.from_numpy(protos))) < 1e-6
    assert float(prototype_loss(torch.zeros_like(coef), heard, torch.from_numpy(protos))) > 0.1


def test_the_lips_basis_spans_the_real_mouth_motion_and_nothing_else():
    """Motion made of three known jaw-and-lip shapes (plus upper-face motion the lips must not learn) gives a
    basis that rebuilds every lower-face frame, is zero off the lower face, and is ordered by spread."""
    from ventriloquist.face.topology import LOWER_FACE
    from ventriloquist.train.generator import lip_basis
    rng = np.random.default_rng(0)
    shapes = np.zeros((3, 68, 2))
    shapes[:, LOWER_FACE] = rng.normal(size=(3, len(LOWER_FACE), 2))
    dk = np.einsum("tk,kpc->tpc", rng.normal(size=(500, 3)) * [0.05, 0.02, 0.01], shapes)
    upper = np.setdiff1d(np.arange(68), LOWER_FACE)
    dk[:, upper] = rng.normal(0, 0.1, (500, len(upper), 2))
    b = lip_basis(dk.astype(np.float32), 3)
    assert b.shape == (3, 68, 2) and not b[:, upper].any()
    spread = np.linalg.norm(b.reshape(3, -1), axis=1)
    assert spread[0] > spread[1] > spread[2] > 0
    low = dk[:, LOWER_FACE].reshape(500, -1)
    flat = b[:, LOWER_FACE].reshape(3, -1)
    coef = np.linalg.lstsq(flat.T, (low - low.mean(axis=0)).T, rcond=None)[0]
    np.testing.assert_allclose(coef.T @ flat, low - low.mean(axis=0), atol=1e-4)


def test_background_mix_sets_the_power_ratio():
    """Mixing on the log-Mel adds powers so the background sits exactly snr dB under the speech."""
    from ventriloquist.config import LOG_EPS
    from ventriloquist.train.backgrounds import mix
    rng = np.random.default_rng(0)
    speech = np.log(rng.uniform(0.1, 2.0, (200, N_MELS))).astype(np.float32)
    bg = np.log(rng.uniform(0.1, 2.0, (90, N_MELS))).astype(np.float32)      # shorter: it loops
    for snr in (0.0, 10.0):
        out = mix(speech, bg, snr, rng)
        added = (np.exp(out) - np.exp(speech)).sum(axis=1).mean()
        ps = (np.exp(speech) - LOG_EPS).sum(axis=1).mean()
        assert out.shape == speech.shape
        np.testing.assert_allclose(10 * np.log10(ps / added), snr, atol=0.05)


def test_synthetic_backgrounds_are_varied_and_audible():
    from ventriloquist.train.backgrounds import BACKGROUND_SECONDS, background_pool
    pool = background_pool(6, np.random.default_rng(0))
    assert len(pool) == 6 and all(m.shape == (BACKGROUND_SECONDS * 25 * MEL_PER_FRAME, N_MELS) for m in pool)
    assert all(np.isfinite(m).all() and m.max() > np.log(1e-3) for m in pool)
    spectra = np.array([m.mean(axis=0) for m in pool])
    assert np.min([np.abs(a - b).mean() for i, a in enumerate(spectra) for b in spectra[i + 1:]]) > 0.1


def test_background_only_segments_ask_for_the_closed_mouth():
    """Heard without speech (music, noise, silence), a segment's target is the clip's mouth at rest."""
    from ventriloquist.train.backgrounds import background_pool
    from ventriloquist.train.generator import closed_rest
    t = 120
    rng = np.random.default_rng(0)
    opening = np.abs(np.sin(np.arange(t) / 4.0))                 # the mouth opens and closes
    shapes = np.zeros((t, 68, 2), np.float32)
    shapes[:, 65:68, 1] = opening[:, None] * 0.1                 # inner lower lip moves down
    shapes[:, 57, 1] = opening * 0.1
    clip = _ramp_clip(t)
    clip.update(shapes=shapes, dk=shapes - shapes.mean(axis=0))
    cfg = GeneratorConfig(speed=0.0, mel_gain=0.0, mel_noise=0.0, background_only=1.0)
    s = _segment(clip, 50, rng, cfg, background_pool(3, rng))
    rest = closed_rest(clip)
    np.testing.assert_allclose(s["dk"], np.repeat(rest[None], 50, axis=0), atol=1e-6)
    assert (rest[[57, 65, 66, 67], 1] < -0.02).all()            # more closed than the clip's mean
    assert np.abs(s["mel"] - clip["x"][: len(s["mel"])]).mean() > 0.1   # it hears the background, not the clip


def _refused(tmp_path, capsys, toml: str) -> str:
    """Run `train generator` with this config: it must exit 2 before training; its error message."""
    from ventriloquist.cli import main
    cfg = tmp_path / "generator.toml"
    cfg.write_text(toml)
    assert main(["train", "generator", "--config", str(cfg), "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "generator").exists()
    err = capsys.readouterr().err
    assert str(cfg) in err
    return err


def test_training_on_the_validation_clips_keeps_the_last_epoch(tmp_path, capsys):
    # with the validation clips in training, "best on validation" would be a score on training data
    assert "train_on_val needs select = 'last'" in _refused(tmp_path, capsys, 'train_on_val = true\nselect = "best"\n')


def test_an_unknown_energy_point_set_is_refused_before_training(tmp_path, capsys):
    assert "energy_points must be one of all, not_lips, upper" in _refused(tmp_path, capsys, 'energy_points = "lips"\n')


def test_clean_pass_is_what_inference_makes_and_trains_on():
    from ventriloquist.motion.generator_net import EmotiveGenerator
    from ventriloquist.train.generator import clean_pass
    torch.manual_seed(0)
    g = EmotiveGenerator(np.zeros((68, 2)), np.random.default_rng(0).normal(size=(4, 68, 2)) * 0.05, 6, hidden=16,
                         dropout=0.5)
    for out in (g.ling_out, g.emo_out):          # a trained-looking output layer, so dropout shows
        torch.nn.init.normal_(out.weight, std=0.1)
    b = {"mel": torch.randn(2, 40 * MEL_PER_FRAME, N_MELS), "q": torch.randn(2, 40, 6)}
    g.train()
    noisy = g(b["mel"], b["q"])
    clean = clean_pass(g, b)
    assert g.training                                            # back in training mode after the pass
    assert clean.requires_grad
    with torch.no_grad():
        g.eval()
        ref = g(b["mel"], b["q"])
        g.train()
    assert torch.equal(clean.detach(), ref)
    assert not torch.allclose(noisy, ref)                        # dropout does change the motion


def test_phonetic_opening_loss_rewards_a_mouth_that_opens_with_the_phones():
    from ventriloquist.motion.losses import aperture, phonetic_opening_loss
    t = 50
    phones = (np.sin(np.arange(t) / 3.0) > 0).astype(np.float32)        # open, closed, open ...
    artic = np.zeros((2, t * MEL_PER_FRAME, N_ARTIC), np.float32)
    artic[:, :, 0] = np.repeat(phones, MEL_PER_FRAME)
    shapes = torch.zeros(2, t, 68, 2)
    opening = torch.from_numpy(np.convolve(phones, np.ones(3) / 3, mode="same").astype(np.float32))
    shapes[0, :, 65:68, 1] = 0.2 * opening[:, None]                     # follows the phones
    shapes[1, :, 65:68, 1] = 0.2 * (1 - opening[:, None])               # does the opposite
    torch.testing.assert_close(aperture(shapes)[0], 0.2 * opening)
    art = torch.from_numpy(artic)
    assert float(phonetic_opening_loss(shapes[:1], art[:1])) < 0.1
    assert float(phonetic_opening_loss(shapes[1:], art[1:])) > 1.9
    silent = torch.zeros_like(art)                                      # nothing heard: nothing to follow
    assert float(phonetic_opening_loss(shapes, silent)) == 0.0


def test_the_phonetic_loss_needs_the_phonetic_rows(tmp_path, capsys):
    assert "w_phonetic needs phonetic = true" in _refused(tmp_path, capsys, "w_phonetic = 0.2\n")


def test_emotion_embeddings_are_the_voiced_embedding_per_class_weighted_by_belief():
    """G ships one emotion input per class: Sp2Emo's embedding of that class's voiced frames, the
    frames that sound most like the class counting most."""
    from ventriloquist.emotion.vocabulary import INDEX
    from ventriloquist.train.generator import emotion_embeddings
    t = 60
    loud = np.full((t * MEL_PER_FRAME, N_MELS), 2.0, np.float32)
    quiet = loud.copy()
    quiet[: 20 * MEL_PER_FRAME] = np.log(1e-5)                          # 20 frames of digital silence first
    q = np.zeros((t, 3), np.float32)
    q[20:] = 1.0                                                        # the embedding of what is heard
    sure, unsure = np.zeros((t, 7), np.float32), np.zeros((t, 7), np.float32)
    sure[:, INDEX["angry"]], unsure[:, INDEX["angry"]] = 0.9, 0.3
    sure[:, INDEX["happy"]] = 0.9
    speech = [{"mel": loud, "q_emo": np.full((t, 3), 2.0, np.float32), "p_emo": sure, "emotion": INDEX["angry"]},
              {"mel": loud, "q_emo": np.full((t, 3), 4.0, np.float32), "p_emo": unsure, "emotion": INDEX["angry"]},
              {"mel": quiet, "q_emo": q, "p_emo": sure, "emotion": INDEX["happy"]},
              {"mel": np.full_like(loud, np.log(1e-5)), "q_emo": q, "p_emo": sure, "emotion": INDEX["sad"]}]
    emb = emotion_embeddings(speech, 3)
    assert emb.shape == (7, 3)
    np.testing.assert_allclose(emb[INDEX["angry"]], (0.81 * 2 + 0.09 * 4) / 0.9, rtol=1e-5)   # belief squared
    np.testing.assert_allclose(emb[INDEX["happy"]], 1.0, atol=0.05)     # the silence before is not the emotion
    np.testing.assert_allclose(emb[INDEX["sad"]], 0.0)                  # nothing heard: nothing learned


def test_other_speakers_missing_from_the_cache_are_refused(tmp_path):
    from ventriloquist.data.cache import FORMAT, INDEX_COLUMNS, INDEX_FILE
    from ventriloquist.errors import InputError
    from ventriloquist.train.generator import GeneratorConfig, load_talking
    # a cache prepared from GRID s1 alone, as `prepare ../shared/data` without the other speakers' list makes
    row = {"key": "GRID_s1_a", "file": "clips/GRID_s1_a.npz", "source": "a.mp4", "corpus": "GRID", "speaker": "s1",
           "emotion": "", "split": "train", "frames": "75", "has_audio": "1"}
    (tmp_path / INDEX_FILE).write_text(",".join(INDEX_COLUMNS) + "\n" + ",".join(row[c] for c in INDEX_COLUMNS) + "\n")
    (tmp_path / "cache.json").write_text(f'{{"format": {FORMAT}}}')
    cfg = GeneratorConfig(other_corpora=("custom",))
    with pytest.raises(InputError, match=r"holds no custom clips .*grid_others/clips.csv"):
        load_talking(tmp_path, cfg, None, False, tmp_path / "store")
