"""Writing results: the one atomic writer, and PNGs, GIFs, MP4s and manifests written through it.

A file is written to a temporary name next to its destination and renamed over it only when complete,
so a run stopped half-way (an error, Ctrl-C, SIGKILL) leaves every finished file complete and no
partial file under a real name. Files get the mode the user's umask gives (0644 for umask 022).

A write that the disk refuses (full, read-only, no permission, I/O error) raises one JaxvisError naming
the reason and the path ("no space left on device writing out/block1_conv1_7.png"). Output places are
checked before any work by really creating and removing a file there (:func:`check_out_dir`,
:func:`check_out_file`): ``os.access`` says yes to root whatever the filesystem allows.
"""
from __future__ import annotations

import errno
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
from jaxvis.util import check_int

MAX_FPS = 100  # a GIF's frame delay is counted in 10 ms steps


def file_stem(name: str) -> str:
    """A layer name as a file-name stem: path separators and other odd characters become '.'
    ('Residual_1/act' -> 'Residual_1.act')."""
    return re.sub(r'[^A-Za-z0-9_.#+=-]', '.', name)


def umask_mode() -> int:
    """The mode a new file gets from the process's umask (``0o666 & ~umask``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


# errno -> the reason in a write error's one line (others: the system's own words, lower-cased)
WRITE_REASONS = {errno.ENOSPC: 'no space left on device', errno.EDQUOT: 'disk quota exceeded',
                 errno.EROFS: 'read-only file system', errno.EACCES: 'permission denied',
                 errno.EPERM: 'operation not permitted', errno.EIO: 'input/output error',
                 errno.EFBIG: 'file too large'}


def write_reason(e: OSError) -> str:
    """An OSError's reason in a few lower-case words ('no space left on device')."""
    return WRITE_REASONS.get(e.errno) or (e.strerror or str(e) or type(e).__name__).lower()


def write_error(e: OSError, path: str | os.PathLike) -> JaxvisError:
    """The one-line JaxvisError for an OSError met while writing ``path``: '<reason> writing <path>'."""
    return JaxvisError(f'{write_reason(e)} writing {os.fspath(path)}')


@contextmanager
def atomic_path(final: str | os.PathLike):
    """Yield a temporary path next to ``final``; move it over ``final`` only if the block succeeds.

    The file gets the umask's mode. A crash or Ctrl-C inside the block leaves no partial ``final`` and
    removes the temporary file. An OSError with an errno (the disk full, read-only, ...) while making,
    writing or moving the file becomes :func:`write_error`'s one-line JaxvisError.
    """
    final = os.fspath(final)
    folder = os.path.dirname(os.path.abspath(final))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(final)}.', suffix='.part', dir=folder)
        os.close(fd)
    except OSError as e:
        raise write_error(e, final) from None
    try:
        yield tmp
        os.chmod(tmp, umask_mode())
        os.replace(tmp, final)
    except OSError as e:
        if e.errno is None:  # not the disk's answer (e.g. an encoder's own complaint)
            raise
        raise write_error(e, final) from None
    finally:
        try:
            os.remove(tmp)
        except FileNotFoundError:  # moved into place
            pass


def save_png(path: str, image: np.ndarray) -> None:
    """``image``: [H, W, 3] uint8 (or [H, W, 4] RGBA)."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image, np.uint8)).save(tmp, format='PNG')


JPEG_QUALITY = 95  # Pillow's scale (1..95); its default is 75


def save_jpg(path: str, image: np.ndarray, quality: int = JPEG_QUALITY) -> None:
    """``image``: [H, W, 3] uint8, as a baseline JPEG of ``quality`` (4:2:0 chroma, Pillow's default)."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image, np.uint8)).convert('RGB').save(tmp, format='JPEG', quality=quality)


def check_fps(fps) -> int:
    """Frames per second of a GIF or MP4: a whole number in ``[1, MAX_FPS]``."""
    return check_int('fps', fps, low=1, high=MAX_FPS)


def save_gif(path: str, frames: Sequence[np.ndarray], *, duration_ms: int = 100, loop: int = 0) -> None:
    """``frames``: sequence of [H, W, 3] uint8; written as one animated GIF (adaptive palette per frame).
    ``duration_ms``: each frame's delay, at least 10 ms (``1000 / MAX_FPS``)."""
    check_int('GIF frame duration (ms)', duration_ms, low=1000 // MAX_FPS)
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
    """Encode ``frames`` ([H, W, 3] uint8) as an H.264 MP4 (yuv420p; odd sizes padded to even) at
    ``fps`` (:func:`check_fps`)."""
    check_fps(fps)
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
            lines = proc.stderr.decode(errors='replace').strip().splitlines()
            raise JaxvisError(f'ffmpeg failed writing {path}: {(lines[-1] if lines else "no message")[:200]}')


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


def check_out_dir(path: str) -> str:
    """Create the folder ``path`` if needed and prove it writable by creating and removing a file there.

    Raises JaxvisError (one line: the folder and the reason) if either fails. Returns ``path``.
    """
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise JaxvisError(f'cannot create output folder {path}: {write_reason(e)}') from None
    if not os.path.isdir(path):
        raise JaxvisError(f'output folder {path} is not a folder')
    try:
        fd, probe = tempfile.mkstemp(prefix='.jaxvis-probe.', dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise JaxvisError(f'cannot write in output folder {path}: {write_reason(e)}') from None
    return path


def check_out_file(path: str) -> str:
    """Check that the file ``path`` can be written: not a folder, and its folder passes
    :func:`check_out_dir` (created if needed). Returns ``path``."""
    if os.path.isdir(path):
        raise JaxvisError(f'output {path} is a folder')
    check_out_dir(os.path.dirname(path) or '.')
    return path


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
