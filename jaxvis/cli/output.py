"""Writing results: PNGs, GIFs, MP4s and manifests, each written atomically (temp file + rename).

A run stopped half-way (error, Ctrl-C) leaves every finished file complete and no partial file.
"""
from __future__ import annotations

import json
import platform
import subprocess
import shutil
import sys
from typing import Any, Sequence

import numpy as np
from PIL import Image

from jaxvis.cli.common import atomic_path
from jaxvis.errors import JaxvisError


def save_png(path: str, image: np.ndarray) -> None:
    """``image``: [H, W, 3] uint8."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image, np.uint8)).save(tmp, format='PNG')


def save_gif(path: str, frames: Sequence[np.ndarray], *, duration_ms: int = 100, loop: int = 0) -> None:
    """``frames``: sequence of [H, W, 3] uint8; written as one animated GIF (adaptive palette per frame)."""
    if not frames:
        raise JaxvisError(f'no frames to write to {path}')
    images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format='GIF', save_all=True, append_images=images[1:], duration=duration_ms,
                       loop=loop, optimize=False)


def save_mp4(path: str, frames: Sequence[np.ndarray], *, fps: int = 15) -> None:
    """Encode ``frames`` ([H, W, 3] uint8) as H.264 MP4 through the ``ffmpeg`` program.

    Raises JaxvisError when ffmpeg is not installed (suggesting ``--gif`` instead).
    """
    ffmpeg = shutil.which('ffmpeg')
    if ffmpeg is None:
        raise JaxvisError('--mp4 needs the ffmpeg program (e.g. `apt-get install ffmpeg`); use --gif instead')
    h, w = np.asarray(frames[0]).shape[:2]
    with atomic_path(path) as tmp:
        cmd = [ffmpeg, '-y', '-loglevel', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', f'{w}x{h}',
               '-r', str(fps), '-i', '-', '-vf', 'pad=ceil(iw/2)*2:ceil(ih/2)*2', '-c:v', 'libx264',
               '-pix_fmt', 'yuv420p', '-f', 'mp4', tmp]
        proc = subprocess.run(cmd, input=b''.join(np.asarray(f, np.uint8).tobytes() for f in frames),
                              capture_output=True)
        if proc.returncode != 0:
            raise JaxvisError(f'ffmpeg failed writing {path}: {proc.stderr.decode(errors="replace").strip()[:200]}')


def environment() -> dict[str, Any]:
    """Versions and devices, for manifests."""
    import flax
    import jax
    import optax

    import jaxvis

    return {
        'jaxvis': jaxvis.__version__,
        'jax': jax.__version__,
        'flax': flax.__version__,
        'optax': optax.__version__,
        'python': sys.version.split()[0],
        'platform': platform.platform(),
        'backend': jax.default_backend(),
        'devices': [str(d) for d in jax.devices()],
    }


def write_json(path: str, data: dict) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, 'w') as f:
            json.dump(data, f, indent=2, sort_keys=False, default=_jsonable)
            f.write('\n')


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
