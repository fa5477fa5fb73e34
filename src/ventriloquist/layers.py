"""The layers of the shipped nets as numpy functions: inference without importing PyTorch.

Importing torch costs about a second, more than G and Sp2Emo need to hear a whole clip, so the
CLI, batch workers and live mode run these instead; training keeps the torch modules, and tests
hold the two equal within float tolerance. Weights are the state dicts of those modules, read by
:func:`ventriloquist.weights.read_checkpoint`. Sequences are (batch, channels, time), as in torch.
"""
from __future__ import annotations

import numpy as np

State = dict[str, np.ndarray]
LN_EPS = 1e-5                # torch's LayerNorm and BatchNorm defaults
BN_EPS = 1e-5


def linear(x: np.ndarray, state: State, name: str) -> np.ndarray:
    """``nn.Linear`` over the last axis."""
    return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]


def conv1d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, padding: int = 0,
           dilation: int = 1) -> np.ndarray:
    """``nn.Conv1d`` (stride 1, zero padding) on (B, C, T): the kernel's taps stacked, one matrix product."""
    b, c, t = x.shape
    out_ch, _, k = weight.shape
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding)))
    n = t + 2 * padding - dilation * (k - 1)
    taps = np.stack([x[:, :, j * dilation: j * dilation + n] for j in range(k)], axis=2)    # (B, C, k, n)
    y = weight.reshape(out_ch, c * k) @ taps.reshape(b, c * k, n)
    return y if bias is None else y + bias[:, None]


def gelu(x: np.ndarray) -> np.ndarray:
    """The exact (erf) GELU, torch's default."""
    from scipy.special import erf           # here: a process that only checks settings should not pay 0.3 s
    return (0.5 * x * (1.0 + erf(x * np.float32(1 / np.sqrt(2))))).astype(x.dtype, copy=False)


def layer_norm(x: np.ndarray, state: State, name: str, axis: int = -1) -> np.ndarray:
    """``nn.LayerNorm`` over ``axis`` (the channels)."""
    mu = x.mean(axis=axis, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axis, keepdims=True)
    shape = [1] * x.ndim
    shape[axis] = -1
    w, b = state[f"{name}.weight"].reshape(shape), state[f"{name}.bias"].reshape(shape)
    return (x - mu) / np.sqrt(var + LN_EPS) * w + b


def batch_norm(x: np.ndarray, state: State, name: str) -> np.ndarray:
    """``nn.BatchNorm1d`` in eval mode (running statistics) on (B, C, T)."""
    scale = state[f"{name}.weight"] / np.sqrt(state[f"{name}.running_var"] + BN_EPS)
    shift = state[f"{name}.bias"] - state[f"{name}.running_mean"] * scale
    return x * scale[:, None] + shift[:, None]


def max_pool1d(x: np.ndarray, k: int = 2) -> np.ndarray:
    """``nn.MaxPool1d(k)`` on (B, C, T): a trailing remainder is dropped, as torch does."""
    b, c, t = x.shape
    n = t // k
    return x[:, :, : n * k].reshape(b, c, n, k).max(axis=3)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)
