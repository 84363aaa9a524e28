"""MP4 (or GIF) files from uint8 frames, headless, through imageio's bundled ffmpeg.

Where imageio-ffmpeg is missing (a Python that did not install this package's pins), an MP4
request writes a GIF beside it instead, with one warning, rather than failing a training run.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from planet_torch.fileio import atomic_write


def _have_ffmpeg() -> bool:
    return importlib.util.find_spec("imageio_ffmpeg") is not None


def write_video(path: Path, frames: np.ndarray, fps: float = 20.0, upscale: int = 4) -> Path:
    """Write ``frames`` uint8 [T, H, W, 3]; nearest-neighbour ``upscale`` so 64×64 is watchable.
    Returns the path written (``.gif`` instead of another suffix when ffmpeg is unavailable)."""
    assert frames.ndim == 4 and frames.shape[-1] == 3 and frames.dtype == np.uint8, frames.shape
    if upscale > 1:
        frames = frames.repeat(upscale, axis=1).repeat(upscale, axis=2)
    path = Path(path)
    if path.suffix != ".gif" and not _have_ffmpeg():
        warnings.warn(
            f"imageio-ffmpeg is not installed: writing {path.with_suffix('.gif').name} instead "
            f"of {path.name} (pip install imageio-ffmpeg for MP4)",
            stacklevel=2,
        )
        path = path.with_suffix(".gif")
    if path.suffix == ".gif":
        data = iio.imwrite("<bytes>", frames, extension=".gif", duration=1000 / fps, loop=0)
    else:
        data = iio.imwrite(
            "<bytes>",
            frames,
            extension=path.suffix,
            fps=fps,
            codec="libx264",
            macro_block_size=1,
            plugin="FFMPEG",
        )
    return atomic_write(path, lambda f: f.write(data))
