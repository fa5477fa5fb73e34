"""Shared training utilities: config files, checkpoints and resume, the JSONL log."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from ventriloquist.errors import InputError
from ventriloquist.train.common import Checkpointer, JsonlLog, load_config, seed_everything


@dataclass
class _Cfg:
    epochs: int = 10
    lr: float = 1e-3
    corpora: tuple[str, ...] = ("TESS",)
    name: str = "x"


def test_config_override(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('epochs = 3\nlr = 1\ncorpora = ["TESS", "EmoDB"]\n')
    cfg = load_config(_Cfg, p)
    assert cfg.epochs == 3 and cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.corpora == ("TESS", "EmoDB") and cfg.name == "x"
    assert load_config(_Cfg, p, epochs=7, lr=None).epochs == 7          # command line wins, None ignored
    assert load_config(_Cfg).epochs == 10


def test_config_unknown_key(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("epocs = 3\n")
    with pytest.raises(InputError, match="epocs"):
        load_config(_Cfg, p)
    with pytest.raises(InputError, match="does not exist"):
        load_config(_Cfg, tmp_path / "missing.toml")


def _train(model, opt, sched, epochs, start, ckpt, log):
    for epoch in range(start, epochs):
        x = torch.randn(8, 3)
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        ckpt.save(epoch, model, opt, sched, metric=-loss.item())
        log.write(epoch=epoch, train_loss=loss.item(), lr=opt.param_groups[0]["lr"])


def _objects():
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    return model, opt, sched


def test_resume_continues_at_next_epoch(tmp_path):
    # uninterrupted reference run
    seed_everything(0)
    ref = _objects()
    _train(*ref, 6, 0, Checkpointer(tmp_path / "ref"), JsonlLog(tmp_path / "ref" / "log.jsonl"))

    # interrupted after 3 epochs, then resumed
    seed_everything(0)
    a = _objects()
    ckpt = Checkpointer(tmp_path / "run")
    _train(*a, 3, 0, ckpt, JsonlLog(tmp_path / "run" / "log.jsonl"))
    torch.manual_seed(123)                         # disturb the RNG: resume must restore it
    b = _objects()
    ckpt2 = Checkpointer(tmp_path / "run")
    start, _ = ckpt2.resume(*b)
    assert start == 3
    assert b[2].last_epoch == 3 and b[1].param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5)
    log = JsonlLog(tmp_path / "run" / "log.jsonl", start_epoch=start)
    _train(*b, 6, start, ckpt2, log)
    for p, q in zip(ref[0].parameters(), b[0].parameters()):
        assert torch.allclose(p, q)
    lines = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(6))
    assert all("time_s" in r for r in lines)
    assert (tmp_path / "run" / "best.pt").is_file() and ckpt2.best_epoch is not None


def test_resume_without_checkpoint(tmp_path):
    with pytest.raises(InputError, match="resume"):
        Checkpointer(tmp_path).resume(*_objects())


def test_interp_rows_along_either_axis_and_clamped():
    from ventriloquist.train.common import interp_rows
    x = np.arange(12, dtype=np.float32).reshape(4, 3)            # x[i, j] = 3 i + j
    np.testing.assert_allclose(interp_rows(x, np.array([0.5, 2.25, 9.0, -1.0])),
                               [[1.5, 2.5, 3.5], [6.75, 7.75, 8.75], [9, 10, 11], [0, 1, 2]])
    y = interp_rows(x, np.array([0.5, 1.5]), axis=1, dtype=np.float32)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [[0.5, 1.5], [3.5, 4.5], [6.5, 7.5], [9.5, 10.5]])
    dk = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((1, 68, 2), np.float32)
    assert interp_rows(dk, np.array([1.25, 3.5])).shape == (2, 68, 2)
    np.testing.assert_allclose(interp_rows(dk, np.array([1.25, 3.5]))[:, 10, 1], [1.25, 3.5])
