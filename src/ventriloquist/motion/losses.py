"""Generator and discriminator losses (paper weights live in the generator's training config)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..face.topology import INNER_LIP_PAIRS, LOWER_FACE, MOUTH, UPPER_FACE

LOWER = torch.as_tensor(LOWER_FACE)
MOUTH_IDX = torch.as_tensor(MOUTH)
# point sets the motion-energy loss may be restricted to: "upper" is what the emotion branch
# alone moves, so its gradient never reaches the linguistic branch that drives the lips
ENERGY_POINTS = {"all": None, "not_lips": torch.as_tensor(np.setdiff1d(np.arange(68), MOUTH)),
                 "upper": torch.as_tensor(UPPER_FACE)}


def mouth_l1(gen: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """L1 on jaw + lip deformations (B, T, 68, 2): the lip-sync anchor."""
    return (gen[:, :, LOWER] - real[:, :, LOWER]).abs().mean()


def mouth_distance(gen: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean Euclidean distance of the lip points: the quantity mouth LMD measures (our addition)."""
    return (gen[:, :, MOUTH_IDX] - real[:, :, MOUTH_IDX]).norm(dim=-1).mean()


def _width(dk: torch.Tensor) -> torch.Tensor:
    """Outer and inner mouth width change (B, T, 2) of deformations: the spread (/i/) and rounding (/u/) of the lips."""
    return torch.stack([dk[..., 54, 0] - dk[..., 48, 0], dk[..., 64, 0] - dk[..., 60, 0]], dim=-1)


def mouth_width_loss(gen: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """L1 between generated and real mouth-width changes over each sequence (its own mean removed), and
    between the corners' vertical motion, in units of the real width's spread: the L1 on all lip points is
    ruled by the opening, ten times larger, so the lips hinged; this term alone asks for their shape."""
    gw, rw = _width(gen), _width(real)
    gw, rw = gw - gw.mean(dim=1, keepdim=True), rw - rw.mean(dim=1, keepdim=True)
    scale = rw.std(dim=(0, 1)).clamp_min(1e-3)
    corners = [48, 54]
    gc = gen[..., corners, 1] - gen[..., corners, 1].mean(dim=1, keepdim=True)
    rc = real[..., corners, 1] - real[..., corners, 1].mean(dim=1, keepdim=True)
    return ((gw - rw).abs() / scale).mean() + ((gc - rc).abs() / scale[0]).mean()


def motion_energy(dk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E_t|δk| and E_t|δk'| per landmark, averaged over the batch: how far and how fast points move."""
    mag = dk.norm(dim=-1).mean(dim=(0, 1))
    vel = (dk[:, 1:] - dk[:, :-1]).norm(dim=-1).mean(dim=(0, 1))
    return mag, vel


def energy_loss(gen: torch.Tensor, real: torch.Tensor, relative: bool = False,
                points: torch.Tensor | None = None) -> torch.Tensor:
    """L2 between real and generated motion energies: keeps output neither static nor jittery.

    ``relative`` divides each energy by the real one's mean over landmarks, so the loss reads
    the same in any unit: in inter-ocular units the squared gaps are about 1e-5, and the
    paper's weight of 10 then moved nothing. ``points`` restricts it to those landmarks.
    """
    if points is not None:
        gen, real = gen[:, :, points], real[:, :, points]
    gm, gv = motion_energy(gen)
    rm, rv = motion_energy(real)
    if relative:
        sm, sv = rm.mean().clamp_min(1e-6), rv.mean().clamp_min(1e-6)
        gm, rm, gv, rv = gm / sm, rm / sm, gv / sv, rv / sv
    return F.mse_loss(gm, rm) + F.mse_loss(gv, rv)


def emotion_agreement(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cosine-embedding loss between Exp2Emo's distribution and Sp2Emo's (agreement of distributions)."""
    return (1 - F.cosine_similarity(logits.softmax(-1), target, dim=-1)).mean()


def prototype_loss(coef: torch.Tensor, heard: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """L1 between the emotion branch's mean expression over a sequence and the real faces' expression
    for the emotion heard: coef (B, T, K), heard (B, 7) Sp2Emo distribution, prototypes (7, K).

    Exp2Emo alone accepts many expressions for one emotion, so runs differed in which one they
    learned (a frown for anger or none); this anchors each emotion to how real actors show it.
    """
    return (coef.mean(dim=1) - heard @ prototypes).abs().mean()


def aperture(shapes: torch.Tensor) -> torch.Tensor:
    """Inner-lip opening (B, T) of canonical landmarks (B, T, 68, 2), in inter-ocular units
    (``topology.mouth_aperture`` in torch; canonical faces have an IOD of 1)."""
    return sum((shapes[..., u, :] - shapes[..., d, :]).norm(dim=-1) for u, d in INNER_LIP_PAIRS) / 3


def phonetic_opening_loss(shapes: torch.Tensor, artic: torch.Tensor, open_col: int = 0,
                          smooth: float = 1.0) -> torch.Tensor:
    """1 - Pearson r, per sequence, between the mouth's opening and how open the heard phones are.

    ``artic`` holds the phonetic rows (B, T * MEL_PER_FRAME, N_ARTIC). This is the lips' teacher on
    speech without any video (TESS, EmoDB: other voices, another language): the phone recogniser's
    articulatory values stand in for the missing landmarks, so the lips G learns from one speaker
    must also open and close with the phones of others. Scale-free (amplitude stays the video
    clips' business); sequences whose phones barely change (silence) are left out.
    """
    b, t = shapes.shape[:2]
    o = artic[..., open_col].reshape(b, t, -1).mean(-1)
    if smooth > 0:
        k = torch.exp(-0.5 * (torch.arange(-3, 4, dtype=o.dtype) / smooth) ** 2)
        o = F.conv1d(F.pad(o[:, None], (3, 3), mode="replicate"), (k / k.sum())[None, None])[:, 0]
    a = aperture(shapes)
    a, o = a - a.mean(1, keepdim=True), o - o.mean(1, keepdim=True)
    ok = o.std(1) > 0.05
    if not ok.any():
        return shapes.new_zeros(())
    r = (a * o).sum(1) / (a.norm(dim=1) * o.norm(dim=1) + 1e-6)
    return (1 - r[ok]).mean()


def d_loss(real_score: torch.Tensor, fake_score: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN loss for D."""
    return 0.5 * ((real_score - 1) ** 2).mean() + 0.5 * (fake_score ** 2).mean()


def g_adv_loss(fake_score: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((fake_score - 1) ** 2).mean()
