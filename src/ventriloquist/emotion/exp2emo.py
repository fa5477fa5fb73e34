"""Exp2Emo: emotion distribution from a sequence of facial landmark deformations.

Input is δk (B, T, 68, 2): canonical landmarks minus the person's own rest (neutral) face,
so identity is removed and what remains is expression and speech. Its output lives in the
same 7-class space as Sp2Emo, which lets the frozen pair judge the generator.
"""
from __future__ import annotations

import torch
from torch import nn

from .vocabulary import N_EMOTIONS

INPUT_SCALE = 10.0     # δk is in inter-ocular units (~0.01-0.1); bring it near unit range


class Exp2Emo(nn.Module):
    def __init__(self, hidden: int = 64, layers: int = 1, dropout: float = 0.2) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(68 * 2, hidden), nn.GELU(), nn.Dropout(dropout))
        self.lstm = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, N_EMOTIONS))

    def forward(self, dk: torch.Tensor) -> torch.Tensor:
        """Logits (B, 7) for deformation windows (B, T, 68, 2)."""
        h, _ = self.lstm(self.proj(dk.flatten(2) * INPUT_SCALE))
        return self.head(h.mean(dim=1))
