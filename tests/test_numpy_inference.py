"""Inference without PyTorch: the weights read without torch, the numpy nets equal to the torch modules
training fits, and a whole `generate` that never imports torch."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from ventriloquist.weights import load_checkpoint, read_checkpoint


def _same(a, b, where: str = "") -> int:
    """Assert that ``a`` (read without torch) holds ``b`` (torch.load); the number of tensors compared."""
    if isinstance(b, torch.Tensor):
        assert isinstance(a, np.ndarray) and a.dtype == b.numpy().dtype, where
        np.testing.assert_array_equal(a, b.numpy(), err_msg=where)
        return 1
    if isinstance(b, dict):
        assert set(a) == set(b), where
        return sum(_same(a[k], b[k], f"{where}/{k}") for k in b)
    if isinstance(b, (list, tuple)):
        assert len(a) == len(b), where
        return sum(_same(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b)))
    if isinstance(b, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
        return 0
    assert a == b, where
    return 0


@pytest.mark.parametrize("name", ["generator", "generator_live", "sp2emo", "exp2emo"])
def test_the_shipped_weights_read_without_torch_as_torch_reads_them(name):
    assert _same(read_checkpoint(name), load_checkpoint(name)) > 10


def test_a_weights_file_that_pickles_code_is_refused(tmp_path, monkeypatch):
    import json
    import pickle
    import shutil

    from ventriloquist import weights
    folder = tmp_path / "w"
    shutil.copytree(weights.WEIGHTS_DIR, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    torch.save({"config": {}, "trap": print}, folder / "sp2emo.pt")        # a global a weights file has no use for
    entries = json.loads((folder / "manifest.json").read_text())
    entries["sp2emo"]["sha256"] = weights.sha256(folder / "sp2emo.pt")
    (folder / "manifest.json").write_text(json.dumps(entries))
    with pytest.raises(pickle.UnpicklingError, match="print is not part of a weights file"):
        read_checkpoint("sp2emo", folder)


def test_a_lips_only_generator_file_reads_without_torch(tmp_path):
    """A G without an emotion branch stores an empty expression basis, which numpy pickles with b"" data."""
    import json

    from ventriloquist import weights
    from ventriloquist.motion.generator_net import EmotiveGenerator
    g = EmotiveGenerator(np.zeros((68, 2)), np.zeros((0, 68, 2)), emo_dim=0, hidden=16, dilations=(1, 2))
    folder = tmp_path / "w"
    folder.mkdir()
    torch.save({"state_dict": g.state_dict(), "expr_basis": np.zeros((0, 68, 2), np.float32), "config": {"emo_dim": 0}},
               folder / "generator.pt")
    (folder / "manifest.json").write_text(json.dumps({"generator": {
        "file": "generator.pt", "sha256": weights.sha256(folder / "generator.pt"), "version": "test"}}))
    got = read_checkpoint("generator", folder)
    assert got["expr_basis"].shape == (0, 68, 2) and _same(got, load_checkpoint("generator", folder)) > 5


@pytest.mark.parametrize("deltas", [0, 2])
def test_numpy_sp2emo_equals_the_torch_ensemble(deltas):
    from ventriloquist.emotion.sp2emo import Sp2EmoNumpy
    from ventriloquist.emotion.sp2emo_net import Sp2Emo, Sp2EmoEnsemble, config_dict
    torch.manual_seed(deltas)
    nets = [Sp2Emo(deltas=deltas, emb_dim=16) for _ in range(2)]
    for net in nets:                    # running statistics away from (0, 1), so the eval BatchNorm matters
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    ens = Sp2EmoEnsemble(nets).eval()
    ckpt = {"members": [{"config": config_dict(n), "state_dict": {k: v.numpy() for k, v in n.state_dict().items()}}
                        for n in nets]}
    x = np.random.default_rng(0).normal(size=(3, 101, nets[0].config.n_in)).astype(np.float32)   # odd: pools drop a row
    with torch.inference_mode():
        q, logits = ens(torch.from_numpy(x))
    q2, p2 = Sp2EmoNumpy.from_checkpoint(ckpt)(x)
    np.testing.assert_allclose(q2, q.numpy(), atol=2e-5)
    np.testing.assert_allclose(p2, torch.softmax(logits, 1).numpy(), atol=2e-6)


@pytest.mark.parametrize("n_artic, bottleneck, lookahead, n_enc, enc_bottleneck",
                         [(0, 0, None, 0, 0), (7, 0, None, 0, 0), (7, 12, None, 0, 0), (0, 0, 3, 0, 0), (7, 0, 0, 0, 0),
                          (7, 0, None, 16, 6), (7, 12, None, 16, 6), (0, 0, None, 16, 0), (0, 0, 3, 16, 6)])
def test_numpy_generator_equals_the_torch_module(n_artic, bottleneck, lookahead, n_enc, enc_bottleneck):
    """Offline (symmetric context) and causal (``lookahead`` frames of the future) alike, with and without
    speech-encoder rows (through a bottleneck or not)."""
    from ventriloquist.config import MEL_PER_FRAME, N_MELS
    from ventriloquist.motion.generator import Generator
    from ventriloquist.motion.generator_net import EmotiveGenerator
    rng = np.random.default_rng(n_artic + bottleneck)
    torch.manual_seed(0)
    g = EmotiveGenerator(rng.normal(size=(68, 2)), rng.normal(size=(5, 68, 2)) * 0.05, emo_dim=24, hidden=32,
                         dilations=(1, 2, 4), dropout=0.0, n_artic=n_artic, mel_bottleneck=bottleneck,
                         causal=lookahead is not None, lookahead=lookahead or 0, n_enc=n_enc,
                         enc_bottleneck=enc_bottleneck)
    for out in (g.ling_out, g.emo_out):      # trained-sized outputs, not the near-zero initial ones
        torch.nn.init.normal_(out.weight, std=0.1)
    g.eval()
    gn = Generator({k: v.numpy() for k, v in g.state_dict().items()}, emo_dim=24, dilations=(1, 2, 4),
                   n_artic=n_artic, mel_bottleneck=bottleneck, causal=lookahead is not None, lookahead=lookahead or 0,
                   n_enc=n_enc, enc_bottleneck=enc_bottleneck)
    assert gn.receptive_field == g.receptive_field
    t = 37
    mel = rng.normal(size=(2, t * MEL_PER_FRAME, N_MELS + n_artic + n_enc)).astype(np.float32)
    q = rng.uniform(-1, 1, size=(2, t, 30)).astype(np.float32)       # wider than emo_dim: G reads the first 24
    strength = rng.uniform(0, 2, size=(2, t)).astype(np.float32)
    with torch.inference_mode():
        for emotion, s in ((True, strength), (True, 0.5), (False, 1.0)):
            want = g(torch.from_numpy(mel), torch.from_numpy(q), emotion=emotion,
                     strength=torch.from_numpy(s) if isinstance(s, np.ndarray) else s).numpy()
            np.testing.assert_allclose(gn(mel, q, emotion, s), want, atol=2e-5)
    if lookahead is not None:          # causal: frame t is the same whatever follows t + lookahead
        cut = 20 * MEL_PER_FRAME
        early = gn(mel[:, :cut], q[:, :20], True, strength[:, :20])
        later = gn(mel, q, True, strength)[:, : 20 - (lookahead or 0)]
        np.testing.assert_allclose(early[:, : 20 - (lookahead or 0)], later, atol=2e-5)


def test_generate_from_speech_never_imports_torch(tmp_path, face_path, speech_wav):
    """A CLI call pays no PyTorch start-up: the whole speech-driven generate runs without importing it."""
    out = tmp_path / "out.mp4"
    code = ("import sys; from ventriloquist.cli import main; "
            f"rc = main(['generate', '--face', {str(face_path)!r}, '--audio', {str(speech_wav)!r}, "
            f"'--out', {str(out)!r}, '--quiet']); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.stat().st_size > 10_000


def test_the_startup_budget_names_every_stage_and_loads_no_torch(capsys, tmp_path):
    """`ventriloquist bench --startup`: one line per stage of a fresh process's first generate."""
    import json

    from ventriloquist.cli import main
    assert main(["bench", "--startup", "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "torch imported: False" in out
    stages = json.loads((tmp_path / "s.json").read_text())["stages"]
    names = [s["stage"] for s in stages]
    assert any("dlib" in n for n in names) and any("motion" in n for n in names) and len(names) == 8
    assert all(s["seconds"] >= 0 for s in stages)


@pytest.mark.parametrize("lookahead", [None, 3])
def test_a_generator_without_an_emotion_branch_is_lips_only(lookahead):
    """A lips-only G (emo_dim 0, ``emotion_branch = false``). Numpy and torch agree, the emotion input is ignored, only
    the jaw and lips move, and its receptive field is exact: speech further away changes nothing."""
    from ventriloquist.config import MEL_PER_FRAME, N_MELS
    from ventriloquist.face.topology import LOWER_FACE
    from ventriloquist.motion.generator import Generator
    from ventriloquist.motion.generator_net import EmotiveGenerator
    rng = np.random.default_rng(1)
    torch.manual_seed(0)
    causal = lookahead is not None
    g = EmotiveGenerator(rng.normal(size=(68, 2)), np.zeros((0, 68, 2)), emo_dim=0, hidden=32, dilations=(1, 2, 4),
                         dropout=0.0, causal=causal, lookahead=lookahead or 0)
    assert not any(k.startswith("emo") for k in g.state_dict())
    torch.nn.init.normal_(g.ling_out.weight, std=0.1)
    g.eval()
    gn = Generator({k: v.numpy() for k, v in g.state_dict().items()}, emo_dim=0, dilations=(1, 2, 4),
                   causal=causal, lookahead=lookahead or 0)
    rf = g.receptive_field
    assert gn.receptive_field == rf < EmotiveGenerator(np.zeros((68, 2)), np.zeros((2, 68, 2)), emo_dim=4, hidden=32,
                                                        dilations=(1, 2, 4), causal=causal).receptive_field
    t = 40
    mel = rng.normal(size=(1, t * MEL_PER_FRAME, N_MELS)).astype(np.float32)
    q = rng.uniform(-1, 1, size=(1, t, 8)).astype(np.float32)
    with torch.inference_mode():
        want = g(torch.from_numpy(mel), torch.from_numpy(q)).numpy()
    np.testing.assert_allclose(gn(mel, q), want, atol=2e-5)
    np.testing.assert_array_equal(gn(mel, None), gn(mel, q))
    upper = np.setdiff1d(np.arange(68), LOWER_FACE)
    assert np.abs(want[:, :, LOWER_FACE]).max() > 1e-3 and not want[:, :, upper].any()
    far = mel.copy()                           # speech more than rf frames before frame 30 (causal: 30 + lookahead) ...
    edge = (30 + (lookahead or 0) - rf) * MEL_PER_FRAME
    far[:, : edge - MEL_PER_FRAME] = rng.normal(size=far[:, : edge - MEL_PER_FRAME].shape)
    np.testing.assert_allclose(gn(far, None)[:, 30], gn(mel, None)[:, 30], atol=1e-6)
    near = mel.copy()
    near[:, edge: edge + MEL_PER_FRAME] += 5.0   # ... but speech rf frames before it is heard
    assert np.abs(gn(near, None)[:, 30] - gn(mel, None)[:, 30]).max() > 1e-6


def test_a_generator_speaking_in_a_lips_basis():
    """``lips_basis``: the linguistic branch's output is K coefficients of real jaw-and-lip deformations. Numpy and
    torch agree, and every output frame lies in the basis' span (before DEFORM_LIMIT's squashing) on the lower face."""
    from ventriloquist.config import MEL_PER_FRAME, N_MELS
    from ventriloquist.face.topology import LOWER_FACE
    from ventriloquist.motion.generator import DEFORM_LIMIT, Generator
    from ventriloquist.motion.generator_net import EmotiveGenerator
    rng = np.random.default_rng(2)
    torch.manual_seed(0)
    basis = np.zeros((5, 68, 2), np.float32)
    basis[:, LOWER_FACE] = rng.normal(0, 0.02, (5, len(LOWER_FACE), 2))
    g = EmotiveGenerator(rng.normal(size=(68, 2)), np.zeros((0, 68, 2)), emo_dim=0, hidden=32, dilations=(1, 2),
                         dropout=0.0, lips_basis=basis)
    assert g.ling_out.out_channels == 5 and "lips_basis" in g.state_dict()
    assert "lips_basis" not in EmotiveGenerator(np.zeros((68, 2)), np.zeros((0, 68, 2)), emo_dim=0, hidden=8,
                                                dilations=(1,)).state_dict()
    torch.nn.init.normal_(g.ling_out.weight, std=0.5)
    g.eval()
    gn = Generator({k: v.numpy() for k, v in g.state_dict().items()}, emo_dim=0, dilations=(1, 2))
    mel = rng.normal(size=(1, 30 * MEL_PER_FRAME, N_MELS)).astype(np.float32)
    with torch.inference_mode():
        want = g(torch.from_numpy(mel), None).numpy()
    np.testing.assert_allclose(gn(mel, None), want, atol=2e-5)
    raw = DEFORM_LIMIT * np.arctanh(want[0] / DEFORM_LIMIT)           # undo the output's squashing
    flat = basis.reshape(5, -1)
    coef = np.linalg.lstsq(flat.T, raw.reshape(len(raw), -1).T, rcond=None)[0]
    assert np.abs(raw).max() > 1e-2
    np.testing.assert_allclose((coef.T @ flat).reshape(raw.shape), raw, atol=1e-4)
