"""Writing results: the one atomic writer, and PNGs, GIFs, MP4s and manifests written through it.

A file is written to a temporary name next to its destination and renamed over it only when complete,
so a run stopped half-way (an error, Ctrl-C, SIGKILL) leaves every finished file complete and no
partial file under a real name. Files get the mode the user's umask gives (0644 for umask 022).
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from typing import Any, Sequence

import numpy as np
from PIL import Image

from jaxvis.errors import JaxvisError


def file_stem(name: str) -> str:
    """A layer name as a file-name stem: path separators and other odd characters become '.'
    ('Residual_1/act' -> 'Residual_1.act')."""
    return re.sub(r'[^A-Za-z0-9_.#+=-]', '.', name)


def umask_mode() -> int:
    """The mode a new file gets from the process's umask (``0o666 & ~umask``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(final: str | os.PathLike):
    """Yield a temporary path next to ``final``; move it over ``final`` only if the block succeeds.

    The file gets the umask's mode. A crash or Ctrl-C inside the block leaves no partial ``final`` and
    removes the temporary file.
    """
    final = os.fspath(final)
    folder = os.path.dirname(os.path.abspath(final))
    fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(final)}.', suffix='.part', dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, umask_mode())
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_png(path: str, image: np.ndarray) -> None:
    """``image``: [H, W, 3] uint8 (or [H, W, 4] RGBA)."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image, np.uint8)).save(tmp, format='PNG')


def save_gif(path: str, frames: Sequence[np.ndarray], *, duration_ms: int = 100, loop: int = 0) -> None:
    """``frames``: sequence of [H, W, 3] uint8; written as one animated GIF (adaptive palette per frame)."""
    if not len(frames):
        raise JaxvisError(f'no frames to write to {path}')
    images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format='GIF', save_all=True, append_images=images[1:], duration=duration_ms,
                       loop=loop, optimize=False)


def ffmpeg_exe() -> str:
    """The ffmpeg program that the ``imageio-ffmpeg`` wheel ships (no system ffmpeg needed)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def save_mp4(path: str, frames: Sequence[np.ndarray], *, fps: int = 15) -> None:
    """Encode ``frames`` ([H, W, 3] uint8) as an H.264 MP4 (yuv420p; odd sizes padded to even)."""
    if not len(frames):
        raise JaxvisError(f'no frames to write to {path}')
    h, w = np.asarray(frames[0]).shape[:2]
    with atomic_path(path) as tmp:
        cmd = [ffmpeg_exe(), '-y', '-loglevel', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', f'{w}x{h}',
               '-r', str(fps), '-i', '-', '-vf', 'pad=ceil(iw/2)*2:ceil(ih/2)*2', '-c:v', 'libx264',
               '-pix_fmt', 'yuv420p', '-f', 'mp4', tmp]
        proc = subprocess.run(cmd, input=b''.join(np.asarray(f, np.uint8).tobytes() for f in frames),
                              capture_output=True)
        if proc.returncode != 0:
            raise JaxvisError(f'ffmpeg failed writing {path}: {proc.stderr.decode(errors="replace").strip()[:200]}')


def write_json(path: str, data: dict) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, 'w') as f:
            json.dump(data, f, indent=2, sort_keys=False, default=_jsonable)
            f.write('\n')


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


def ensure_out_dir(path: str) -> str:
    """Create ``path`` if needed and check it is writable; one clear JaxvisError otherwise."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise JaxvisError(f'cannot create output folder {path}: {e.strerror}') from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise JaxvisError(f'output folder {path} is not writable')
    return path


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
