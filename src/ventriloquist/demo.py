"""The bundled demo: a face shipped by scikit-image, animated from bundled speech alone.

``DEMO_MOTION`` (landmarks tracked on the same GRID clips) is kept as an example input for
``--landmarks`` and as the motion the benchmark renders.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from .config import GenerateConfig
from .errors import MissingWeightsError

ASSETS = Path(__file__).parent / "assets"
DEMO_MOTION = ASSETS / "grid_s1_demo.npz"
DEMO_SPEECH = ASSETS / "grid_s1_demo.flac"


def demo_face() -> Path:
    """The astronaut portrait (public domain, NASA) that scikit-image ships."""
    spec = importlib.util.find_spec("skimage")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "astronaut.png" if spec else None
    if path is None or not path.is_file():
        raise MissingWeightsError("the demo face astronaut.png is missing; install it with `pip install scikit-image`")
    return path


def run_demo(out_dir: Path, cfg: GenerateConfig | None = None, progress: bool = True) -> list[Path]:
    """Write ``demo.mp4`` and ``demo_strip.png`` into ``out_dir``."""
    from .pipeline import Ventriloquist
    from .video import frame_strip
    out_dir.mkdir(parents=True, exist_ok=True)
    video = out_dir / "demo.mp4"
    Ventriloquist(cfg).generate(demo_face(), video, audio=DEMO_SPEECH, progress=progress)
    strip = frame_strip(video, out_dir / "demo_strip.png")
    return [video, strip]
