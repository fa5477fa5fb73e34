"""Mouth interiors from real footage: what shows between the lips where they part.

The warp stretches a one-pixel line of the photo across a new opening. Here the inner-lip polygon
is filled with a real mouth interior (teeth rows, tongue, cavity) cut from talking videos whose
licence allows it (``ventriloquist train mouths``, shipped as the ``mouths`` weights): the nearest
two of one speaker's interiors, indexed by opening, are warped into the target opening in the
mouth's own coordinates and matched to the photo's light (teeth relative to the whites of its
eyes, or to its own teeth; cavity relative to its lips). As in "Video Rewrite" (Bregler 1997), the
pixels are real; the shapes follow the lips. Each lip keeps its own anchor: the upper teeth hang
from the upper lip, the lower ones ride on the lower lip, and the cavity between them grows or
shrinks, so teeth keep their size as the mouth opens. Teeth the photo itself shows ride on its
lips through the warp and come first; a closed or barely open mouth shows lips meeting.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from ..face.topology import INNER_LIPS, LEFT_EYE, OUTER_LIPS, RIGHT_EYE, interocular

S_SAMPLES, V_SAMPLES = 64, 32                # an interior's texture: corner to corner x upper to lower lip
CURVE = np.linspace(0.0, 1.0, 65)            # where a lip's curve is computed (then interpolated)
UPPER_CHAIN = INNER_LIPS[[0, 1, 2, 3, 4]]    # 60-64
LOWER_CHAIN = INNER_LIPS[[0, 7, 6, 5, 4]]    # 60, 67, 66, 65, 64
MIN_GAP_PX = (0.6, 2.0)                      # an opening fades in between these pixel heights (lips meeting: nothing) ...
LIPS_MEET = (0.0, 0.01)                     # ... and until it opens this much (over the inner mouth width) the lips
                                             # meet: the interior fades in over this range
LIP_SEAM = 0.03                              # the interior reaches this far (inner mouth widths) under each lip
CORNER_SHARE = 0.15                          # an opening's ends (this share of its width) taper to ...
INNER_LIP_SHADE = 0.6                        # ... the lips' inner sides: their colour, this much darker
EDGE_SHIFT = 0.5                             # the soft rim is centred on the lip curves (0: all inside, 1: all outside)
MOUTH_FEATHER = 0.12                         # edge softness, share of the renderer's feather
PHOTO_TEETH_MIN_PX = 20                      # a mouth this large (pixels) can show teeth: they are the pixels ...
PHOTO_TEETH_LUMA = 1.1                       # ... this much brighter than the lips ...
PHOTO_TEETH_SAT = 0.65                       # ... and paler than the lips (this share of their saturation at most) ...
PHOTO_TEETH_PALE = 0.25                      # ... or this pale whatever the lips ...
PHOTO_TEETH_SHARE = 0.08                     # ... where they cover at least this share of the mouth
MID_LIP_OUTER = OUTER_LIPS[[0, 2, 3, 4, 6, 8, 9, 10]]   # 48, 50, 51, 52, 54, 56, 57, 58: facing 60-67
TEETH_LUMA = (0.7, 0.9)                      # interior pixels this light (Lab, over the speaker's teeth) are teeth, darker cavity ...
TEETH_AB_MARGIN = 4.0                        # ... where their colour is this much nearer the teeth's than the lips' (Lab)
SCLERA_SHARE = 0.3                           # the brightest share of the pale pixels inside the eyes is their white ...
SCLERA_SAT = 0.2                             # ... (pale: saturation under this) ...
SCLERA_OVER_LIPS = 1.15                      # ... and it is brighter than the lips by this much, else it is not measured
WHITES_TINT = 0.25                           # white things in a photo's light have this share of its skin's tint (Lab a, b) ...
WHITES_OVER_SKIN = 1.1                       # ... and, where the eye whites are not seen, this lightness over the cheeks'
CHEEKS = ((2, 31), (14, 35))                 # cheek skin is sampled midway between these landmarks (jaw, nose) ...
CHEEK_RADIUS = 0.15                          # ... this far around (inter-ocular distances)
MIN_EYE_PX = 12                              # fewer pale pixels than this and the whites are not measured
TEETH_TINT = 0.5                             # share of the library teeth's own tint (against its whites) they keep
TEETH_SHADE = 0.9                            # teeth sit in the mouth's shade: this much darker than the eye whites
CAVITY_DEPTH = 0.6                           # the library's interiors come from ~40-px mouths, where teeth and lips bleed
                                             # into the cavity: it is deepened to a full-size mouth's shadow
CAVITY_RIM = 0.25                            # ... fully so from this share of the interior's height away from either lip
CAVITY_SHARE = 0.15                          # an interior's darkest share is its cavity's colour ...
MIDDLE_BAND = 0.4                            # ... an opening taller than an interior stretches this middle share of it ...
OWN_BAND = 0.1                               # ... or, a photo's own, this share of it where its upper teeth end (the jaw opens there)
CAVITY_MIX = 0.8                             # ... and darkens it towards the cavity by up to this share
QUALITY_SHARE = 0.5                          # a speaker whose interiors show at least this share of the best's may be used
GAIN_RANGE = (0.4, 1.8)                      # colour matching never scales a channel beyond this
REDRAW_FROM = 0.5                            # an opening this much wider than the photo's (share of it) is drawn whole
OWN_BLEND = 0.04                             # past a photo's own rows of teeth, its interior gives way to the library's
                                             # over this depth (mouth widths)
LIP_DISTANCE = 12.0                          # Lab distance under which an interior's row is taken for lip (and cut)
VIDEO_SIZE = (2 * V_SAMPLES, 2 * S_SAMPLES)  # a dubbed video's own interiors are cut this finely (a full-size mouth) ...
VIDEO_BIN = 0.03                             # ... the sharpest frame per this much opening ...
VIDEO_MIN_GAP = 0.05                         # ... from this opening (inner mouth widths) ...
VIDEO_WIDEST = 0.12                          # ... used once they reach this opening (a video that never opens: library's)
VIDEO_LIP_ROWS = 0.3                         # at most this share of an interior's rows, each side, is cut as lip
VIDEO_LIP_EVERY = 5                          # the lips' colour is read on every this many frames


@dataclass
class InteriorLibrary:
    """Real mouth interiors of several speakers (the ``mouths`` weights)."""

    textures: np.ndarray       # (N, V_SAMPLES, S_SAMPLES, 3) uint8 RGB, in mouth coordinates
    gaps: np.ndarray           # (N, 3) inner-lip openings at 61-67, 62-66, 63-65 over the inner mouth width
    profile: np.ndarray        # (N, S_SAMPLES) the opening at each texture column, over the inner mouth width
    speaker: np.ndarray        # (N,) index into speakers
    speakers: list[str]
    sclera: np.ndarray         # (M, 3) each speaker's eye whites, RGB
    lips: np.ndarray           # (M, 3) each speaker's lip colour, RGB
    teeth: np.ndarray          # (M, 3) each speaker's teeth, RGB
    width: np.ndarray          # (M,) each speaker's inner mouth width at rest over the inter-ocular distance
    quality: np.ndarray        # (M,) how much each speaker's interiors show (sharpness x widest opening)

    @classmethod
    def from_checkpoint(cls, ck: dict) -> "InteriorLibrary":
        arr = {k: np.asarray(v) for k, v in ck.items() if k not in ("speakers", "config", "sources")}
        return cls(arr["textures"].astype(np.uint8), arr["gaps"].astype(np.float32), arr["profile"].astype(np.float32),
                   arr["speaker"].astype(np.int64),
                   list(ck["speakers"]), arr["sclera"].astype(np.float32), arr["lips"].astype(np.float32),
                   arr["teeth"].astype(np.float32), arr["width"].astype(np.float32), arr["quality"].astype(np.float32))


def _chosen_speaker(lib: InteriorLibrary) -> int:
    """The speaker whose interiors reach the widest opening, among those whose interiors show well
    (``quality`` at least QUALITY_SHARE of the best): real speakers open wide, and an interior stretched
    far past its own opening shows its stretch."""
    widest = np.array([lib.gaps[lib.speaker == m].mean(1).max() if np.any(lib.speaker == m) else 0.0
                       for m in range(len(lib.speakers))])
    good = lib.quality >= QUALITY_SHARE * lib.quality.max()
    return int(np.argmax(np.where(good, widest, -1.0)))


@lru_cache(maxsize=1)
def default_library() -> InteriorLibrary:
    """The shipped interiors, verified against the weights manifest."""
    from ..weights import read_checkpoint
    return InteriorLibrary.from_checkpoint(read_checkpoint("mouths"))


def chain_t(chain: np.ndarray, a: np.ndarray, ex: np.ndarray, ey: np.ndarray, length: float,
            s: np.ndarray) -> np.ndarray:
    """A lip chain (5, 2), corner to corner, as its distance across the mouth (pixels) at positions ``s``:
    a smooth curve through its points (monotone cubic, so it never overshoots them), as lips are."""
    cs = ((chain - a) @ ex) / length
    ts = (chain - a) @ ey
    if not np.all(np.diff(cs) > 1e-3):
        return np.interp(s, np.maximum.accumulate(cs), ts)
    return np.interp(s, CURVE, _monotone_cubic(cs, ts, cs[0] + CURVE * (cs[-1] - cs[0])))


def _monotone_cubic(x: np.ndarray, y: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson monotone cubic through points (x, y) (x increasing), evaluated at ``at``."""
    h = np.diff(x)
    d = np.diff(y) / h
    m = np.zeros_like(y)
    same = d[:-1] * d[1:] > 0
    w1, w2 = 2 * h[1:] + h[:-1], h[1:] + 2 * h[:-1]
    m[1:-1] = np.where(same, (w1 + w2) / (w1 / np.where(same, d[:-1], 1) + w2 / np.where(same, d[1:], 1)), 0.0)
    m[0], m[-1] = d[0], d[-1]
    i = np.clip(np.searchsorted(x, at) - 1, 0, len(h) - 1)
    u = (at - x[i]) / h[i]
    return (y[i] * (2 * u ** 3 - 3 * u ** 2 + 1) + h[i] * m[i] * (u ** 3 - 2 * u ** 2 + u)
            + y[i + 1] * (-2 * u ** 3 + 3 * u ** 2) + h[i] * m[i + 1] * (u ** 3 - u ** 2))


def mouth_frame(k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Origin (the inner corner 60), unit vectors along and across the mouth, and its inner width."""
    a, b = k[INNER_LIPS[0]], k[INNER_LIPS[4]]
    d = b - a
    length = max(float(np.linalg.norm(d)), 1e-6)
    ex = d / length
    return a, ex, np.array([-ex[1], ex[0]]), length


def interior_maps(k: np.ndarray, size: tuple[int, int] = (V_SAMPLES, S_SAMPLES)
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel coordinates (map_x, map_y), each ``size`` (rows, columns), of the mouth-coordinate grid of
    landmarks ``k`` (68, 2), what ``cv2.remap`` needs to cut an interior's texture out of a frame, and
    the opening at each column (columns,) over the inner mouth width."""
    a, ex, ey, length = mouth_frame(k)
    columns = np.linspace(0.0, 1.0, size[1])
    tu = chain_t(k[UPPER_CHAIN], a, ex, ey, length, columns)
    tl = chain_t(k[LOWER_CHAIN], a, ex, ey, length, columns)
    v = np.linspace(0.0, 1.0, size[0])[:, None]
    t = tu[None, :] + v * (tl - tu)[None, :]
    x = a[0] + columns[None, :] * length * ex[0] + t * ey[0]
    y = a[1] + columns[None, :] * length * ex[1] + t * ey[1]
    return x.astype(np.float32), y.astype(np.float32), np.maximum(tl - tu, 0.0) / length


def cut_interior(image: np.ndarray, k: np.ndarray, size: tuple[int, int] = (V_SAMPLES, S_SAMPLES)
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """The interior between the inner lips of landmarks ``k`` cut out of ``image`` in mouth coordinates
    (:func:`interior_maps`): its texture ``size`` (rows, columns, 3), the opening at each column, and its
    sharpness (variance of the Laplacian: of several frames' interiors, the sharpest is kept)."""
    mx, my, profile = interior_maps(k, size)
    tex = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return tex, profile, float(cv2.Laplacian(cv2.cvtColor(tex, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var())


def inner_gaps(k: np.ndarray) -> np.ndarray:
    """The three inner-lip openings (61-67, 62-66, 63-65) over the inner mouth width, (3,)."""
    up, lo = k[INNER_LIPS[[1, 2, 3]]], k[INNER_LIPS[[7, 6, 5]]]
    return np.linalg.norm(lo - up, axis=1) / mouth_frame(k)[3]


def eye_whites(image: np.ndarray, k: np.ndarray) -> np.ndarray | None:
    """Colour (3,) of the whites of the eyes: the brightest pale pixels inside both eye outlines,
    or None where the eyes are too small or too dark to show them."""
    mask = np.zeros(image.shape[:2], np.uint8)
    for eye in (RIGHT_EYE, LEFT_EYE):
        cv2.fillPoly(mask, [np.round(k[eye]).astype(np.int32)], 1)
    px = image[mask > 0].reshape(-1, 3).astype(np.float64)
    if len(px) < MIN_EYE_PX:
        return None
    sat = (px.max(1) - px.min(1)) / np.maximum(px.max(1), 1.0)
    pale = px[sat < SCLERA_SAT]
    if len(pale) < MIN_EYE_PX:
        return None
    luma = pale.mean(1)
    whites = pale[luma >= np.quantile(luma, 1 - SCLERA_SHARE)].mean(0)
    lips = lip_colour(image, k)
    return whites if lips is None or whites.mean() >= SCLERA_OVER_LIPS * lips.mean() else None


def skin_colour(image: np.ndarray, k: np.ndarray) -> np.ndarray | None:
    """Median colour of the cheeks, or None where they cover too few pixels."""
    mask = np.zeros(image.shape[:2], np.uint8)
    r = max(1, int(CHEEK_RADIUS * float(interocular(k))))
    for a, b in CHEEKS:
        c = np.round((k[a] + k[b]) / 2).astype(int)
        cv2.circle(mask, (int(c[0]), int(c[1])), r, 1, -1)
    px = image[mask > 0].reshape(-1, 3).astype(np.float64)
    return np.median(px, axis=0) if len(px) >= 4 else None


def lip_colour(image: np.ndarray, k: np.ndarray) -> np.ndarray | None:
    """Mean colour of the lips (between the outer and the inner outline), or None where they cover too few pixels."""
    px = _pixels_in(image, k[OUTER_LIPS], k[INNER_LIPS])
    return px.mean(0) if len(px) >= 4 else None


def _pixels_in(image: np.ndarray, poly: np.ndarray, hole: np.ndarray | None = None) -> np.ndarray:
    """The pixels (N, 3) float64 inside polygon ``poly`` and outside ``hole``, found in their bounding box only
    (a dubbed video asks for them every frame)."""
    p = np.round(poly).astype(np.int32)
    h, w = image.shape[:2]
    x0, y0 = max(int(p[:, 0].min()), 0), max(int(p[:, 1].min()), 0)
    x1, y1 = min(int(p[:, 0].max()) + 1, w), min(int(p[:, 1].max()) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 3))
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [p], 1, offset=(-x0, -y0))
    if hole is not None:
        cv2.fillPoly(mask, [np.round(hole).astype(np.int32)], 0, offset=(-x0, -y0))
    return image[y0:y1, x0:x1][mask > 0].reshape(-1, 3).astype(np.float64)


def photo_teeth(image: np.ndarray, k: np.ndarray, lips: np.ndarray | None = None) -> np.ndarray | None:
    """Colour of the teeth the photo shows, or None when it shows none: the pixels paler and brighter
    than the lips inside the lips' middle line (a landmark detector often puts the inner-lip points on
    the teeth, so they need not lie between them; a lip's own highlight lies further out). ``lips``: their
    colour (:func:`lip_colour`) where the caller has it already."""
    px = _pixels_in(image, (k[INNER_LIPS] + k[MID_LIP_OUTER]) / 2)
    lips = lip_colour(image, k) if lips is None else lips
    if len(px) < PHOTO_TEETH_MIN_PX or lips is None:
        return None
    sat = (px.max(1) - px.min(1)) / np.maximum(px.max(1), 1.0)
    lips_sat = (lips.max() - lips.min()) / max(lips.max(), 1.0)
    pale = (sat < PHOTO_TEETH_SAT * lips_sat) | (sat < PHOTO_TEETH_PALE)
    ivory = px[:, 1] > px[:, 2]                      # teeth lean yellow; a lip's pink highlight leans magenta
    teeth = px[(px.mean(1) > PHOTO_TEETH_LUMA * lips.mean()) & pale & ivory]
    return teeth.mean(0) if len(teeth) >= max(PHOTO_TEETH_MIN_PX / 2, PHOTO_TEETH_SHARE * len(px)) else None


def teeth_weight(texture: np.ndarray, teeth: np.ndarray, lips: np.ndarray) -> np.ndarray:
    """Per pixel (..., 1) of an interior: 1 where it is tooth, 0 cavity, tongue or lip. Teeth are nearly as
    light as the speaker's teeth (Lab lightness: under a warm light a cavity's RGB can be as bright) and
    nearer the teeth's colour than the lips' (in Lab's a, b)."""
    px = np.asarray(texture, np.float32)
    lab = cv2.cvtColor(px.reshape(-1, 1, 3) / 255.0, cv2.COLOR_RGB2Lab).reshape(px.shape)
    t_lab, l_ab = _lab(teeth)[0], _lab(lips)[0, 1:]
    bright = _smooth(lab[..., :1] / max(float(t_lab[0]), 1.0), *TEETH_LUMA)
    ab = lab[..., 1:]
    closer = np.linalg.norm(ab - l_ab, axis=-1, keepdims=True) - np.linalg.norm(ab - t_lab[1:], axis=-1, keepdims=True)
    return bright * _smooth(closer, -TEETH_AB_MARGIN, TEETH_AB_MARGIN)


def _smooth(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0, 1)
    return t * t * (3 - 2 * t)


def trim_lips(texture: np.ndarray, lips: np.ndarray, most: float) -> tuple[np.ndarray, float]:
    """An interior texture without the rows of lip at its top and bottom, and the share of its height kept.

    The landmarks of a small mouth sit on the lips, not at their inner edge, and lip painted inside the
    opening would narrow it. Rows whose middle is nearer the lips' colour than not (Lab) are cut, at most
    ``most`` of them each side.
    """
    lab = cv2.cvtColor(texture.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    lip = cv2.cvtColor(np.asarray(lips, np.float32).reshape(1, 1, 3) / 255.0, cv2.COLOR_RGB2Lab)[0, 0]
    rows_n, cols_n = texture.shape[:2]
    middle = lab[:, cols_n // 4: 3 * cols_n // 4]
    near = (np.linalg.norm(middle - lip, axis=-1) < LIP_DISTANCE).mean(1) > 0.5      # per row
    limit = int(most * rows_n)
    top = next((i for i in range(limit) if not near[i]), limit)
    bottom = next((i for i in range(limit) if not near[rows_n - 1 - i]), limit)
    keep = (rows_n - top - bottom) / (rows_n - 1)
    if top + bottom == 0 or keep <= 0.2:
        return texture, 1.0
    rows = np.linspace(top, rows_n - 1 - bottom, rows_n).astype(np.float32)
    mx = np.tile(np.arange(cols_n, dtype=np.float32), (rows_n, 1))
    return cv2.remap(texture, mx, np.repeat(rows[:, None], cols_n, 1), cv2.INTER_LINEAR), keep


class VideoInteriors:
    """A dubbed video's own mouth interiors, gathered while its face is followed (:meth:`add` per frame): per
    bin of opening, the sharpest frame's. They are the person's own teeth, tongue and cavity in the video's
    own light, so they come before the library's; memory stays constant however long the video is."""

    def __init__(self) -> None:
        self._best: dict[int, tuple[float, np.ndarray, np.ndarray, float]] = {}
        self._lips: list[tuple[float, np.ndarray]] = []
        self._frames = 0

    def add(self, frame: np.ndarray, k: np.ndarray) -> None:
        """Take in one frame (H, W, 3) RGB with its face's landmarks ``k`` (68, 2)."""
        k = np.asarray(k, np.float64)
        gaps = inner_gaps(k)
        g = float(gaps.mean())
        self._frames += 1
        if self._frames % VIDEO_LIP_EVERY == 0:
            lips = lip_colour(frame, k)
            if lips is not None:
                self._lips.append((g, lips))
        if g < VIDEO_MIN_GAP or np.any(gaps < 0):
            return
        tex, profile, sharp = cut_interior(frame, k, VIDEO_SIZE)
        b = int(g / VIDEO_BIN)
        if b not in self._best or sharp > self._best[b][0]:
            self._best[b] = (sharp, tex, profile, g)

    def interiors(self) -> "_Interiors | None":
        """The interiors sorted by opening, lip rows cut; None where the video never opens its mouth enough
        (the library's are used then)."""
        if not self._best or max(v[3] for v in self._best.values()) < VIDEO_WIDEST:
            return None
        closed = [c for g, c in self._lips if g < VIDEO_MIN_GAP] or [c for _, c in self._lips]
        lips = np.median(closed, axis=0) if closed else None
        textures, profiles, gaps = [], [], []
        for _, tex, profile, g in (self._best[b] for b in sorted(self._best)):
            keep = 1.0
            if lips is not None:
                tex, keep = trim_lips(tex, lips, VIDEO_LIP_ROWS)
            textures.append(tex)
            profiles.append(profile * keep)
            gaps.append(g * keep)
        order = np.argsort(gaps)
        return _Interiors(np.stack(textures)[order].astype(np.float32), np.stack(profiles)[order].astype(np.float64),
                          np.asarray(gaps, np.float64)[order])


class MouthPainter:
    """One speaker's interiors, matched once to the photo's colours, and the per-frame painting.

    ``feather_px`` is the renderer's seam softness in pixels; the opening's edge uses a share of it.
    """

    def __init__(self, image: np.ndarray, landmarks: np.ndarray, feather_px: float,
                 library: InteriorLibrary | None = None, own: "_Interiors | None" = None):
        """``own``: the face's own interiors (a dubbed video's, :class:`VideoInteriors`), used instead of the
        library's and of the image's teeth."""
        k = np.asarray(landmarks, dtype=np.float64)
        lips = lip_colour(image, k)
        self.sigma = max(0.5, MOUTH_FEATHER * feather_px)
        self.lip_shade = None if lips is None else (INNER_LIP_SHADE * lips).astype(np.float32)
        self.own = None
        if own is not None:
            self.library = own
            return
        lib = library or default_library()
        m = _chosen_speaker(lib)
        idx = np.flatnonzero(lib.speaker == m)
        idx = idx[np.argsort(lib.gaps[idx].mean(1))]
        teeth = photo_teeth(image, k, lips)
        if teeth is not None:
            # the photo's own teeth set the library's light, so what shows between its rows matches them
            light, ref = teeth, lib.teeth[m]
        else:
            # a speaker's interiors in the photo's light: teeth as light as the whites of its eyes (or a little
            # lighter than its cheeks), tinted as white things are in its light (a share of its skin's tint:
            # small whites mix with lids and lashes, and tinted teeth turn green or grey); cavity after its lips
            light, ref = eye_whites(image, k), lib.sclera[m]
            skin = skin_colour(image, k)
            if skin is not None:
                skin_lab = _lab(skin)[0]
                lit = WHITES_OVER_SKIN * float(skin_lab[0]) if light is None else float(_lab(light)[0, 0])
                tint = WHITES_TINT * skin_lab[1:]
                light = cv2.cvtColor(np.array([[[lit, *tint]]], np.float32), cv2.COLOR_Lab2RGB)[0, 0] * 255
        self.library = _Interiors(match_colours(lib.textures[idx], lib.teeth[m], ref, lib.lips[m], light, lips),
                                  lib.profile[idx].astype(np.float64), lib.gaps[idx].mean(1).astype(np.float64))
        if teeth is not None:
            # the photo's own interior comes first: its teeth, cut out once and re-fitted to every opening;
            # opened taller than the photo's, the library's interior shows between its two rows
            tex, profile, _ = cut_interior(image, k)
            tex = tex[None].astype(np.float32)
            self.own = _Interiors(tex, profile[None].astype(np.float64), np.array([inner_gaps(k).mean()]),
                                  np.array([upper_teeth_end(teeth_weight(tex, teeth, lips)[0])]), OWN_BAND)

    @property
    def photo_teeth(self) -> bool:
        """Whether the photo shows its own teeth (they are its interior)."""
        return self.own is not None

    def paint(self, frame: np.ndarray, target: np.ndarray, upper: np.ndarray, lower: np.ndarray,
              src_half_gap: np.ndarray) -> None:
        """Fill the target's inner-lip opening in ``frame``, in place.

        ``target``: the frame's landmarks (68, 2); ``upper``/``lower`` (5, 2): the mesh's tear chains
        (where the photo's own interior ends on each lip) and ``src_half_gap`` (3,) how much of it the
        photo shows: the photo's own interior (its teeth) is kept there once the opening is as wide
        as the photo's, so the photo's own landmarks give the photo itself.
        """
        inner = target[INNER_LIPS]
        gaps_px = inner_gaps(target) * mouth_frame(target)[3]
        fade = float(np.clip((gaps_px.max() - MIN_GAP_PX[0]) / (MIN_GAP_PX[1] - MIN_GAP_PX[0]), 0, 1))
        opened = float(np.clip((inner_gaps(target).mean() - LIPS_MEET[0]) / (LIPS_MEET[1] - LIPS_MEET[0]), 0, 1))
        if fade <= 0 or (opened <= 0 and not self.photo_teeth):
            return
        h, w = frame.shape[:2]
        pad = int(np.ceil(3 * self.sigma)) + 2
        lo = np.floor(inner.min(0)).astype(int) - pad
        hi = np.ceil(inner.max(0)).astype(int) + pad
        x0, y0, x1, y1 = max(lo[0], 0), max(lo[1], 0), min(hi[0], w), min(hi[1], h)
        if x1 <= x0 or y1 <= y0:
            return
        org = np.array([x0, y0], np.float64)
        shape = (y1 - y0, x1 - x0)
        c = _Coords(target, org, shape)
        colour = self._interior(c)
        if self.lip_shade is not None:
            # towards the corners the lips' inner sides close in and fill the opening: its dark core is an
            # oval, its tapering ends lip-coloured
            ends = _smooth(np.minimum(c.s, 1 - c.s), 0.0, CORNER_SHARE)[..., None].astype(np.float32)
            colour = self.lip_shade + ends * (colour - self.lip_shade)
        # the opening between the two smooth lip curves, reaching a little under each lip (the warp stretches
        # the dark line where the photo's lips met along their inner edges, which real parted lips do not
        # show), its rim soft on both sides as a lip's edge is
        seam = np.minimum(LIP_SEAM * c.length, 0.25 * np.maximum(c.tl - c.tu, 0))
        inside = (np.clip(c.t - c.tu + seam + 0.5, 0, 1) * np.clip(c.tl + seam - c.t + 0.5, 0, 1)
                  * c.within).astype(np.float32)
        alpha = np.clip(cv2.GaussianBlur(inside, (0, 0), self.sigma) * 2.0 - EDGE_SHIFT, 0, 1) * fade
        roi = frame[y0:y1, x0:x1].astype(np.float32)
        # opened as wide as the photo, its own interior rides on each lip (between its inner lip and the tear)
        # through the warp, pixel for pixel, and only the tear is filled; opened wider, the warp would pull
        # that interior into the mesh's straight-edged triangles, so the whole opening is re-drawn, by half
        # again the photo's opening
        gap = np.linalg.norm(target[INNER_LIPS[[7, 6, 5]]] - target[INNER_LIPS[[1, 2, 3]]], axis=1)
        if np.all(gap >= 2 * src_half_gap - 1e-3):
            torn = np.linalg.norm(lower[1:4] - upper[1:4], axis=1).max() > MIN_GAP_PX[0]
            tear = _poly_mask(shape, np.concatenate([upper, lower[::-1][1:-1]]) - org) if torn else 0.0
            photo_gap = 2 * float(src_half_gap.mean())
            wide = float(_smooth(np.float64(gap.mean() - photo_gap), 0.0, max(REDRAW_FROM * photo_gap, 1.0)))
            alpha = alpha * (tear + wide * (1 - tear))
        if self.photo_teeth and opened < 1:
            # nearly closed, the lips meet over the photo's teeth (each lip continued past its edge,
            # mirrored), so no line of teeth remains
            inside = alpha[..., None] / max(fade, 1e-6)
            roi = roi + (1 - opened) * inside * (_mirrored(frame, c) - roi)
        a = (alpha * opened)[..., None]
        frame[y0:y1, x0:x1] = np.clip(roi + (colour - roi) * a + 0.5, 0, 255).astype(np.uint8)

    def _interior(self, c: "_Coords") -> np.ndarray:
        """The interior colour (H, W, 3) of the ROI: the library's, or the photo's own teeth with the
        library's interior between their rows where the opening is taller than the photo's."""
        lib, _ = _warped(self.library, c)
        if self.own is None:
            return lib
        own, beyond = _warped(self.own, c)
        w = np.clip(beyond / OWN_BLEND, 0, 1)[..., None].astype(np.float32)
        return own + w * (lib - own)


def upper_teeth_end(weight: np.ndarray) -> float:
    """Where, down from the upper lip (share of an interior's rows), its upper row of teeth ends: the first
    stretch of rows, over the middle half of the columns, that is at least half as much teeth as the most
    toothed row, followed to its end. Teeth rows keep their size as a jaw opens, so that is where it opens."""
    rows = weight[:, weight.shape[1] // 4: 3 * weight.shape[1] // 4].mean(1)
    if rows.max() <= 0:
        return 0.5
    on = np.append(rows >= 0.5 * rows.max(), False)              # a stretch running to the bottom ends there
    start = int(np.argmax(on))
    end = start + int(np.argmin(on[start:]))
    return float(np.clip(end / len(rows), 0.15, 0.85))


@dataclass
class _Interiors:
    """Interiors in the photo's light, sorted by opening, and the colour their cavity deepens to."""

    textures: np.ndarray       # (N, rows, columns, 3) float32 RGB (the library's V_SAMPLES x S_SAMPLES)
    profile: np.ndarray        # (N, columns) the opening at each column, over the inner mouth width
    gaps: np.ndarray           # (N,) mean opening
    split: np.ndarray | None = None   # (N,) where each opens wider (share of its rows from the upper lip): the middle
    band: float = MIDDLE_BAND         # the share of its rows that stretch there

    def __post_init__(self) -> None:
        luma = self.textures.mean(-1)
        self.cavity = np.stack([t[lum <= np.quantile(lum, CAVITY_SHARE)].mean(0) for t, lum in zip(self.textures, luma)])


def _warped(lib: _Interiors, c: "_Coords") -> tuple[np.ndarray, np.ndarray]:
    """The two interiors nearest in opening, each warped into the target opening lip by lip, blended by
    how near each is (H, W, 3); and how far each pixel lies past both rows of the nearer one (H, W)."""
    g = c.mean_gap
    i = int(np.clip(np.searchsorted(lib.gaps, g), 1, len(lib.gaps) - 1)) if len(lib.gaps) > 1 else 0
    j = max(i - 1, 0)
    span = lib.gaps[i] - lib.gaps[j]
    wi = float(np.clip((g - lib.gaps[j]) / span, 0, 1)) if span > 1e-9 else 1.0
    out = np.zeros(c.s.shape + (3,), np.float32)
    past = np.zeros(c.s.shape, np.float64)
    gap, tau = c.gap, c.tau
    rows_n, cols_n = lib.textures.shape[1:3]
    columns = np.linspace(0.0, 1.0, cols_n)
    mx = (c.s * (cols_n - 1)).astype(np.float32)
    for idx, weight in ((i, wi), (j, 1 - wi)):
        if weight <= 1e-3:
            continue
        src_gap = np.maximum(np.interp(c.s, columns, lib.profile[idx]), 1e-6)
        # opened wider than the interior, its upper rows keep their depth under the upper lip and its lower rows
        # their height over the lower lip; its middle band (the gap between the teeth, the tongue) stretches
        # over the rest and darkens as a deeper mouth does; narrower, it is squeezed whole (cut in two, its
        # teeth would show a straight seam)
        split = 0.5 if lib.split is None else float(lib.split[idx])
        top, bottom = src_gap * (split - lib.band / 2), src_gap * (1 - split - lib.band / 2)
        middle = top + (tau - top) * (src_gap - top - bottom) / np.maximum(gap - top - bottom, 1e-6)
        anchored = np.where(tau < top, tau, np.where(gap - tau < bottom, src_gap - (gap - tau), middle))
        src_tau = np.where(gap >= src_gap, anchored, tau * src_gap / gap)
        my = (np.clip(src_tau / src_gap, 0, 1) * (rows_n - 1)).astype(np.float32)
        tex = cv2.remap(lib.textures[idx], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        beyond = np.minimum(tau - split * src_gap, gap - tau - (1 - split) * src_gap)   # how far past both rows of teeth
        stretch = np.clip(1 - src_gap / gap, 0, 1)                     # the share of the opening the interior lacks
        inner = _smooth(np.minimum(tau - top, gap - bottom - tau) / np.maximum((gap - top - bottom) / 2, 1e-6), 0.0, 1.0)
        deep = (CAVITY_MIX * stretch * inner)[..., None].astype(np.float32)
        out += weight * (tex + deep * (lib.cavity[idx] - tex))
        past += weight * beyond
    return out, past


class _Coords:
    """Every ROI pixel in the target mouth's own coordinates: ``s`` corner (0) to corner (1), ``tau`` depth
    under the upper lip and ``gap`` the opening there, both in inner mouth widths (a tilted head tilts them)."""

    def __init__(self, target: np.ndarray, org: np.ndarray, shape: tuple[int, int]):
        self.a, self.ex, self.ey, self.length = a, ex, ey, length = mouth_frame(target)
        yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
        px, py = xx + org[0] - a[0], yy + org[1] - a[1]
        self.org = org
        s = (px * ex[0] + py * ex[1]) / length
        self.within = (s > 0) & (s < 1)
        self.s = np.clip(s, 0, 1)
        t = px * ey[0] + py * ey[1]
        self.tu = chain_t(target[UPPER_CHAIN], a, ex, ey, length, self.s)
        self.tl = chain_t(target[LOWER_CHAIN], a, ex, ey, length, self.s)
        self.t = t
        self.gap = np.maximum(self.tl - self.tu, 1e-6) / length
        self.tau = (t - self.tu) / length
        self.mean_gap = float(inner_gaps(target).mean())


def _mirrored(frame: np.ndarray, c: _Coords) -> np.ndarray:
    """The ROI filled with lips meeting: above the opening's middle the upper lip mirrored across its
    inner edge, below it the lower lip (frame pixels, float32)."""
    mid = (c.tu + c.tl) / 2
    t = np.where(c.t < mid, 2 * c.tu - c.t, 2 * c.tl - c.t)
    x = c.a[0] + c.s * c.length * c.ex[0] + t * c.ey[0]
    y = c.a[1] + c.s * c.length * c.ex[1] + t * c.ey[1]
    return cv2.remap(frame, x.astype(np.float32), y.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE).astype(np.float32)


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.asarray(rgb, np.float32).reshape(-1, 1, 3) / 255.0, cv2.COLOR_RGB2Lab).reshape(-1, 3)


def match_colours(textures: np.ndarray, teeth: np.ndarray, light: np.ndarray, lips: np.ndarray,
                  photo_light: np.ndarray | None, photo_lips: np.ndarray | None) -> np.ndarray:
    """Interiors (N, V, S, 3) uint8 in the photo's light, as float32 RGB.

    Teeth follow ``light`` (the speaker's eye whites or teeth) to the photo's (``photo_light``), the
    cavity and tongue follow the speaker's ``lips`` to the photo's. In Lab, brightness by ratio; the teeth's
    colour by shift, so a warm-lit interior turns neutral without its noise being amplified, the cavity's
    by turning the lips' hue into the photo's and scaling their chroma.
    """
    n = len(textures)
    lab = cv2.cvtColor(textures.reshape(-1, S_SAMPLES, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    w = teeth_weight(textures, teeth, lips).reshape(lab.shape[:2] + (1,))
    out = lab.copy()
    refs = {"light": _lab(light)[0], "lips": _lab(lips)[0]}
    # the cavity deepens away from the lips; the rows against them (gums, the lips' inner side) keep their light
    v = np.linspace(0.0, 1.0, V_SAMPLES)
    depth = 1 - (1 - CAVITY_DEPTH) * _smooth(np.minimum(v, 1 - v), 0.0, CAVITY_RIM)
    depth = np.tile(depth, n)[:, None, None].astype(np.float32)
    photos = {"light": None if photo_light is None else _lab(photo_light)[0],
              "lips": None if photo_lips is None else _lab(photo_lips)[0]}
    for key, share in (("light", w), ("lips", 1 - w)):
        r, p = refs[key], photos[key]
        gain = 1.0 if p is None else float(np.clip(p[0] / max(r[0], 1.0), *GAIN_RANGE))
        gain = gain * (TEETH_SHADE if key == "light" else depth)
        out[..., :1] += share * lab[..., :1] * (gain - 1)
        if p is None:
            continue
        if key == "light":
            # teeth: colour moves with the light, a dark pixel's in proportion to its lightness, and they keep
            # only part of their own tint against the whites (a video's warm cast on them turns olive in the shade)
            light = lab[..., :1] / max(r[0], 1.0)
            own = lab[..., 1:] - light * r[1:]
            moved = light * p[1:] + TEETH_TINT * own
        else:
            # cavity and tongue: the speaker's lip hue turned to the photo's and its chroma scaled, each pixel's
            # hue and chroma relative to the lips kept. A real mouth's inside is as red as its lips however dark
            # (chroma 0.6-1.2 of the lips' at 0.2-0.7 of their lightness, hue within 10 degrees); moved with the
            # lightness instead, it turned grey, and the speaker's warm cast left it olive
            turn = np.arctan2(p[2], p[1]) - np.arctan2(r[2], r[1])
            scale = float(np.clip(np.hypot(*p[1:]) / max(np.hypot(*r[1:]), 1.0), *GAIN_RANGE))
            cos, sin = scale * np.cos(turn), scale * np.sin(turn)
            a, b = lab[..., 1:2], lab[..., 2:3]
            moved = np.concatenate([cos * a - sin * b, sin * a + cos * b], -1)
        out[..., 1:] += share * (moved - lab[..., 1:])
    rgb = cv2.cvtColor(out, cv2.COLOR_Lab2RGB) * 255.0
    return np.clip(rgb, 0, 255).reshape(n, V_SAMPLES, S_SAMPLES, 3).astype(np.float32)


def _poly_mask(shape: tuple[int, int], pts: np.ndarray, bits: int = 4) -> np.ndarray:
    """Anti-aliased float mask in [0, 1] of a polygon given in ROI pixel coordinates."""
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(pts * (1 << bits)).astype(np.int32)], 255, cv2.LINE_AA, bits)
    return m.astype(np.float32) / 255.0
