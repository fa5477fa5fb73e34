"""Renderer: source photo + target landmarks -> video frame, on the CPU.

A piecewise-affine mesh warp (:mod:`.warp`) moves the face while keeping everything outside
an anchor ring around it bit-exact, :mod:`.mouth` fills the opening between the lips with a
real mouth interior, and :mod:`.eyes` slides the photo's own upper lids over still eyeballs.
"""
from __future__ import annotations

import numpy as np

from ..config import N_LANDMARKS
from .eyes import EyelidLayer
from .mouth import MouthPainter
from .warp import MeshWarper

__all__ = ["DubRenderer", "Renderer"]


def _painter(image: np.ndarray, k: np.ndarray, feather: float, own=None) -> MouthPainter:
    """The mouth painter of a face at ``k`` in ``image``, its edge ``feather`` of the face's size soft (``own``:
    the face's own interiors, :class:`~.mouth.VideoInteriors`)."""
    return MouthPainter(image, k, feather * float((k.max(0) - k.min(0)).max()), own=own)


class Renderer:
    """Renders frames of one photo for any sequence of target landmarks."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray, mouth_interior: bool = True, feather: float = 0.08):
        """``image``: (H, W, 3) uint8 RGB; ``landmarks``: (68, 2) of its face, in pixels.

        ``feather`` is the edge softness as a fraction of the face size (as in RenderConfig).
        """
        image = np.asarray(image)
        k = np.asarray(landmarks, dtype=np.float64)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        if k.shape != (N_LANDMARKS, 2) or not np.isfinite(k).all():
            raise ValueError(f"landmarks must be finite ({N_LANDMARKS}, 2), got {k.shape}")
        self.image = np.ascontiguousarray(image).copy()
        self.mesh = MeshWarper(image.shape, k)
        self.painter = _painter(self.image, k, feather) if mouth_interior else None
        self.src_half_gap = self.mesh.src_gap / 2
        self.lids = EyelidLayer(self.image, k, self.mesh.src[self.mesh.i_crease])

    def render(self, target: np.ndarray, gaze: np.ndarray | None = None) -> np.ndarray:
        """Frame (H, W, 3) uint8 RGB, a new array, for target landmarks (68, 2) in image pixels;
        ``gaze`` (2,): the irises' shift against the lids, in pixels (``Retargeter.gaze``).

        Non-finite targets give the photo itself; targets far off are pulled inside the ring.
        """
        t = np.asarray(target, dtype=np.float64)
        if t.shape != (N_LANDMARKS, 2):
            raise ValueError(f"target landmarks must be ({N_LANDMARKS}, 2), got {t.shape}")
        out = self.image.copy()
        if not np.isfinite(t).all():
            return out
        dst = self.mesh.vertices(t, gaze)
        self.mesh.warp(self.image, dst, out)
        if self.painter is not None:
            upper, lower = self.mesh.mouth_chains(dst)
            self.painter.paint(out, dst[:N_LANDMARKS], upper, lower, self.src_half_gap)
        self.lids.paint(out, dst[:N_LANDMARKS], dst[self.mesh.i_crease])
        return out


class DubRenderer:
    """Renders the frames of a video with new jaw and lips: each frame is warped from its own landmarks
    to the target ones (its mouth moves from where the old words left it to where the new ones put it)
    and the opening is filled with a real interior: the video's own (``interiors``, gathered while its face
    was followed) where it opens its mouth, else the library's, matched once per shot to that shot's light.
    Everything the frame shows outside the face's ring stays bit-exact; the eyes are the video's own."""

    def __init__(self, mouth_interior: bool = True, feather: float = 0.08, interiors=None) -> None:
        self.mouth_interior, self.feather, self.interiors = mouth_interior, feather, interiors
        self._shot, self._painter, self._mesh = None, None, None

    def render(self, frame: np.ndarray, landmarks: np.ndarray, target: np.ndarray, shot: int = 0) -> np.ndarray:
        """Frame (H, W, 3) uint8 RGB, a new array: ``frame`` with its face at ``landmarks`` (68, 2) moved to
        ``target`` (68, 2); ``shot`` says which painter (one per shot) fills the mouth."""
        k = np.asarray(landmarks, np.float64)
        t = np.asarray(target, np.float64)
        mesh = MeshWarper(frame.shape, k, like=self._mesh if shot == self._shot else None)
        self._mesh = mesh
        out = frame.copy()
        dst = mesh.vertices(t)
        mesh.warp(frame, dst, out)
        if self.mouth_interior:
            if shot != self._shot or self._painter is None:
                self._painter = _painter(frame, k, self.feather, self.interiors)
            upper, lower = mesh.mouth_chains(dst)
            self._painter.paint(out, dst[:N_LANDMARKS], upper, lower, mesh.src_gap / 2)
        self._shot = shot
        return out
