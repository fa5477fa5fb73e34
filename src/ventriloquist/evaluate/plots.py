"""Evaluation figures drawn with OpenCV and numpy (matplotlib is deliberately not a dependency).

Four PNG plots: line plots with axes/labels/legend, a confusion-matrix heatmap with the
numbers in the cells, landmark trajectories real vs generated, and emotion probabilities
over time as stacked bands. Every function takes an output path and returns it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..config import FPS
from ..face import topology

# --- constants -------------------------------------------------------------------------------
FONT = 0                        # cv2.FONT_HERSHEY_SIMPLEX
TEXT_SCALE = 0.42
TITLE_SCALE = 0.55
WHITE, BLACK, GRID = (255, 255, 255), (30, 30, 30), (225, 225, 225)
# tab10 palette, RGB
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
MARGIN = dict(left=62, right=16, top=34, bottom=46)
TRAJECTORY_POINTS = (51, 57, 62, 66, 48, 8)   # upper/lower lip (outer, inner), left corner, chin


def _cv2():
    import cv2
    return cv2


def _text(img: np.ndarray, s: str, org: tuple[int, int], scale: float = TEXT_SCALE,
          color=BLACK, anchor: str = "left", thick: int = 1) -> None:
    """Put text with its baseline at org; anchor 'left', 'center' or 'right' sets the x alignment."""
    cv2 = _cv2()
    (w, h), _ = cv2.getTextSize(s, FONT, scale, thick)
    x = org[0] - (w if anchor == "right" else w // 2 if anchor == "center" else 0)
    cv2.putText(img, s, (int(x), int(org[1])), FONT, scale, color, thick, cv2.LINE_AA)


def _vtext(img: np.ndarray, s: str, centre: tuple[int, int], scale: float = TEXT_SCALE) -> None:
    """Vertical (bottom-to-top) text centred at ``centre``: the y-axis label."""
    cv2 = _cv2()
    (w, h), base = cv2.getTextSize(s, FONT, scale, 1)
    tile = np.full((h + base + 4, w + 4, 3), 255, np.uint8)
    cv2.putText(tile, s, (2, h + 2), FONT, scale, BLACK, 1, cv2.LINE_AA)
    tile = np.ascontiguousarray(np.rot90(tile))
    y0, x0 = centre[1] - tile.shape[0] // 2, centre[0] - tile.shape[1] // 2
    if y0 >= 0 and x0 >= 0 and y0 + tile.shape[0] <= img.shape[0]:
        img[y0:y0 + tile.shape[0], x0:x0 + tile.shape[1]] = np.minimum(
            img[y0:y0 + tile.shape[0], x0:x0 + tile.shape[1]], tile)


def nice_ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    """About n round tick values (1, 2, 2.5, 5 × 10^k steps) covering [lo, hi]."""
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, n)
    mag = 10 ** np.floor(np.log10(raw))
    step = mag * min((m for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10)
    ticks = np.arange(np.ceil(lo / step), np.floor(hi / step + 1e-6) + 1) * step
    return ticks + 0.0   # turns -0.0 into 0.0


def _fmt(v: float) -> str:
    v = 0.0 if abs(v) < 1e-12 else v
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


class Axes:
    """One plot panel inside an image: data limits, mapping to pixels, grid, ticks and labels."""

    def __init__(self, img: np.ndarray, rect: tuple[int, int, int, int], xlim, ylim,
                 title: str = "", xlabel: str = "", ylabel: str = "", ypad: float = 0.05) -> None:
        self.img, (self.x0, self.y0, self.x1, self.y1) = img, rect
        self.xlim, self.ylim = self._pad(xlim, 0.0), self._pad(ylim, ypad)
        cv2 = _cv2()
        for t in nice_ticks(*self.ylim):
            y = self.py(t)
            if self.y0 <= y <= self.y1:
                cv2.line(img, (self.x0, y), (self.x1, y), GRID, 1)
                _text(img, _fmt(t), (self.x0 - 5, y + 4), TEXT_SCALE * 0.85, anchor="right")
        for t in nice_ticks(*self.xlim, n=7):
            x = self.px(t)
            if self.x0 <= x <= self.x1:
                cv2.line(img, (x, self.y0), (x, self.y1), GRID, 1)
                _text(img, _fmt(t), (x, self.y1 + 15), TEXT_SCALE * 0.85, anchor="center")
        cv2.rectangle(img, (self.x0, self.y0), (self.x1, self.y1), BLACK, 1)
        if title:
            _text(img, title, ((self.x0 + self.x1) // 2, self.y0 - 9), TITLE_SCALE, anchor="center")
        if xlabel:
            _text(img, xlabel, ((self.x0 + self.x1) // 2, self.y1 + 33), TEXT_SCALE, anchor="center")
        if ylabel:
            _vtext(img, ylabel, (self.x0 - 48, (self.y0 + self.y1) // 2))

    @staticmethod
    def _pad(lim, frac: float) -> tuple[float, float]:
        lo, hi = float(lim[0]), float(lim[1])
        if not np.isfinite(lo) or not np.isfinite(hi):
            lo, hi = 0.0, 1.0
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5 * max(abs(lo), 1e-3), hi + 0.5 * max(abs(hi), 1e-3)
        d = (hi - lo) * frac
        return lo - d, hi + d

    def px(self, x) -> np.ndarray:
        return np.round(self.x0 + (np.asarray(x, float) - self.xlim[0]) / (self.xlim[1] - self.xlim[0])
                        * (self.x1 - self.x0)).astype(int)

    def py(self, y) -> np.ndarray:
        return np.round(self.y1 - (np.asarray(y, float) - self.ylim[0]) / (self.ylim[1] - self.ylim[0])
                        * (self.y1 - self.y0)).astype(int)

    def line(self, x, y, color, thick: int = 2) -> None:
        cv2 = _cv2()
        pts = np.stack([self.px(x), self.py(y)], -1)
        pts = pts[np.isfinite(np.asarray(y, float))].astype(np.int32)
        if len(pts) > 1:
            cv2.polylines(self.img, [pts], False, color, thick, cv2.LINE_AA)

    def band(self, x, lo, hi, color) -> None:
        """Filled area between two curves (for stacked plots)."""
        cv2 = _cv2()
        top = np.stack([self.px(x), self.py(hi)], -1)
        bot = np.stack([self.px(x), self.py(lo)], -1)[::-1]
        cv2.fillPoly(self.img, [np.concatenate([top, bot]).astype(np.int32)], color, cv2.LINE_AA)

    def legend(self, names: Sequence[str], colors: Sequence, where: str = "right") -> None:
        """Boxed legend in the top-right (or top-left) corner of the panel."""
        cv2 = _cv2()
        if not names:
            return
        w = max(cv2.getTextSize(n, FONT, TEXT_SCALE, 1)[0][0] for n in names) + 34
        h = 16 * len(names) + 8
        x = self.x1 - w - 6 if where == "right" else self.x0 + 6
        y = self.y0 + 6
        cv2.rectangle(self.img, (x, y), (x + w, y + h), WHITE, -1)
        cv2.rectangle(self.img, (x, y), (x + w, y + h), (160, 160, 160), 1)
        for i, (n, c) in enumerate(zip(names, colors)):
            yy = y + 14 + 16 * i
            cv2.line(self.img, (x + 6, yy - 4), (x + 24, yy - 4), c, 3, cv2.LINE_AA)
            _text(self.img, n, (x + 29, yy), TEXT_SCALE)


def _canvas(w: int, h: int) -> np.ndarray:
    return np.full((h, w, 3), 255, np.uint8)


def _save(img: np.ndarray, path: str | Path) -> Path:
    cv2 = _cv2()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())
    return path


def _limits(arrays) -> tuple[float, float]:
    vals = np.concatenate([np.asarray(a, float).ravel() for a in arrays]) if arrays else np.zeros(1)
    vals = vals[np.isfinite(vals)]
    return (float(vals.min()), float(vals.max())) if len(vals) else (0.0, 1.0)


# --- public plots ----------------------------------------------------------------------------
def line_plot(path: str | Path, series: Mapping[str, np.ndarray], x: np.ndarray | None = None,
              title: str = "", xlabel: str = "", ylabel: str = "", size=(720, 360)) -> Path:
    """Lines sharing one x axis (``x`` defaults to the sample index), with a legend."""
    img = _canvas(*size)
    ys = [np.asarray(v, float) for v in series.values()]
    n = max((len(v) for v in ys), default=1)
    x = np.arange(n) if x is None else np.asarray(x, float)
    ax = Axes(img, (MARGIN["left"], MARGIN["top"], size[0] - MARGIN["right"], size[1] - MARGIN["bottom"]),
              (float(x.min()), float(x.max())) if len(x) else (0, 1), _limits(ys), title, xlabel, ylabel)
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(ys))]
    for y, c in zip(ys, colors):
        ax.line(x[:len(y)], y, c)
    ax.legend(list(series.keys()), colors)
    return _save(img, path)


def confusion_plot(path: str | Path, cm: np.ndarray, labels: Sequence[str], title: str = "",
                   normalise: bool = True, cell: int = 54) -> Path:
    """Heatmap of a confusion matrix (rows true, columns predicted), row-normalised recall colours.

    Each cell shows the row percentage (and the count underneath) so the diagonal reads as
    per-class recall.
    """
    cv2 = _cv2()
    cm = np.asarray(cm, float)
    n = len(cm)
    rate = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalise else cm / max(cm.max(), 1)
    left, top = 92, 56
    w, h = left + n * cell + 16, top + n * cell + 52
    img = _canvas(w, h)
    heat = cv2.applyColorMap(np.clip(rate * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[..., ::-1]
    for i in range(n):
        for j in range(n):
            x0, y0 = left + j * cell, top + i * cell
            col = tuple(int(v) for v in heat[i, j])
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), col, -1)
            fg = BLACK if rate[i, j] > 0.6 else WHITE
            _text(img, f"{100 * rate[i, j]:.0f}%" if normalise else _fmt(cm[i, j]),
                  (x0 + cell // 2, y0 + cell // 2 + 1), TEXT_SCALE, fg, "center")
            if normalise:
                _text(img, f"({int(cm[i, j])})", (x0 + cell // 2, y0 + cell // 2 + 15),
                      TEXT_SCALE * 0.75, fg, "center")
        _text(img, str(labels[i])[:10], (left - 6, top + i * cell + cell // 2 + 4), TEXT_SCALE, anchor="right")
        _text(img, str(labels[i])[:7], (left + i * cell + cell // 2, top + n * cell + 15),
              TEXT_SCALE * 0.9, anchor="center")
    cv2.rectangle(img, (left, top), (left + n * cell, top + n * cell), BLACK, 1)
    _text(img, "predicted", (left + n * cell // 2, top + n * cell + 36), TEXT_SCALE, anchor="center")
    _text(img, "true", (left - 6, top - 8), TEXT_SCALE, anchor="right")
    if title:
        _text(img, title, (w // 2, 24), TITLE_SCALE, anchor="center")
    return _save(img, path)


def trajectory_plot(path: str | Path, real: np.ndarray, gen: Mapping[str, np.ndarray] | np.ndarray,
                    points: Sequence[int] = TRAJECTORY_POINTS, fps: float = FPS, title: str = "",
                    panel=(360, 170)) -> Path:
    """Vertical position over time of a few landmarks, real vs one or more generated sequences.

    One panel per landmark plus one for the mouth aperture; inputs are canonical landmarks
    (T, 68, 2), so y is in inter-ocular distances (down is positive, as in the image).
    """
    gens = {"generated": gen} if not isinstance(gen, Mapping) else dict(gen)
    seqs = {"real": np.asarray(real, float), **{k: np.asarray(v, float) for k, v in gens.items()}}
    colors = [BLACK] + [PALETTE[i % len(PALETTE)] for i in range(len(gens))]
    panels = [(f"landmark {p} y", lambda s, p=p: s[:, p, 1]) for p in points]
    panels.append(("mouth aperture", topology.mouth_aperture))
    cols = 2
    rows = (len(panels) + cols - 1) // cols
    pw, ph = panel
    img = _canvas(cols * pw, rows * ph + (30 if title else 0))
    off = 30 if title else 0
    for n, (name, fn) in enumerate(panels):
        r, c = divmod(n, cols)
        curves = [fn(s) for s in seqs.values()]
        t = np.arange(max(len(v) for v in curves)) / fps
        ax = Axes(img, (c * pw + 56, off + r * ph + 26, (c + 1) * pw - 10, off + (r + 1) * ph - 36),
                  (0.0, float(t[-1]) if len(t) > 1 else 1.0), _limits(curves), name,
                  "time (s)" if r == rows - 1 else "", "IOD" if c == 0 else "")
        for y, col in zip(curves, colors):
            ax.line(t[:len(y)], y, col, 2 if col is BLACK else 1)
        if n == 0:
            ax.legend(list(seqs.keys()), colors)
    if title:
        _text(img, title, (img.shape[1] // 2, 22), TITLE_SCALE, anchor="center")
    return _save(img, path)


def emotion_plot(path: str | Path, probs: np.ndarray, labels: Sequence[str], fps: float = FPS,
                 title: str = "", size=(720, 360)) -> Path:
    """Class probabilities (T, C) over time as stacked bands: band height = probability."""
    p = np.clip(np.asarray(probs, float), 0, None)
    p = p / np.maximum(p.sum(1, keepdims=True), 1e-12)
    t = np.arange(len(p)) / fps
    img = _canvas(*size)
    ax = Axes(img, (MARGIN["left"], MARGIN["top"], size[0] - 130, size[1] - MARGIN["bottom"]),
              (0.0, float(t[-1]) if len(t) > 1 else 1.0), (0.0, 1.0), title, "time (s)",
              "probability (stacked)", ypad=0.0)
    cum = np.concatenate([np.zeros((len(p), 1)), np.cumsum(p, 1)], 1)
    colors = [PALETTE[i % len(PALETTE)] for i in range(p.shape[1])]
    for i, c in enumerate(colors):
        ax.band(t, cum[:, i], cum[:, i + 1], c)
        ax.line(t, cum[:, i + 1], WHITE, 1)
    _cv2().rectangle(img, (ax.x0, ax.y0), (ax.x1, ax.y1), BLACK, 1)
    # legend outside the panel, top-down in stacking order (top band first)
    for k, i in enumerate(reversed(range(p.shape[1]))):
        y = MARGIN["top"] + 14 + 18 * k
        _cv2().rectangle(img, (size[0] - 120, y - 10), (size[0] - 106, y + 2), colors[i], -1)
        _text(img, str(labels[i]), (size[0] - 100, y), TEXT_SCALE)
    return _save(img, path)
