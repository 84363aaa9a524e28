"""MP4 (or GIF) files from uint8 frames, headless, through imageio's bundled ffmpeg."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np

from planet_torch.fileio import atomic_write


def write_video(path: Path, frames: np.ndarray, fps: float = 20.0, upscale: int = 4) -> Path:
    """Write ``frames`` uint8 [T, H, W, 3]; nearest-neighbour ``upscale`` so 64×64 is watchable."""
    assert frames.ndim == 4 and frames.shape[-1] == 3 and frames.dtype == np.uint8, frames.shape
    if upscale > 1:
        frames = frames.repeat(upscale, axis=1).repeat(upscale, axis=2)
    path = Path(path)
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
