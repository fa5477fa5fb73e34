"""Renderer: source photo + target landmarks -> video frame, on the CPU.

A piecewise-affine mesh warp (:mod:`.warp`) moves the face while keeping everything outside
an anchor ring around it bit-exact, :mod:`.mouth` fills the opening between the lips with a
real mouth interior, and :mod:`.eyes` slides the photo's own upper lids over still eyeballs.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..config import N_LANDMARKS
from ..face.topology import OUTER_LIPS, mouth_aperture, mouth_height
from .eyes import EyelidLayer
from .mouth import MouthPainter, _pixels_in, inner_gaps
from .warp import MeshWarper

__all__ = ["DubRenderer", "RestCollector", "RestLips", "Renderer"]

REST_RANGE = 0.1      # inner mouth widths: a frame this much more open than its target takes all its lips from rest
REST_CROP = 1.0       # half the side of a rest frame's kept crop, in outer mouth widths around the mouth's centre
REST_GROW = 2.0       # the blended region: the target's outer lips grown this much about their centre (the skin
                      # an open mouth stretches reads as open too: it closes with the lips) ...
REST_SOFT = 0.08      # ... with an edge this soft (mouth widths)
REST_LUMA = 0.25      # a pixel between the outer lips this far off their median brightness is teeth or the gap
REST_CANDIDATES = 8   # a shot's most closed frames looked at for the lips that close its mouth
REST_PRESSED = 0.85   # of those, lips thinner than this share of their median thickness are pressed together (m, b)


Candidate = tuple[float, int, "RestLips", float]     # inner opening, index in the video, lips, outer height


def _pick_rest(ranked: list[Candidate], n: int) -> Candidate:
    """The candidate whose lips are at rest, among candidates ranked most closed first: of the ``n`` most closed,
    the most shut by their pixels (dlib lays the inner points together over a rounded o as well), passing over
    lips pressed thin (outer height less inner opening under REST_PRESSED of the candidates' median): lips
    pressed together and rolled in for an m or a b are thin and pale, not the mouth at rest."""
    top = ranked[:n]
    thick = np.array([c[3] - c[0] for c in top])
    if np.isfinite(thick).all():
        top = [c for c, t in zip(top, thick) if t >= REST_PRESSED * np.median(thick)]
    return min(top, key=lambda c: c[2].parted())


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


class RestLips:
    """A shot's mouth at rest, real pixels for closing a frame's mouth: squeezing a wide-open frame's lips shut
    packs their inner edges, shadow and teeth into a seam that still reads as the old words, so the lips of
    a frame that must close are taken from the shot's most closed frame instead, warped to the target, with the
    skin around them (REST_GROW), which the open mouth stretched. Only a crop around the mouth is kept (one per
    shot, a few kB)."""

    def __init__(self, frame: np.ndarray, landmarks: np.ndarray) -> None:
        k = np.asarray(landmarks, np.float64)
        lips = k[OUTER_LIPS]
        half = REST_CROP * float(np.ptp(lips[:, 0]))
        self.centre = lips.mean(0)
        h, w = frame.shape[:2]
        x0, y0 = (max(int(v), 0) for v in np.floor(self.centre - half))
        x1, y1 = min(int(np.ceil(self.centre[0] + half)), w), min(int(np.ceil(self.centre[1] + half)), h)
        self.origin = np.array([x0, y0], np.float64)
        self.image = frame[y0:y1, x0:x1].copy()
        self._fade = None
        self.place(k)

    def place(self, landmarks: np.ndarray) -> None:
        """Use these landmarks (68, 2, pixels of the frame the crop came from) for the crop's face."""
        k = np.asarray(landmarks, np.float64)
        self.landmarks = k - self.origin
        self.gap = inner_gaps(k).mean()
        self._mesh = None

    @property
    def mesh(self) -> MeshWarper:
        if self._mesh is None:                                   # built once the shot needs it
            self._mesh = MeshWarper(self.image.shape, self.landmarks)
        return self._mesh

    def parted(self) -> float:
        """Share of the pixels inside the outer lips that are teeth or the dark gap (off the lips' median
        brightness): 0 for lips truly shut. dlib often lays the inner-lip points together over parted teeth,
        so the landmarks alone cannot tell."""
        px = _pixels_in(self.image, self.landmarks[OUTER_LIPS]) @ np.array([0.299, 0.587, 0.114])
        if len(px) < 8:
            return 1.0
        mid = float(np.median(px))
        return float(np.mean(np.abs(px - mid) > REST_LUMA * max(mid, 1.0)))

    def share(self, k: np.ndarray, target: np.ndarray) -> float:
        """How much of the lips come from rest (0-1): by how much more the frame's mouth is open than the target's."""
        return float(np.clip((inner_gaps(k).mean() - max(inner_gaps(target).mean(), self.gap)) / REST_RANGE, 0, 1))

    def blend(self, out: np.ndarray, target: np.ndarray, share: float):
        """Blend the rest lips, warped to ``target`` (68, 2, pixels of ``out``), into ``out`` in place; their tear
        chains and half gaps (what the painter needs), in pixels of ``out``, or None where nothing was blended."""
        if share <= 0:
            return None
        t = np.asarray(target, np.float64)
        shift = np.round(t[OUTER_LIPS].mean(0) - self.centre)       # where the crop sits on the output frame
        local = t - self.origin - shift
        dst = self.mesh.vertices(local)
        warped = self.image.copy()
        self.mesh.warp(self.image, dst, warped)
        h, w = out.shape[:2]
        ox, oy = (int(v) for v in self.origin + shift)
        x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + warped.shape[1], w), min(oy + warped.shape[0], h)
        if x1 <= x0 or y1 <= y0:
            return None
        lips = local[OUTER_LIPS]
        c = lips.mean(0)
        poly = np.round((c + REST_GROW * (lips - c)) * 4).astype(np.int32)
        mask = np.zeros(warped.shape[:2], np.float32)
        cv2.fillPoly(mask, [poly], 1.0, cv2.LINE_AA, 2)
        sigma = REST_SOFT * float(np.ptp(lips[:, 0]))
        mask = cv2.GaussianBlur(mask, (0, 0), max(sigma, 0.5)) * share
        # a mouth grown past the crop (the shot zooms in) fades out before the crop's edge instead of ending at it
        if self._fade is None:
            ch, cw = mask.shape
            edge = np.minimum.outer(np.minimum(np.arange(ch), np.arange(ch)[::-1]),
                                    np.minimum(np.arange(cw), np.arange(cw)[::-1])).astype(np.float32)
            self._fade = np.clip(edge / max(3 * REST_SOFT * float(np.ptp(self.landmarks[OUTER_LIPS, 0])), 1.0), 0, 1)
        mask *= self._fade
        sx, sy = x0 - ox, y0 - oy
        m = mask[sy:sy + y1 - y0, sx:sx + x1 - x0, None]
        region = out[y0:y1, x0:x1].astype(np.float32)
        region += m * (warped[sy:sy + y1 - y0, sx:sx + x1 - x0].astype(np.float32) - region)
        out[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
        upper, lower = self.mesh.mouth_chains(dst)
        back = self.origin + shift
        return upper + back, lower + back, self.mesh.src_gap / 2


class RestCollector:
    """Gathers, while a video's face is followed (the video is read once), each shot's most closed frames
    (least inner opening), a mouth crop each, and lends each shot its lips at rest (:func:`_pick_rest`): of its
    REST_CANDIDATES most closed, not pressed thin, the one that looks most shut (:meth:`RestLips.parted`)."""

    def __init__(self, candidates: int = REST_CANDIDATES) -> None:
        self.candidates = candidates
        self._shots: dict[int, list[tuple[float, int, RestLips]]] = {}
        self._seen = 0

    def add(self, frame: np.ndarray, landmarks: np.ndarray, shot: int = 0, index: int | None = None) -> None:
        """Take in one frame (H, W, 3) RGB with its face's landmarks (68, 2), from shot ``shot``; ``index``: its
        place in the video, for :meth:`rests` to look again with the smoothed landmarks."""
        k = np.asarray(landmarks, np.float64)
        key = float(mouth_aperture(k))
        if int(shot) not in self._shots:
            self._settle()
        kept = self._shots.setdefault(int(shot), [])
        if len(kept) >= 2 * self.candidates and key >= kept[-1][0]:     # twice as many: these landmarks jitter
            return
        self._seen += 1
        kept.append((key, self._seen if index is None else int(index), RestLips(frame, k), float(mouth_height(k))))
        kept.sort(key=lambda c: c[:2])
        del kept[2 * self.candidates:]

    def _settle(self) -> None:
        """A shot has ended: keep only its most shut candidate, so memory grows by one crop per shot, not by
        2 * REST_CANDIDATES (ranked by the per-frame landmarks; the shot still being read is ranked again)."""
        for shot, kept in self._shots.items():
            if len(kept) > 1:
                self._shots[shot] = [_pick_rest(kept, self.candidates)]

    def rests(self, smoothed: np.ndarray | None = None) -> dict[int, RestLips]:
        """Each shot's lips at rest; ``smoothed``: the video's smoothed landmarks (T, 68, 2) by ``index``, which
        rank the candidates again and place their mesh (the per-frame landmarks jitter)."""
        out = {}
        for shot, kept in self._shots.items():
            ranked = []
            for key, i, lips, height in kept:
                if smoothed is not None and 0 <= i < len(smoothed) and np.isfinite(smoothed[i]).all():
                    k = np.asarray(smoothed[i], np.float64)
                    lips.place(k)
                    key, height = float(mouth_aperture(k)), float(mouth_height(k))
                ranked.append((key, i, lips, height))
            ranked.sort(key=lambda c: c[:2])
            out[shot] = _pick_rest(ranked, self.candidates)[2]
        return out


class DubRenderer:
    """Renders the frames of a video with new jaw and lips: each frame is warped from its own landmarks
    to the target ones (its mouth moves from where the old words left it to where the new ones put it)
    and the opening is filled with a real interior: the video's own (``interiors``, gathered while its face
    was followed) where it opens its mouth, else the library's, matched once per shot to that shot's light.
    Everything the frame shows outside the face's ring stays bit-exact; the eyes are the video's own."""

    def __init__(self, mouth_interior: bool = True, feather: float = 0.08, interiors=None,
                 rests: dict[int, RestLips] | None = None) -> None:
        """``rests``: each shot's :class:`RestLips` (:class:`RestCollector`), whose lips close a frame's mouth
        (none: the frame's own)."""
        self.mouth_interior, self.feather, self.interiors = mouth_interior, feather, interiors
        self.rests = rests or {}
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
        rest = self.rests.get(shot)
        share = rest.share(k, t) if rest is not None else 0.0
        chains = rest.blend(out, t, share) if rest is not None else None
        if self.mouth_interior:
            upper, lower = mesh.mouth_chains(dst)
            half = mesh.src_gap / 2
            if chains is not None:       # the opening's edges follow the lips that were blended in
                upper, lower, half = (a + share * (b - a) for a, b in zip((upper, lower, half), chains))
            if shot != self._shot or self._painter is None:
                self._painter = _painter(frame, k, self.feather, self.interiors)
            self._painter.paint(out, dst[:N_LANDMARKS], upper, lower, half)
        self._shot = shot
        return out
